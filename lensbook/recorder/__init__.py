"""The flight recorder: a bounded, redacted history of what the process did since lensbook loaded.

Started by `lensbook.start()`, `%load_ext lensbook` and `lensbook.watch`, passive observers
record uncaught and logged exceptions, log records (rates per logger and level, the last
warnings and errors), thread births and deaths by kind, and event-loop lag with a sample of the
blocked loop's stack. Skills' rules read it through the operators' ``get_history`` tool, so a
run answers "what happened since lensbook loaded"; notifications cite history ids (``h-...``)
as they cite snapshot ids.

    from lensbook import recorder
    recorder.history_events(kinds=["thread_died"])   # [HistoryEvent(id='h-...', ...)]
    lensbook.history()                                # the same as pandas DataFrames

Kinds and their `detail` (all JSON-safe; `where` is "file:line", `stack` is "file:line in
function" strings, outermost first, at most 8):

- ``exception`` (uncaught; source: thread or loop): type, message, where, function, line, thread,
  stack, route ("main", "thread", "task", "callback", "cell"), uncaught=True, count (of this
  type and site so far), execution_count (a cell's number, when the shell gave one);
  ``logged_exception``: the same with route "logged", uncaught=False,
  logger, level, log (the record's message). The first 5 per site and minute are kept whole.
- ``exception_rate`` (per flush and site): type, where, function, uncaught, routes, count,
  total, rate_per_s, window_s, first, last (epoch seconds).
- ``log`` (WARNING and above; source: logger): level, message, where, function, thread, count;
  ``log_rate`` (per flush, logger and level): logger, level, count, rate_per_s, window_s.
- ``thread_started`` / ``thread_ended`` (source: thread name): thread, target, kind (the name
  with digits as N), started_from (the first frame in the user's code), function (the starting
  code), via (the library frame that started it for that code, or ""), daemon, count / lived_s,
  died (an end is timed when a flush or a read notices it, at most a flush interval late);
  ``thread_died``: the exception's fields plus target, started_from, kind;
  ``thread_growth`` (per flush and kind): kind, target, started_from, function, via, started,
  ended, died, alive, started_total, rate_per_s, window_s, pools.
- ``loop_lag`` (source: "loop 0x... in <thread>"): lag_ms, threshold_ms, thread,
  still_blocked, sampled, and when sampled: coroutine, coroutine_where, function, where,
  blocking_call (the source line), stack.
- ``metrics`` (source: "sampler"; the sampled runtime snapshot when it moved a step, at least
  every 10 min; the first of a recording has baseline=True): rss_mb, threads, python_threads,
  open_fds, children (child processes), allocated_blocks, gc_collections, gc_gen2_collections,
  gc_uncollectable, cpu_percent, host_memory_percent, host_swap_percent, host_load_per_cpu,
  baseline, moved.
- ``gc_pause`` (source: "gc"; a full collection that paused the process longer than 50 ms):
  duration_ms, threshold_ms, generation, collected, uncollectable.
- ``trace`` (source: the traced function; written by the tracer skill when one of its windows
  ends, never always-on): target, kind, defined_at, window_s, stopped_by, calls, calls_per_s,
  mean_ms, p95_ms, max_ms, exceptions (count), callers (the 3 busiest: at, calls, mean_ms).

Mechanism and costs: `api` (lifecycle, the tick), `ring` (per-kind caps, rate gate),
`exceptions`, `logs`, `threads`, `aio`, `samples`, `gcpause` (one observer each), `event` (the
record and its ids), `frames` (frames and exceptions as small facts), `frame` (pandas and
one-line text).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from lensbook.limits import SAMPLE_INTERVAL
from lensbook.recorder.api import KINDS, recorder
from lensbook.recorder.event import HistoryEvent, is_history_id
from lensbook.recorder.frame import clock, describe, text_timeline
from lensbook.recorder.ring import CAPS, MAX_AGE_S

__all__ = [
    "CAPS",
    "KINDS",
    "MAX_AGE_S",
    "HistoryEvent",
    "clear",
    "clock",
    "describe",
    "flush",
    "history_event",
    "history_events",
    "is_history_id",
    "is_recording",
    "record",
    "recording_since",
    "start",
    "start_sampler",
    "stop",
    "text_timeline",
]


def history_events(
    since: float | None = None,
    kinds: Collection[str] | None = None,
    limit: int | None = None,
) -> list[HistoryEvent]:
    """The history, oldest first, already redacted.

    Args:
        since: only events at or after this epoch time (`time.time()`).
        kinds: only events of these kinds (see `KINDS`).
        limit: only the newest `limit` events (still oldest first).
    """
    if isinstance(kinds, str):
        kinds = (kinds,)  # a lone kind, not its letters
    return recorder.events(since, kinds, limit)


def history_event(event_id: str) -> HistoryEvent | None:
    """The event with this id, while it is still kept (None after the caps dropped it)."""
    if not is_history_id(event_id):
        return None
    return next((e for e in recorder.ring.events() if e.id == event_id), None)


def is_recording() -> bool:
    """Whether the observers are installed."""
    return recorder.recording


def recording_since() -> float | None:
    """When the current recording began (epoch seconds); None when not recording."""
    return recorder.started_at if recorder.recording else None


def record(kind: str, source: str, detail: dict[str, Any]) -> HistoryEvent | None:
    """Write an event a skill observed on demand (see ``trace``) into the history while
    recording (redacted, within the kind's cap); None when the recorder is off."""
    return recorder.add(kind, source, detail)


def start(
    owner: str = "api", *, shell: Any = None, sample_interval: float | None = SAMPLE_INTERVAL
) -> None:
    """Start recording for `owner` (idempotent); `shell` is an IPython shell to watch cells of."""
    recorder.start(owner, shell=shell, sample_interval=sample_interval)


def stop(owner: str | None = None) -> None:
    """Stop recording for `owner` (for everyone if None); hooks go when no owner is left."""
    recorder.stop(owner)


def start_sampler(interval: float | None) -> None:
    """Sample the runtime snapshot into the metrics store every `interval` seconds."""
    recorder.start_sampler(interval)


def flush() -> None:
    """Turn the counters into rate events now (reading does it too)."""
    recorder.flush()


def clear() -> None:
    """Forget the history recorded so far."""
    recorder.clear()
