"""The operators' ``get_history`` tool: the flight recorder's events as the model sees them.

Each event keeps its id (citable in a notification), its time (UTC and seconds ago), kind,
source, a one-line summary and its detail, with stacks cut to their innermost frames so that
forty events fit in a tool result. `ids_in` reads the ids back from a result's text, so a run
(or a replay answering from its record) knows which history ids it may cite.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from lensbook.recorder import KINDS, history_events, is_history_id, is_recording
from lensbook.recorder.api import recorder
from lensbook.recorder.frame import clock, describe
from lensbook.skills.untrusted import from_process

__all__ = ["MAX_CHARS", "MAX_EVENTS", "STACK_FRAMES", "ids_in", "read"]

MAX_EVENTS = 200
STACK_FRAMES = 4
#: the result is kept under this many characters by leaving out the oldest events (never cut
#: mid-way: a cut result would not parse, and its ids could not be cited)
MAX_CHARS = 20_000


def read(kinds: Iterable[str] | None, since_s: float | None, limit: int) -> dict[str, Any]:
    now = time.time()
    wanted = tuple(kinds) if kinds else None
    unknown = sorted(set(wanted or ()) - set(KINDS))
    since = now - since_s if since_s is not None and since_s > 0 else None
    events = history_events(since=since, kinds=wanted, limit=min(max(limit, 0), MAX_EVENTS))
    started = recorder.started_at
    shown = [_shown(e.to_dict(), now) for e in events]
    # (+ a little for the delimiters each string gets on its way out)
    sizes = [len(json.dumps(e, separators=(",", ":"), default=str)) + 40 for e in shown]
    total, first = sum(sizes), 0
    while total > MAX_CHARS and first < len(shown):
        total -= sizes[first]
        first += 1
    out: dict[str, Any] = {
        "recording": is_recording(),
        "recording_since": clock(started) + " UTC" if started else None,
        "now": clock(now) + " UTC",
        "events": shown[first:],
    }
    if first:
        out["left_out"] = f"{first} older event(s); ask for fewer kinds or a shorter since_s"
    if unknown:
        out["unknown_kinds"] = unknown
    if not out["recording"] and not events:
        out["note"] = "the flight recorder is off: lensbook.start() or %load_ext lensbook starts it"
    return out


def _shown(event: dict[str, Any], now: float) -> dict[str, Any]:
    detail = dict(event["detail"])
    stack = detail.get("stack")
    if isinstance(stack, list) and len(stack) > STACK_FRAMES:
        detail["stack"] = stack[-STACK_FRAMES:]
    return {
        "id": event["id"],
        "at": clock(event["time"]),
        "ago_s": round(now - event["time"], 1),
        "time": event["time"],
        "kind": event["kind"],
        # names, paths, messages and source lines were all written by the observed process:
        # the model sees them delimited as data (the offline rules read them undelimited)
        "source": from_process(event["source"]),
        "summary": from_process(describe(event)),
        "detail": _marked(detail),
    }


def _marked(value: Any) -> Any:
    if isinstance(value, str):
        return from_process(value)
    if isinstance(value, dict):
        return {k: _marked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_marked(v) for v in value]
    return value


def ids_in(content: str) -> list[str]:
    """The event ids in a ``get_history`` result's text (none if it is not one)."""
    try:
        value = json.loads(content)
    except ValueError:
        return []
    events = value.get("events") if isinstance(value, dict) else None
    if not isinstance(events, list):
        return []
    return [
        str(e["id"]) for e in events if isinstance(e, dict) and is_history_id(str(e.get("id", "")))
    ]
