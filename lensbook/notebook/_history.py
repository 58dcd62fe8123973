"""What the notebook remembers between cells: results of runs and notifications seen.

`last()` reads the results; `%lens notifications` and `%lens dashboard` seed their feed from the
journal, which listens while the extension is loaded. No IPython here: `lensbook.last()` may be
called from any script.
"""

from __future__ import annotations

import concurrent.futures
import threading
from typing import Any

from lensbook import events
from lensbook._errors import RunFailed
from lensbook.notebook._models import FeedModel
from lensbook.types import CompletionResult, NotificationList

__all__ = ["Journal", "journal", "last", "remember", "track"]

_lock = threading.Lock()
_results: dict[str, CompletionResult] = {}
_pending: dict[str, concurrent.futures.Future[CompletionResult]] = {}


def remember(result: CompletionResult) -> None:
    """Keep `result` as the latest of its operator."""
    with _lock:
        _results[result.operator] = result


def track(skill: str, future: concurrent.futures.Future[CompletionResult]) -> None:
    """Remember the result of a run when it ends (background runs), so `last()` can wait on it."""
    with _lock:
        _pending[skill] = future

    def done(f: concurrent.futures.Future[CompletionResult]) -> None:
        result = _result_of(f)
        if result is not None:
            remember(result)
        with _lock:
            if _pending.get(skill) is f:
                del _pending[skill]

    future.add_done_callback(done)


def _result_of(future: concurrent.futures.Future[CompletionResult]) -> CompletionResult | None:
    if future.cancelled():
        return None
    exc = future.exception()
    if exc is None:
        return future.result()
    return exc.result if isinstance(exc, RunFailed) else None


def _candidates(skill: str | None) -> list[CompletionResult]:
    from lensbook.operator.supervisor import operators

    with _lock:
        found = [r for k, r in _results.items() if skill is None or k == skill]
    for name, op in operators().items():
        if op.last_result is not None and (skill is None or name == skill):
            found.append(op.last_result)
    return found


def last(
    skill: str | None = None, *, wait: bool = False, timeout: float | None = None
) -> NotificationList | None:
    """The latest run's notifications (`.result` holds the whole result), or None if none ran.

    With `skill`, the latest run of that operator. With `wait=True`, first wait for a run still
    going in the background (`%lens run ... --background`); a run that failed without any
    result raises its error.
    """
    if wait:
        with _lock:
            pending = [f for k, f in _pending.items() if skill is None or k == skill]
        for future in pending:
            try:
                future.result(timeout)
            except RunFailed as exc:
                if exc.result is None:
                    raise
    found = _candidates(skill)
    if not found:
        return None
    return NotificationList(max(found, key=lambda r: r.finished_at))


class Journal:
    """Every notification (and the snapshots they cite) published while it listens, bounded."""

    def __init__(self, max_entries: int = 500) -> None:
        self.model = FeedModel(max_entries=max_entries, max_snapshots=1024)
        self._lock = threading.Lock()
        self._token: int | None = None

    def listen(self) -> None:
        if self._token is None:
            self._token = events.subscribe(self._on_event, kinds=["snapshot", "notification"])

    def stop(self) -> None:
        """Stop listening and forget what was seen."""
        token, self._token = self._token, None
        if token is not None:
            events.unsubscribe(token)
        with self._lock:
            self.model = FeedModel(
                max_entries=self.model.max_entries, max_snapshots=self.model.max_snapshots
            )

    @property
    def listening(self) -> bool:
        return self._token is not None

    def _on_event(self, event: events.Event) -> None:
        with self._lock:
            self.model.apply(event)

    def copy_into(self, feed: FeedModel) -> None:
        """Add what the journal saw to `feed` (oldest first; the feed filters by operator)."""
        with self._lock:
            snapshots: list[tuple[str, dict[str, Any]]] = list(self.model.snapshots.items())
            entries = list(self.model.entries)
        for sid, data in snapshots:
            feed.add_snapshot(sid, data)
        for note in entries:
            feed.add(note)


journal = Journal()
