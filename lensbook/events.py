"""The event bus: every step of every run is published here.

Widgets, run records, the metrics sampler and tests subscribe; each event is also mirrored to the
``lensbook.events`` logger at DEBUG level. Event data is redacted on publication
(`lensbook.skills.redact`), so no subscriber (the run records above all) sees a credential.
Subscribers are called synchronously on the publishing thread (usually the lens loop), so they
must be quick; one that raises is logged and skipped.

Event kinds are the `EventKind` literal below (`EVENT_KINDS` at run time): an operator's run,
the client chain's retries, the operator's lifecycle, the coordinator's run and the watcher.
Readers name the kinds they want with it (`frozenset[EventKind]`), so mypy rejects a misspelt
kind, and a test checks that every kind published in the package is listed here.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from lensbook._errors import contained
from lensbook.skills.redact import clip, redact

__all__ = [
    "COORDINATOR_KINDS",
    "EVENT_KINDS",
    "WATCH_KINDS",
    "CoordinatorEventKind",
    "Event",
    "EventKind",
    "OperatorEventKind",
    "RunEventKind",
    "WatchEventKind",
    "publish",
    "subscribe",
    "unsubscribe",
]

_log = logging.getLogger("lensbook.events")

RunEventKind = Literal[
    "run_queued",
    "run_started",
    "iteration",
    "model_request",
    "model_response",
    "tool_call",
    "tool_result",
    "snapshot",
    "state_changed",
    "notification",
    "compaction",
    "intrusions_undone",
    "error",
    "run_completed",
    # the client chain's
    "model_retry",
    "client_fallback",
]
"""An operator's run."""

OperatorEventKind = Literal[
    "operator_started", "operator_stopped", "operator_crashed", "operator_restarted"
]
"""An operator's lifecycle."""

CoordinatorEventKind = Literal[
    "coordinator_started",
    "coordinator_iteration",
    "coordinator_tool_call",
    "coordinator_tool_result",
    "coordinator_operators_invoked",
    "coordinator_notification",
    "coordinator_notification_status",
    "coordinator_operator_finished",
    "coordinator_operators_stopped",
    "insight",
    "coordinator_completed",
]
"""A coordinator's run (its operators' runs publish their own `RunEventKind`s)."""

WatchEventKind = Literal[
    "watch_started",
    "watch_state",
    "watch_sample",
    "watch_anomaly",
    "watch_trigger",
    "watch_investigation_completed",
    "watch_stopped",
]
"""The watcher's."""

EventKind = Literal[RunEventKind, OperatorEventKind, CoordinatorEventKind, WatchEventKind]
"""Every kind of event published on the bus."""

#: `EventKind` at run time
EVENT_KINDS: frozenset[str] = frozenset(get_args(EventKind))  # nested Literals flatten
#: the coordinator's own kinds, and the watcher's, for the views that follow them
COORDINATOR_KINDS: frozenset[CoordinatorEventKind] = frozenset(get_args(CoordinatorEventKind))
WATCH_KINDS: frozenset[WatchEventKind] = frozenset(get_args(WatchEventKind))


@dataclass(frozen=True, slots=True)
class Event:
    """One step of lensbook's work: what happened (`kind`), to which operator and run."""

    kind: str
    operator: str = ""
    run_id: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    at: float = field(default_factory=time.time)
    seq: int = 0


Subscriber = Callable[[Event], None]

_lock = threading.Lock()
_subscribers: dict[int, tuple[Subscriber, frozenset[str] | None]] = {}
_tokens = itertools.count(1)
_seq = itertools.count(1)


def subscribe(callback: Subscriber, kinds: Iterable[EventKind] | None = None) -> int:
    """Call `callback(event)` for every event (or only those of `kinds`); returns a token."""
    token = next(_tokens)
    with _lock:
        _subscribers[token] = (callback, frozenset(kinds) if kinds is not None else None)
    return token


def unsubscribe(token: int) -> None:
    """Stop the subscription `token`; unknown tokens are ignored."""
    with _lock:
        _subscribers.pop(token, None)


def publish(kind: str, operator: str = "", run_id: str = "", **data: Any) -> Event:
    """Publish one event, redacted, to every subscriber and to the ``lensbook.events`` logger."""
    # the record boundary: records, widgets and logs only ever see redacted event data
    data = redact(data)
    event = Event(kind=kind, operator=operator, run_id=run_id, data=data, seq=next(_seq))
    with _lock:
        targets = list(_subscribers.values())
    for callback, kinds in targets:
        if kinds is not None and kind not in kinds:
            continue
        try:
            callback(event)
        except BaseException as exc:  # off the main thread, its sys.exit() too
            if not contained(exc):
                raise
            _log.exception("event subscriber %r failed on %s", callback, kind)
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug("%s operator=%s run=%s %s", kind, operator, run_id, _brief(data))
    return event


def _brief(data: dict[str, Any], limit: int = 300) -> str:
    return clip(repr(data), limit)
