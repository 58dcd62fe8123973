"""Exceptions raised by lensbook.

The hierarchy::

    LensbookError
    ├── OperatorNotStarted (also LookupError)   no static operator for that skill
    ├── UnknownSkill (also LookupError)          no skill with that id
    ├── WrongThread (also RuntimeError)          sync API called from the lens loop itself
    ├── ClientNotConfigured                      no LLM client could be chosen
    ├── RunFailed                                a run ended without a result; carries what it found
    │   ├── LLMError                             every client of the chain failed
    │   ├── OperatorCrashed                      the operator's task crashed mid-run (restarted)
    │   └── OperatorStopped                      the operator was stopped before the run could end
    ├── ProviderError                            one model call failed (retried, then fallback)
    │   └── ScriptExhausted                      a ScriptedClient ran out of turns
    └── RecordError                              a file that cannot be read as a run record

Tool errors (unknown tool, bad arguments, a probe that raises) are never exceptions: they go back
to the model as error results.

Where lensbook calls code that is not its own (a probe, a client, a callback, an event
subscriber), `contained` says which exceptions it absorbs: every `Exception`, and also
`SystemExit` and `KeyboardInterrupt` off the main thread (a probe that parses argv with
argparse, a callback that calls ``sys.exit``). There only the code called can raise them, and
asyncio would let them end the lens loop's thread, and every run on it, for good.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from lensbook.types import CompletionResult, Notification

__all__ = [
    "ClientNotConfigured",
    "LLMError",
    "LensbookError",
    "OperatorCrashed",
    "OperatorNotStarted",
    "OperatorStopped",
    "ProviderError",
    "RecordError",
    "RunFailed",
    "ScriptExhausted",
    "UnknownSkill",
    "WrongThread",
    "contain_call",
    "contained",
    "containing",
]

T = TypeVar("T")


class LensbookError(Exception):
    """Base class of every error lensbook raises on purpose."""


class OperatorNotStarted(LensbookError, LookupError):
    """No static operator was started for the requested skill (see `lensbook.start`)."""


class UnknownSkill(LensbookError, LookupError):
    """No built-in or registered skill has this id."""


class WrongThread(LensbookError, RuntimeError):
    """A blocking call was made from the lens loop's own thread, where it would deadlock."""


class ClientNotConfigured(LensbookError):
    """No LLM client was given and none could be chosen from the environment."""


class RunFailed(LensbookError):
    """A run ended without completing. Nothing it found is lost: see `.notifications`."""

    def __init__(
        self,
        message: str,
        *,
        notifications: list[Notification] | None = None,
        result: CompletionResult | None = None,
    ) -> None:
        super().__init__(message)
        self.notifications: list[Notification] = list(notifications or [])
        self.result = result


class LLMError(RunFailed):
    """The model could not be reached or kept failing, on every client of the chain."""


class OperatorCrashed(RunFailed):
    """The operator's task crashed during this run; the supervisor restarted it."""


class OperatorStopped(RunFailed):
    """The operator was stopped while this run was queued or running."""


class ProviderError(LensbookError):
    """One model call failed. `retryable` errors (rate limits, overload, timeouts) are retried;
    `timed_out` says the provider gave no answer within the call's time limit."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        status: int | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.timed_out = timed_out


class ScriptExhausted(ProviderError):
    """A ScriptedClient was asked for more turns than its script holds."""


class RecordError(LensbookError):
    """A file that cannot be read as a run record: not a lensbook record, a damaged header, or a
    record from a newer format. (Damaged event lines do not raise: they are listed.)"""


def contained(exc: BaseException) -> bool:
    """Whether lensbook absorbs `exc`, raised by code it called: any `Exception`, and
    `SystemExit` or `KeyboardInterrupt` off the main thread (a Ctrl-C reaches the main thread
    only); never a cancellation, which is how a run is stopped."""
    if isinstance(exc, asyncio.CancelledError):
        return False
    if isinstance(exc, Exception):
        return True
    return isinstance(exc, (SystemExit, KeyboardInterrupt)) and (
        threading.current_thread() is not threading.main_thread()
    )


async def containing(awaitable: Awaitable[T]) -> T:
    """`awaitable`'s result, with a contained `SystemExit` or `KeyboardInterrupt` turned into a
    `RuntimeError` (a task that ends with either makes asyncio stop the loop itself)."""
    try:
        return await awaitable
    except (SystemExit, KeyboardInterrupt) as exc:
        if not contained(exc):
            raise
        raise _escaped(exc) from exc


def contain_call(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`fn(*args, **kwargs)`, with a contained `SystemExit` or `KeyboardInterrupt` turned into
    a `RuntimeError` where it is raised (a thread's), before it reaches an event loop."""
    try:
        return fn(*args, **kwargs)
    except (SystemExit, KeyboardInterrupt) as exc:
        if not contained(exc):
            raise
        raise _escaped(exc) from exc


def _escaped(exc: SystemExit | KeyboardInterrupt) -> RuntimeError:
    return RuntimeError(f"{type(exc).__name__} raised: {exc}")
