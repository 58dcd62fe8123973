"""What lensbook remembers between runs for `lensbook.last()`: the latest result of each operator.

`%lens run` hands its results (`remember`) and its background runs (`track`) here, so `last()`
can return them, or wait for one still going. No IPython here: `lensbook.last()` may be called
from any script; the operators' own `last_result` count too.
"""

from __future__ import annotations

import concurrent.futures
import threading

from lensbook._errors import RunFailed
from lensbook.types import CompletionResult, NotificationList

__all__ = ["last", "remember", "track"]

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
    from lensbook.operator.registry import operators

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
