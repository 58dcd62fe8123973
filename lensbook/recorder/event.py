"""One entry of the flight recorder's history: a frozen, JSON-safe, already-redacted record.

Ids are ``"h-"`` followed by 12 hex digits: a per-process random start plus a counter, so they
are unique within a process (2**48 ids before they could repeat) and cost no syscall. A
notification cites them in its ``snapshot_ids`` the same way it cites snapshot ids.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from lensbook.skills.base import jsonable
from lensbook.skills.redact import redact, redact_text

__all__ = ["ID_PREFIX", "HistoryEvent", "is_history_id", "make_event"]

ID_PREFIX = "h-"
_ID_MASK = (1 << 48) - 1
# a random start leaves room below 2**48 for ~10**12 ids before wrapping
_counter = itertools.count(secrets.randbits(40))
_counter_lock = threading.RLock()  # (re-entrant: a signal handler may log mid-event)


def _next_id() -> str:
    with _counter_lock:  # itertools.count is atomic under the GIL; the lock keeps it so elsewhere
        n = next(_counter)
    return f"{ID_PREFIX}{n & _ID_MASK:012x}"


def is_history_id(text: str) -> bool:
    """Whether `text` has the shape of a history id ("h-" + 12 hex digits)."""
    if len(text) != 14 or not text.startswith(ID_PREFIX):
        return False
    try:
        int(text[2:], 16)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """Something the process did, as the recorder saw it.

    `time` is epoch seconds (`time.time()`); `kind` one of `lensbook.recorder.KINDS`; `source`
    names who it is about (a logger, a thread, a loop); `detail` is JSON-safe and redacted.
    """

    id: str
    time: float
    kind: str
    source: str
    detail: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": self.time,
            "kind": self.kind,
            "source": self.source,
            "detail": self.detail,
        }


_PLAIN = (str, int, float, bool, type(None))


def _is_plain(value: Any, depth: int = 0) -> bool:
    """Whether `value` is already JSON-safe (the observers build their details so): then it is
    kept as is, not copied by `jsonable`, which matters for memory at the caps."""
    if isinstance(value, _PLAIN):
        return True
    if depth > 4:
        return False
    if isinstance(value, list):
        return all(_is_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v, depth + 1) for k, v in value.items())
    return False


def _share(new: Any, old: Any) -> Any:
    """`new` (redacted), reusing `old`'s objects wherever redaction changed nothing: a
    redacted copy of every string and dict would double the history's memory."""
    if type(new) is type(old) and new == old:
        return old
    if isinstance(new, dict) and isinstance(old, dict):
        return {k: _share(v, old.get(k)) for k, v in new.items()}
    if isinstance(new, list) and isinstance(old, list) and len(new) == len(old):
        return [_share(a, b) for a, b in zip(new, old, strict=True)]
    return new


def make_event(
    kind: str, source: str, detail: dict[str, Any], at: float | None = None
) -> HistoryEvent:
    """A new event, its detail made JSON-safe and redacted before it is stored anywhere."""
    plain = detail if _is_plain(detail) else jsonable(detail)
    clean = _share(redact(plain), plain)
    return HistoryEvent(
        id=_next_id(),
        time=time.time() if at is None else at,
        kind=kind,
        source=_share(redact_text(source), source),
        detail=clean if isinstance(clean, dict) else {"value": clean},
    )
