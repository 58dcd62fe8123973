"""The record writer: one JSON-lines file per run, appended and flushed event by event.

A record is readable up to its last complete line even if the process is killed mid-run. The
first line is a header (format version, kind, lensbook and Python versions, host, pid, operator,
skill, context, settings, client); every following line is one event of the run (see
`lensbook.events`): model requests and responses (already redacted), tool calls and results,
snapshots, state changes, notifications, and the completion with timing and token usage.

A coordinator run is recorded the same way (``kind: coordinator``, from ``coordinator_started``
to ``coordinator_completed``): its own model turns, tool calls, the notifications its operators
sent, its insights, and for each operator run the id and file name of that run's own record.

Where records go: `configure(directory=...)`, else ``$LENSBOOK_RECORDS_DIR``, else
``.lensbook/runs`` under the working directory (a notebook's own folder under Jupyter). Recording
is turned off with `configure(enabled=False)` or ``LENSBOOK_RECORDS=0``. The newest `retention`
records are kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import threading
from pathlib import Path
from typing import IO, Any

from lensbook import events

__all__ = ["FORMAT_VERSION", "RecordWriter", "configure", "writer"]

FORMAT_VERSION = 1

#: the events that open a record, and the kind of run the record holds
_BEGINS = {"run_started": "operator", "coordinator_started": "coordinator"}
#: the events that close one
_ENDS = frozenset({"run_completed", "operator_crashed", "coordinator_completed"})


class RecordWriter:
    """Writes every run's events to ``<directory>/<started>-<operator>-<run_id>.jsonl``."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        enabled: bool | None = None,
        retention: int = 200,
    ) -> None:
        self._directory = Path(directory) if directory is not None else None
        self._enabled = enabled
        self.retention = retention
        self._lock = threading.Lock()
        self._open: dict[str, tuple[IO[str], Path]] = {}
        self._token: int | None = None
        self.paths: dict[str, Path] = {}

    @property
    def directory(self) -> Path:
        if self._directory is not None:
            return self._directory
        return Path(os.environ.get("LENSBOOK_RECORDS_DIR") or Path.cwd() / ".lensbook" / "runs")

    @property
    def enabled(self) -> bool:
        if self._enabled is not None:
            return self._enabled
        return os.environ.get("LENSBOOK_RECORDS", "1").lower() not in ("0", "false", "no", "off")

    def configure(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        enabled: bool | None = None,
        retention: int | None = None,
    ) -> None:
        if directory is not None:
            self._directory = Path(directory)
        if enabled is not None:
            self._enabled = enabled
        if retention is not None:
            self.retention = retention

    def listen(self) -> None:
        """Start recording runs (idempotent)."""
        if self._token is None:
            self._token = events.subscribe(self.on_event)

    def close(self) -> None:
        """Stop recording and close every open record."""
        if self._token is not None:
            events.unsubscribe(self._token)
            self._token = None
        self.close_open()

    def close_open(self) -> None:
        """Close the records of runs still going (they stay readable up to here)."""
        with self._lock:
            for handle, _ in self._open.values():
                handle.close()
            self._open.clear()

    def path_of(self, run_id: str) -> Path | None:
        """Where the record of `run_id` was written (None if it was not)."""
        return self.paths.get(run_id)

    def on_event(self, event: events.Event) -> None:
        if not event.run_id:
            return
        with self._lock:
            if event.kind in _BEGINS and self.enabled:
                self._begin(event)
            entry = self._open.get(event.run_id)
            if entry is None:
                return
            handle, _ = entry
            _write(
                handle,
                {
                    "type": "event",
                    "seq": event.seq,
                    "at": event.at,
                    "kind": event.kind,
                    "data": event.data,
                },
            )
            if event.kind in _ENDS:
                handle.close()
                del self._open[event.run_id]

    def _begin(self, event: events.Event) -> None:
        from lensbook import __version__

        directory = self.directory
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            return
        stamp = _stamp(event.at)
        safe_op = "".join(c if c.isalnum() or c in "-_" else "_" for c in event.operator)
        path = directory / f"{stamp}-{safe_op}-{event.run_id}.jsonl"
        handle = path.open("a", encoding="utf-8")
        header = {
            "type": "header",
            "format": "lensbook-run",
            "version": FORMAT_VERSION,
            "lensbook": __version__,
            "python": platform.python_version(),
            "operator": event.operator,
            "run_id": event.run_id,
            "started_at": event.at,
            "kind": _BEGINS[event.kind],
            "host": platform.node(),
            "pid": os.getpid(),
            **{k: v for k, v in event.data.items() if k != "type"},
        }
        _write(handle, header)
        self._open[event.run_id] = (handle, path)
        self.paths[event.run_id] = path
        self._prune(directory)

    def _prune(self, directory: Path) -> None:
        if self.retention <= 0:
            return
        records = sorted(directory.glob("*.jsonl"))
        active = {p for _, p in self._open.values()}
        for old in records[: max(0, len(records) - self.retention)]:
            if old not in active:
                with contextlib.suppress(OSError):
                    old.unlink()


def _write(handle: IO[str], entry: dict[str, Any]) -> None:
    handle.write(json.dumps(entry, default=str, separators=(",", ":")) + "\n")
    handle.flush()


def _stamp(at: float) -> str:
    import time

    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(at)) + f"{at % 1:.3f}"[1:].replace(".", "")


writer = RecordWriter()


def configure(
    directory: str | os.PathLike[str] | None = None,
    *,
    enabled: bool | None = None,
    retention: int | None = None,
) -> None:
    """Where records go, whether runs are recorded, and how many records are kept."""
    writer.configure(directory, enabled=enabled, retention=retention)
