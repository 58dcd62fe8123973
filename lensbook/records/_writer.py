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

Doing no harm:

- *Private.* A record is created 0600 (``O_EXCL | O_NOFOLLOW``: never through a planted link,
  never over another file). A folder lensbook creates is 0700. A folder that exists already is
  made 0700 only if it is lensbook's (owned by this user and holding nothing but lensbook
  records); a folder shared with other files keeps its mode, with one warning, because changing
  it could break whoever else uses it; the records in it are 0600 all the same.
- *Only its own files.* Pruning deletes a file only if both its name (`RECORD_NAME`) and its
  first bytes (`HEADER_PREFIX`) are those this writer gives a record; any other file, however
  named, is left alone.
- *Durable, and never in the way.* A write error (a full disk, a folder made read-only, an I/O
  error) ends that record with one warning on the ``lensbook.records`` logger; the run goes on
  and nothing raises, from the run or from `stop()`.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import platform
import re
import stat
import threading
from pathlib import Path
from typing import IO, Any

from lensbook import events

__all__ = [
    "FORMAT_VERSION",
    "HEADER_PREFIX",
    "RECORD_NAME",
    "RecordWriter",
    "configure",
    "create_private",
    "is_own_record",
    "writer",
]

FORMAT_VERSION = 1

#: the name this writer gives a record: ``<started>-<operator>-<run_id>.jsonl``
RECORD_NAME = re.compile(r"\d{8}T\d{9}-[A-Za-z0-9_-]+-[0-9a-f]{16}\.jsonl")

#: how every record this writer makes begins (the header's first two keys, as `_line` writes)
HEADER_PREFIX = b'{"type":"header","format":"lensbook-run",'

_log = logging.getLogger("lensbook.records")


def is_own_record(path: Path) -> bool:
    """Whether `path` is a record this writer made: a regular file (not a link) with a
    record's name whose first bytes are a record header's."""
    if RECORD_NAME.fullmatch(path.name) is None:
        return False
    try:
        if not stat.S_ISREG(path.lstat().st_mode):
            return False
        with path.open("rb") as handle:
            return handle.read(len(HEADER_PREFIX)) == HEADER_PREFIX
    except OSError:
        return False


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
        self._checked: set[Path] = set()
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
            self._checked.clear()
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
                with contextlib.suppress(OSError):  # a full disk fails the last flush too
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
            line = {
                "type": "event",
                "seq": event.seq,
                "at": event.at,
                "kind": event.kind,
                "data": event.data,
            }
            if not self._append(event.run_id, line):
                return
            if event.kind in _ENDS:
                self._end(event.run_id)

    def _append(self, run_id: str, entry: dict[str, Any]) -> bool:
        """Write one line; on a write error end the record with its one warning."""
        handle, path = self._open[run_id]
        try:
            handle.write(_line(entry))
            handle.flush()
        except (OSError, ValueError, RecursionError) as exc:  # a closed handle, unwritable data
            self._end(run_id)
            _log.warning(
                "lensbook stopped recording run %s: cannot write %s (%s); the run goes on "
                "unrecorded from here (what was written stays readable)",
                run_id,
                path,
                _reason(exc),
            )
            return False
        return True

    def _end(self, run_id: str) -> None:
        handle, _ = self._open.pop(run_id)
        with contextlib.suppress(OSError):
            handle.close()

    def _begin(self, event: events.Event) -> None:
        from lensbook._version import __version__

        directory = self.directory
        stamp = _stamp(event.at)
        safe_op = "".join(
            c if (c.isascii() and c.isalnum()) or c in "-_" else "_" for c in event.operator
        )
        path = directory / f"{stamp}-{safe_op or 'run'}-{event.run_id}.jsonl"
        try:
            self._prepare(directory)
            handle = create_private(path)
        except OSError as exc:
            _log.warning(
                "lensbook cannot record run %s in %s (%s); the run goes on unrecorded",
                event.run_id,
                directory,
                _reason(exc),
            )
            return
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
        self._open[event.run_id] = (handle, path)
        self.paths[event.run_id] = path
        if self._append(event.run_id, header):
            self._prune(directory)
        else:  # not even the header: the file is no record, and it is ours to remove
            self.paths.pop(event.run_id, None)
            with contextlib.suppress(OSError):
                path.unlink()

    def _prepare(self, directory: Path) -> None:
        """Make the folder (0700), or, once per folder, make an existing one private if it is
        lensbook's (and warn if it is shared)."""
        try:
            directory.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            if directory.absolute() not in self._checked:
                _tighten_existing(directory)
        else:
            os.chmod(directory, 0o700)  # mkdir's mode is cut by the umask; 0700 is what we want
        self._checked.add(directory.absolute())

    def _prune(self, directory: Path) -> None:
        if self.retention <= 0:
            return
        try:
            named = sorted(p for p in directory.iterdir() if RECORD_NAME.fullmatch(p.name))
        except OSError:
            return
        active = {p for _, p in self._open.values()}
        records = [p for p in named if p not in active and is_own_record(p)]
        excess = len(records) + len(active & set(named)) - self.retention
        for old in records[: max(0, excess)]:
            with contextlib.suppress(OSError):
                old.unlink()


def create_private(path: Path, replace: bool = False) -> IO[str]:
    """A file only this user can read, opened for writing, never through a link: a new one
    (a record), or with `replace` one written anew (a postmortem notebook, made again)."""
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
    flags |= os.O_TRUNC if replace else os.O_EXCL
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only narrow 0600, but be explicit
        return os.fdopen(fd, "w", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def _tighten_existing(directory: Path) -> None:
    """Make an existing folder 0700 if it is lensbook's; leave a shared one as it is."""
    info = directory.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"{directory} is not a folder")
    if stat.S_IMODE(info.st_mode) & 0o077 == 0:
        return
    ours = info.st_uid == os.getuid() and all(is_own_record(p) for p in directory.iterdir())
    if ours:
        os.chmod(directory, 0o700)
        return
    _log.warning(
        "the records folder %s is readable by others (mode %o) and holds files lensbook did "
        "not write, so lensbook leaves its mode alone; each record in it is still private "
        "(0600). Point records elsewhere with lensbook.records.configure(directory=...)",
        directory,
        stat.S_IMODE(info.st_mode),
    )


def _line(entry: dict[str, Any]) -> str:
    return json.dumps(entry, default=str, separators=(",", ":")) + "\n"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno is not None:
        return f"{errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror}"
    return f"{type(exc).__name__}: {exc}"


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
