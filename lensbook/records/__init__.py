"""Run records: every run written as JSON lines, read back as a `Run`, and replayed."""

from __future__ import annotations

from lensbook.records.reader import RecordError, Run, load_run, runs
from lensbook.records.writer import RecordWriter, configure, writer

__all__ = ["RecordError", "RecordWriter", "Run", "configure", "load_run", "runs", "writer"]
