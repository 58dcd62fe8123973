"""Run records: every run written as JSON lines, read back as a `Run`, and replayed."""

from __future__ import annotations

from lensbook.records._writer import RecordWriter, configure, writer
from lensbook.records.reader import RecordError, Run, load_run, runs

__all__ = ["RecordError", "RecordWriter", "Run", "configure", "load_run", "runs", "writer"]
