"""The ledger of what lensbook switched on in the observed process, and how it is switched off.

Some probes change the process they observe: the tracer replaces a function by a wrapper,
the memory skill starts tracemalloc, the gc skill sets gc debug flags, passive observers add
hooks and handlers. Each such change is entered here, with the callable that undoes it, at the
moment it is made:

    change = intrusion.switch_on("tracemalloc", undo=tracemalloc.stop, max_seconds=60)
    ...
    change.undo()  # idempotent; also done by whoever drains the ledger first

Three drains make "always undone" one mechanism instead of a patch per probe:

- each change has a bounded life (`max_seconds`): one daemon thread, ``lensbook-undo``, sleeps
  until the nearest deadline and undoes what is due (one thread for all changes: starting a
  thread per change costs more than a short window on a busy machine);
- the run that made it (its id travels to the probe thread in a context variable, see
  `run_scope`) undoes what it owns in its ``finally``, whatever ended the run: done,
  max_iterations, timeout, stop, cancellation, a crash or a model error;
- `lensbook.stop()` and interpreter exit undo everything (`undo_all`);
- a child forked while changes are in force undoes them all at once (`_after_fork_in_child`):
  none of lensbook's threads lives on in it, so nothing else ever would (a multiprocessing
  worker forked during a gc window would keep DEBUG_SAVEALL, and every cycle it made, for life).

A probe that was abandoned by its budget may still try to switch something on after its run
ended; `switch_on` then undoes the change at once and raises `RunEnded`, so nothing outlives
the run that asked for it. Changes made outside any run (a probe called directly) and
long-lived observers (``session=True``) are undone by `undo_all` only.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "Change",
    "RunEnded",
    "active",
    "current_owner",
    "run_scope",
    "switch_on",
    "undo_all",
    "undo_owned_by",
]

log = logging.getLogger("lensbook.intrusion")

#: the run (its id) on whose behalf a probe runs; None outside runs
_owner: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "lensbook_intrusion_owner", default=None
)

_lock = threading.Lock()
_due = threading.Condition(_lock)
_changes: dict[int, Change] = {}
_expiry_thread: threading.Thread | None = None
#: runs whose changes were already drained (bounded: only the recent ones can still race)
_ended: deque[str] = deque(maxlen=1024)
_atexit_registered = False


class RunEnded(RuntimeError):
    """A change was asked for on behalf of a run that has already ended (and was undone)."""


class Change:
    """One thing lensbook switched on, with the callable that switches it off."""

    def __init__(
        self,
        name: str,
        undo: Callable[[], Any],
        *,
        owner: str | None,
        max_seconds: float | None,
        detail: str = "",
    ) -> None:
        self.name = name
        self.detail = detail
        self.owner = owner
        self.opened_at = time.time()
        if max_seconds is not None and not 0.0 <= max_seconds < math.inf:
            max_seconds = 0.0  # NaN, infinite or negative: a life with no bound is none at all
        self.max_seconds = max_seconds
        self.expires = None if max_seconds is None else time.monotonic() + max_seconds
        self.undone_by: str | None = None
        self._undo = undo
        self._done = threading.Event()
        self._lock = threading.Lock()

    @property
    def undone(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None) -> bool:
        """Block until the change is undone (by anyone) or `timeout` passes; True if undone."""
        return self._done.wait(timeout)

    def undo(self, reason: str = "window ended") -> bool:
        """Undo the change once (later calls do nothing); never raises. True if this call did."""
        with self._lock:
            if self._done.is_set():
                return False
            self.undone_by = reason
            try:
                self._undo()
            except Exception:  # undoing must never fail the caller (a run's finally, exit)
                log.warning("lensbook could not undo %s", self.name, exc_info=True)
            finally:
                self._done.set()
        with _lock:
            _changes.pop(id(self), None)
            _due.notify()  # the undo thread ends when nothing with a time limit is left
        return True

    def forget(self) -> None:
        """Drop the entry without undoing: its owner has undone the change itself."""
        self._done.set()
        with _lock:
            _changes.pop(id(self), None)
            _due.notify()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "detail": self.detail,
            "owner": self.owner,
            "age_s": round(time.time() - self.opened_at, 2),
            "max_seconds": self.max_seconds,
        }

    def __repr__(self) -> str:
        state = f"undone ({self.undone_by})" if self.undone else "on"
        return f"<lensbook change {self.name} {self.detail} {state}>"


def current_owner() -> str | None:
    """The run on whose behalf the calling probe runs (None outside runs)."""
    return _owner.get()


@contextlib.contextmanager
def run_scope(owner: str) -> Iterator[None]:
    """Attribute the changes made inside the block to run `owner` (set in the probe's thread)."""
    token = _owner.set(owner)
    try:
        yield
    finally:
        _owner.reset(token)


def switch_on(
    name: str,
    undo: Callable[[], Any],
    *,
    max_seconds: float | None,
    detail: str = "",
    session: bool = False,
) -> Change:
    """Enter a change that was just made; returns its `Change` (call `.undo()` to end it).

    `max_seconds` bounds its life (a daemon timer undoes it); None only for `session`
    observers, which belong to no run and are undone by `undo_all` (stop, exit).
    Raises `RunEnded` (after undoing the change) if the owning run has already ended.
    """
    global _atexit_registered, _expiry_thread
    owner = None if session else _owner.get()
    change = Change(name, undo, owner=owner, max_seconds=max_seconds, detail=detail)
    with _lock:
        ended = owner is not None and owner in _ended
        if not ended:
            _changes[id(change)] = change
            if change.expires is not None:
                if _expiry_thread is None or not _expiry_thread.is_alive():
                    _expiry_thread = threading.Thread(
                        target=_expire_forever, name="lensbook-undo", daemon=True
                    )
                    _expiry_thread.start()
                _due.notify()
        if not _atexit_registered:
            atexit.register(undo_all, "interpreter exit")
            _atexit_registered = True
    if ended:
        change.undo("run already ended")
        raise RunEnded(f"the run that asked for {name} has ended; it was switched off again")
    return change


def _expire_forever() -> None:
    """The ``lensbook-undo`` thread: undo each change when its time limit passes; it ends
    when no change with a time limit is left (`switch_on` starts another for the next)."""
    global _expiry_thread
    while True:
        with _lock:
            now = time.monotonic()
            due = [c for c in _changes.values() if c.expires is not None and c.expires <= now]
            if not due:
                nearest = min(
                    (c.expires for c in _changes.values() if c.expires is not None), default=None
                )
                if nearest is None:
                    if _expiry_thread is threading.current_thread():
                        _expiry_thread = None
                    return
                _due.wait(nearest - now)
                continue
        for change in due:
            change.undo("time limit")


@contextlib.contextmanager
def window(
    name: str, undo: Callable[[], Any], *, max_seconds: float, detail: str = ""
) -> Iterator[Change]:
    """A change that lasts for the `with` block (and no longer than `max_seconds`)."""
    change = switch_on(name, undo, max_seconds=max_seconds, detail=detail)
    try:
        yield change
    finally:
        change.undo("window ended")


def active() -> list[Change]:
    """The changes in force right now, oldest first."""
    with _lock:
        return sorted(_changes.values(), key=lambda c: c.opened_at)


def undo_owned_by(owner: str, reason: str = "run ended") -> int:
    """Undo every change run `owner` made; later changes it asks for are refused. Returns how
    many were undone."""
    with _lock:
        _ended.append(owner)
        mine = [c for c in _changes.values() if c.owner == owner]
    return sum(c.undo(reason) for c in mine)


def undo_all(reason: str = "lensbook stopped") -> int:
    """Undo every change in force (at `lensbook.stop()` and at interpreter exit)."""
    with _lock:
        everything = list(_changes.values())
    return sum(c.undo(reason) for c in reversed(everything))


#: how long a forked child waits for the parent's changes to be undone in it, at most
FORK_UNDO_S = 1.0


def _after_fork_in_child() -> None:
    """Undo, in a child forked while changes were in force, everything the parent had on.

    The locks are made anew: a thread of the parent that held one does not exist here. The
    undos run on a thread of their own, waited for `FORK_UNDO_S` at most: one that waits on a
    lock another vanished thread held (a heap step's, a window's) must not hang the child.
    """
    global _lock, _due, _expiry_thread
    _lock = threading.Lock()
    _due = threading.Condition(_lock)
    _expiry_thread = None
    if not _changes:
        return
    for change in _changes.values():
        change._lock = threading.Lock()
    undoing = threading.Thread(
        target=undo_all, args=("forked child",), name="lensbook-undo-child", daemon=True
    )
    undoing.start()
    undoing.join(FORK_UNDO_S)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
