"""The `logs` skill: what the process logs, seen through a bounded ring of its records.

The ring observes every record through lensbook's tap on ``logging.Logger.callHandlers``
(`lensbook.skills._observers`), from the first use of the skill (a snapshot or a probe), never
at import, until `LogsSkill.close()`. It is no handler: the program's logging configuration,
what it prints and ``basicConfig`` stay exactly as they were, and records of loggers that do not
propagate are seen like any other.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import re2

from lensbook.skills import _observers, intrusion
from lensbook.skills._frames import type_names
from lensbook.skills.base import Skill, probe
from lensbook.skills.history_rules import PastErrorLogBursts
from lensbook.skills.redact import clip, redact_text
from lensbook.skills.rules import Evidence, Finding, ProbeCall, Rule
from lensbook.skills.untrusted import ProcessText, from_process
from lensbook.types import Severity

__all__ = ["LogsSkill", "parse_level"]

#: formatted messages are kept up to this length (longer ones are redacted, then cut)
_KEEP_CHARS = 1000
#: and shown up to this length
_SHOW_CHARS = 300
_MAX_LOGGERS = 1000
_MAX_TEMPLATES = 2000
_BUCKETS = 900  # one per second: 15 minutes of exact rates

_NUMBERS = re.compile(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-fA-F]{8,}\b|\d+")


def parse_level(level: str | int) -> int:
    """A logging level from a name ("warning") or a number ("30", 30)."""
    if isinstance(level, int):
        return level
    text = str(level).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    value = logging.getLevelName(text.upper())
    if not isinstance(value, int):
        raise ValueError(
            f"unknown logging level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL"
        )
    return value


def _template_of(record: logging.LogRecord) -> tuple[str, str]:
    """(grouping key, raw template): the message before formatting.

    A pre-formatted message (no arguments) is grouped with its numbers and ids masked. The key
    is never shown: masking first could cut a credential into pieces redaction no longer
    recognises, so what is shown is built from the raw template, redacted first.
    """
    try:
        raw = _keep(str(record.msg))
    except Exception:
        raw = f"<unprintable {type(record.msg).__name__}>"
    key = raw if record.args else _NUMBERS.sub("<n>", raw)
    return key[:_SHOW_CHARS], raw


def _keep(text: str) -> str:
    if len(text) > _KEEP_CHARS:
        text = clip(text, _KEEP_CHARS, marker="")
    return text


def _shown_template(raw: str, masked: bool) -> ProcessText:
    text = redact_text(raw)
    return _show(_NUMBERS.sub("<n>", text) if masked else text)


def _message_of(record: logging.LogRecord) -> str:
    try:
        message = record.getMessage()
    except Exception:
        message = f"{record.msg} [arguments did not format]"
    return _keep(message)


class _Entry:
    """One record as the ring keeps it: plain fields, no reference to arguments or frames."""

    __slots__ = (
        "created",
        "exc_type",
        "level",
        "location",
        "logger",
        "masked",
        "message",
        "raw_template",
        "template",
        "thread",
    )

    def __init__(self, record: logging.LogRecord) -> None:
        self.created = record.created
        self.level = record.levelno
        self.logger = record.name
        self.template, self.raw_template = _template_of(record)
        self.masked = not record.args
        self.message = _message_of(record)
        self.location = f"{record.filename}:{record.lineno}"
        self.thread = record.threadName or ""
        exc = record.exc_info[0] if record.exc_info else None
        self.exc_type = exc.__name__ if exc is not None else None

    def shown(self, now: float) -> dict[str, Any]:
        return {
            "ago_s": round(now - self.created, 2),
            "level": logging.getLevelName(self.level),
            "logger": from_process(self.logger),
            "message": _show(self.message),
            "location": self.location,
            "thread": from_process(self.thread),
            **({"exception": self.exc_type} if self.exc_type else {}),
        }


def _show(text: str) -> ProcessText:
    return from_process(clip(text, _SHOW_CHARS))


@dataclass
class _Group:
    """Counts of one (logger, level, template) since the ring was installed."""

    logger: str
    level: int
    template: str
    raw_template: str = ""
    masked: bool = False
    count: int = 0
    first: float = 0.0
    last: float = 0.0
    location: str = ""
    thread: str = ""
    example: str = ""
    exc_types: set[str] = field(default_factory=set)


class _Ring:
    """Keeps the newest records (bounded in count and age) and exact counters since install."""

    def __init__(self, max_records: int, max_age: float) -> None:
        # re-entrant: the thread holding it may log again (a signal handler, a __del__, a
        # weakref callback running mid-update), which a plain lock would hang for good
        self.lock = threading.RLock()
        self.max_age = max_age
        self.installed_at = time.time()
        self.ring: deque[_Entry] = deque(maxlen=max_records)
        self.total = 0
        self.by_level: dict[int, int] = {}
        self.by_logger: dict[tuple[str, int], int] = {}
        self.groups: dict[tuple[str, int, str], _Group] = {}
        self.overflow = 0
        # [second, records, warnings, errors]: exact rates even when the ring overflows
        self.buckets: deque[list[int]] = deque(maxlen=_BUCKETS)

    def observe(self, record: logging.LogRecord) -> None:
        """One record (from the tap, in the logging thread). The message is formatted before
        the lock is taken: an argument's ``__str__`` is the program's code, and may log."""
        entry = _Entry(record)
        with self.lock:
            self._add(entry)

    def _add(self, entry: _Entry) -> None:
        level = entry.level
        self.total += 1
        self.by_level[level] = self.by_level.get(level, 0) + 1
        key = (entry.logger, level)
        if key in self.by_logger or len(self.by_logger) < _MAX_LOGGERS:
            self.by_logger[key] = self.by_logger.get(key, 0) + 1
        else:
            self.overflow += 1
        gkey = (entry.logger, level, entry.template)
        group = self.groups.get(gkey)
        if group is None and len(self.groups) < _MAX_TEMPLATES:
            group = self.groups[gkey] = _Group(
                entry.logger, level, entry.template, first=entry.created
            )
        if group is not None:
            group.count += 1
            group.last = entry.created
            group.location = entry.location
            group.thread = entry.thread
            group.example = entry.message
            group.raw_template, group.masked = entry.raw_template, entry.masked
            if entry.exc_type and len(group.exc_types) < 5:
                group.exc_types.add(entry.exc_type)
        self._count_second(entry)
        self.ring.append(entry)
        horizon = entry.created - self.max_age
        while self.ring and self.ring[0].created < horizon:
            self.ring.popleft()

    def _count_second(self, entry: _Entry) -> None:
        second = int(entry.created)
        bucket = None
        # records from several threads arrive slightly out of order: look back a little
        for back in range(1, min(len(self.buckets), 3) + 1):
            candidate = self.buckets[-back]
            if candidate[0] == second:
                bucket = candidate
                break
            if candidate[0] < second:
                break
        if bucket is None:
            if self.buckets and self.buckets[-1][0] > second:
                bucket = self.buckets[-1]
            else:
                bucket = [second, 0, 0, 0]
                self.buckets.append(bucket)
        bucket[1] += 1
        if entry.level >= logging.ERROR:
            bucket[3] += 1
        elif entry.level >= logging.WARNING:
            bucket[2] += 1

    # -- reading (under the ring's lock, copying quickly) --------------------------------

    def entries(self) -> list[_Entry]:
        with self.lock:
            now = time.time()
            return [e for e in self.ring if now - e.created <= self.max_age]

    def window(self, seconds: float) -> dict[str, Any]:
        """Records, warnings and errors over the last `seconds` (exact, from the buckets)."""
        now = time.time()
        start = max(now - seconds, self.installed_at)
        span = max(now - start, 0.0)
        with self.lock:
            rows = [b for b in self.buckets if b[0] >= int(start)]
        records = sum(b[1] for b in rows)
        warnings = sum(b[2] for b in rows)
        errors = sum(b[3] for b in rows)

        def per_s(n: int) -> float | None:
            # a window shorter than a second says little about a rate
            return round(n / span, 3) if span >= 1.0 else None

        return {
            "seconds": round(span, 2),
            "records": records,
            "warnings": warnings,
            "errors": errors,
            "records_per_s": per_s(records),
            "errors_per_s": per_s(errors),
            "warnings_per_s": per_s(warnings),
        }

    def counts(self) -> tuple[int, dict[int, int], dict[tuple[str, int], int]]:
        """Total records, counts by level and by (logger, level), copied under the lock."""
        with self.lock:
            return self.total, dict(self.by_level), dict(self.by_logger)

    def snapshot_groups(self) -> list[_Group]:
        with self.lock:
            return [
                dataclasses.replace(g, exc_types=set(g.exc_types)) for g in self.groups.values()
            ]


#: the longest pattern a model may search with (RE2 compiles it to a bounded program anyway)
MAX_PATTERN = 500


def compile_search_pattern(pattern: str) -> Any:
    """A case-insensitive RE2 pattern; raises `ValueError` saying why a pattern is refused.

    Why RE2 and not `re` with a timeout: `re` cannot be interrupted (a catastrophic pattern
    held the GIL for minutes after its probe's budget abandoned it), and the `regex` module's
    timeout still spends the whole budget holding the GIL. RE2 matches in time linear in the
    text, so there is nothing to interrupt.
    """
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("give a non-empty regular expression")
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"the pattern is {len(pattern)} characters; at most {MAX_PATTERN}")
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False  # RE2 would print to the user's stderr
    options.max_mem = 8 << 20  # bounds the compiled program of a huge repetition
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise ValueError(
            f"invalid regular expression {pattern!r}: {reason} (patterns use RE2 syntax: no "
            "backreferences or lookarounds)"
        ) from None


class LogsSkill(Skill):
    id = "logs"
    title = "Logging"
    description = (
        "Log records of every logger: counts by level and logger, error rates, top messages"
    )
    system_prompt = (
        "You are the logging operator of a live Python process. A ring buffer of every record "
        "logged shows you recent records, exact counts by level and logger, error rates per "
        "second and per minute, and the most frequent messages grouped by their template (the "
        "message before its arguments were filled in). Look for error storms (one logger "
        "repeating one message many times a second), new error types, warning floods and "
        "exceptions logged with tracebacks. Name the logger, the message template, the rate and"
        " where it is logged from (file:line, thread). The ring only sees records from the "
        "moment it was installed (the first use of this skill)."
    )
    # what the coordinator and the watcher know of it (see `Skill`)
    keywords = ("log", "error", "storm", "warning", "spam")
    families: ClassVar[dict[str, tuple[str, ...]]] = {"errors": ("error_storm", "warning_flood")}
    investigates = ("errors",)
    unwatched = frozenset({"observed_s", "buffered_records", "loggers_seen", "message_templates"})
    watched = True

    def __init__(self, max_records: int = 5000, max_age: float = 900.0) -> None:
        self.max_records = max_records
        self.max_age = max_age
        self._ring: _Ring | None = None
        self._change: intrusion.Change | None = None
        self._lock = threading.Lock()

    # -- the observer ---------------------------------------------------------------------

    @property
    def installed(self) -> bool:
        return self._ring is not None and _observers.observing(self._ring.observe)

    def install(self) -> _Ring:
        """Start observing every record into a new ring (idempotent); returns the ring."""
        with self._lock:
            ring = self._ring
            if ring is None or not _observers.observing(ring.observe):
                if ring is not None:  # cut out of the chain: it goes, or the tap stays for it
                    _observers.stop_observing(ring.observe)
                ring = _Ring(self.max_records, self.max_age)
                _observers.observe(ring.observe, every=True)
                self._ring = ring
                if self._change is None:  # removed by lensbook.stop() and at exit
                    self._change = intrusion.switch_on(
                        "logs observer", self.close, max_seconds=None, session=True
                    )
            return ring

    def close(self) -> None:
        """Stop observing and forget what was seen."""
        with self._lock:
            if self._ring is not None:
                _observers.stop_observing(self._ring.observe)
                self._ring = None
            change, self._change = self._change, None
        if change is not None:
            change.forget()

    # -- snapshot and probes --------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Cost: ~5 µs (sums at most 60 one-second buckets); starts observing on first use.

        Each record then costs ~1.8 µs more to log (4.0 -> 5.8 µs for ``log.error``).
        """
        h = self.install()
        recent = h.window(10.0)
        minute = h.window(60.0)
        total, by_level, by_logger = h.counts()
        errors = sum(n for lvl, n in by_level.items() if lvl >= logging.ERROR)
        warnings = sum(n for lvl, n in by_level.items() if logging.WARNING <= lvl < logging.ERROR)
        return {
            "records_total": total,
            "errors_total": errors,
            "warnings_total": warnings,
            "records_per_s": recent["records_per_s"] or 0.0,
            "errors_per_s": recent["errors_per_s"] or 0.0,
            "errors_last_min": minute["errors"],
            "buffered_records": len(h.ring),
            "loggers_seen": len({name for name, _ in by_logger}),
            "message_templates": len(h.groups),
            "observed_s": round(time.time() - h.installed_at, 1),
            "handlers_total": _count_handlers(),
        }

    @probe
    def handlers(self, limit: int = 5) -> dict[str, Any]:
        """Loggers with the most handlers: each handler's class, level and target (a file's path,
        a stream's name), with handlers of one class and target on one logger counted as
        duplicates (every record is then written once per copy). lensbook adds no handler.

        Args:
            limit: how many loggers to list, most handlers first (at most 20).

        Cost: one pass over the logging manager's loggers (~1 µs per logger).
        """
        rows: list[dict[str, Any]] = []
        for name, logger in _loggers():
            own = list(logger.handlers)
            if not own:
                continue
            targets = Counter((type_names(type(h))[2], _target(h)) for h in own)
            rows.append(
                {
                    "logger": name,
                    "handlers": len(own),
                    "propagate": logger.propagate,
                    # only handlers with a known target (a file, a named stream) can be told
                    # apart: two in-memory handlers of one class may serve different readers
                    "duplicates": sum(n - 1 for (_, t), n in targets.items() if t is not None),
                    "by_target": [
                        {"class": cls, "target": target or "unknown", "count": n}
                        for (cls, target), n in targets.most_common(3)
                    ],
                }
            )
        rows.sort(key=lambda r: (-int(r["duplicates"]), -int(r["handlers"])))
        return {
            "loggers_with_handlers": len(rows),
            "handlers_total": sum(r["handlers"] for r in rows),
            "top": rows[: min(max(limit, 1), 20)],
        }

    @probe
    def summary(self, top: int = 8) -> dict[str, Any]:
        """Counts by level and by logger since the ring was installed, and error rates.

        Rates are exact (one-second buckets, not the ring): per second over the last 10 s and
        60 s, and per minute.

        Cost: O(loggers seen + 900 buckets), well under a millisecond.

        Args:
            top: how many loggers to list, busiest first.
        """
        h = self.install()
        now = time.time()
        entries = h.entries()
        total, by_level, counts = h.counts()
        by_logger = sorted(counts.items(), key=lambda kv: -kv[1])
        loggers: dict[str, dict[str, int]] = {}
        for (name, level), count in by_logger:
            row = loggers.setdefault(name, {})
            level_name = logging.getLevelName(level)
            row[level_name] = row.get(level_name, 0) + count
        ranked = sorted(loggers.items(), key=lambda kv: -sum(kv[1].values()))
        last10, last60 = h.window(10.0), h.window(60.0)
        return {
            "observing_since_s": round(now - h.installed_at, 1),
            "records_total": total,
            "by_level": {logging.getLevelName(k): v for k, v in sorted(by_level.items())},
            "loggers": [
                {"logger": from_process(name), "total": sum(levels.values()), "by_level": levels}
                for name, levels in ranked[: max(top, 0)]
            ],
            "loggers_seen": len(loggers),
            "last_10s": last10,
            "last_60s": last60,
            "errors_per_min": (
                round(last60["errors_per_s"] * 60, 1)
                if last60["errors_per_s"] is not None
                else None
            ),
            "buffer": {
                "records": len(entries),
                "max_records": h.ring.maxlen,
                "max_age_s": h.max_age,
                "oldest_age_s": round(now - entries[0].created, 1) if entries else None,
            },
            "uncounted_logger_records": h.overflow,
        }

    @probe(max_chars=12_000)
    def recent(
        self, limit: int = 15, min_level: str = "WARNING", logger: str = ""
    ) -> dict[str, Any]:
        """The newest records in the buffer, newest first.

        Cost: one pass over the ring buffer (5,000 records at most), ~2 ms when full.

        Args:
            limit: how many records (at most 100).
            min_level: the lowest level shown (DEBUG, INFO, WARNING, ERROR, CRITICAL).
            logger: only this logger and its children (e.g. "payments"); empty for all.
        """
        h = self.install()
        level = parse_level(min_level)
        now = time.time()
        chosen = [e for e in h.entries() if e.level >= level and _under(e.logger, logger)]
        chosen.reverse()
        return {
            "matched": len(chosen),
            "records": [e.shown(now) for e in chosen[: min(max(limit, 0), 100)]],
        }

    @probe(max_chars=12_000)
    def search(self, pattern: str, limit: int = 15, min_level: str = "DEBUG") -> dict[str, Any]:
        """Records in the buffer whose message or logger name matches a regular expression.

        Matching is done on the redacted text, so a search cannot reveal a credential. The
        pattern is run by RE2, whose matching time is linear in the text: no pattern can make
        it backtrack for minutes (RE2 has no backreferences or lookarounds).

        Cost: one redaction and regex match per buffered record, ~70 ms for a full ring of 5,000.

        Args:
            pattern: a regular expression (RE2 syntax, like Python's without backreferences
                or lookarounds), case-insensitive (e.g. "timeout|refused").
            limit: how many records to return, newest first (at most 100).
            min_level: the lowest level searched.
        """
        regex = compile_search_pattern(pattern)
        h = self.install()
        level = parse_level(min_level)
        now = time.time()
        matched: list[_Entry] = []
        for e in reversed(h.entries()):
            if e.level < level:
                continue
            if regex.search(e.logger) or regex.search(redact_text(e.message)):
                matched.append(e)
        return {
            "pattern": pattern,
            "matched": len(matched),
            "records": [e.shown(now) for e in matched[: min(max(limit, 0), 100)]],
        }

    @probe(max_chars=12_000)
    def top_messages(
        self, limit: int = 10, min_level: str = "WARNING", window_s: float = 60.0
    ) -> dict[str, Any]:
        """The most frequent messages, grouped by logger, level and message template.

        A template is the message before its arguments were filled in, so "failed to fetch %s"
        groups across URLs (pre-formatted messages have their numbers masked instead). Each
        group has its count since install, its count and rate in the recent window (from the
        buffer), where it is logged from and an example.

        Cost: one pass over the buffer and the template table (at most 2,000 groups), ~1 ms.

        Args:
            limit: how many groups (at most 50).
            min_level: the lowest level counted.
            window_s: the recent window for rates, in seconds.
        """
        h = self.install()
        level = parse_level(min_level)
        now = time.time()
        entries = h.entries()
        start = max(now - max(window_s, 1.0), h.installed_at)
        if len(entries) == h.ring.maxlen and entries and entries[0].created > start:
            start = entries[0].created  # the ring overflowed: it covers less than the window
        span = max(now - start, 1e-3)
        in_window: dict[tuple[str, int, str], int] = {}
        for e in entries:
            if e.level >= level and e.created >= start:
                key = (e.logger, e.level, e.template)
                in_window[key] = in_window.get(key, 0) + 1
        groups = [g for g in h.snapshot_groups() if g.level >= level]
        groups.sort(key=lambda g: (-in_window.get((g.logger, g.level, g.template), 0), -g.count))
        shown = []
        for g in groups[: min(max(limit, 0), 50)]:
            recent = in_window.get((g.logger, g.level, g.template), 0)
            shown.append(
                {
                    "logger": from_process(g.logger),
                    "level": logging.getLevelName(g.level),
                    "template": _shown_template(g.raw_template, g.masked),
                    "count": g.count,
                    "in_window": recent,
                    "per_s": round(recent / span, 3),
                    "per_min": round(recent / span * 60, 1),
                    "first_seen_ago_s": round(now - g.first, 1),
                    "last_seen_ago_s": round(now - g.last, 1),
                    "location": g.location,
                    "thread": from_process(g.thread),
                    "example": _show(g.example),
                    **({"exceptions": sorted(g.exc_types)} if g.exc_types else {}),
                }
            )
        return {
            "window_s": round(span, 2),
            "groups_total": len(groups),
            "templates_table_full": len(h.groups) >= _MAX_TEMPLATES,
            "groups": shown,
        }

    @probe(budget=8.0, intrusive="tracemalloc")  # a window of up to 5 s, then one pass
    def handler_origins(self, seconds: float = 1.0) -> dict[str, Any]:
        """Where handlers are being created: the user code (function, file:line) that made the
        handlers created during a short tracemalloc window.

        Args:
            seconds: the window (0.2 to 5).

        Cost: allocations are traced for `seconds` (slower meanwhile); one pass over loggers.
        """
        from lensbook.skills.creation import created_where

        return created_where(
            lambda: [h for _, logger in _loggers() for h in logger.handlers],
            seconds,
        )

    def rules(self) -> Sequence[Rule]:
        return (ErrorStorm(), WarningFlood(), DuplicateHandlers(), PastErrorLogBursts())


def _loggers() -> list[tuple[str, logging.Logger]]:
    found: list[tuple[str, logging.Logger]] = [("root", logging.root)]
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            found.append((name, logger))
    return found


def _count_handlers() -> int:
    return sum(len(logger.handlers) for _, logger in _loggers())


def _target(handler: logging.Handler) -> str | None:
    """Where a handler writes: a file's path or a stream's name (None when it has neither)."""
    path = getattr(handler, "baseFilename", None)
    if path is None:
        stream = getattr(handler, "stream", None)
        path = getattr(stream, "name", None) if stream is not None else None
    if not isinstance(path, str):
        return None
    return redact_text(path)


def _under(name: str, prefix: str) -> bool:
    return not prefix or name == prefix or name.startswith(prefix + ".")


# -- rules ------------------------------------------------------------------------------------

#: errors per second (over the recent window) that make a storm, and a critical one
STORM_RATE = 1.0
CRITICAL_RATE = 50.0
STORM_MIN_ERRORS = 10
WARNING_FLOOD_RATE = 10.0


def _wants_details(ev: Evidence) -> bool:
    if len(ev.snapshots) < 2:
        return False
    return bool(ev.latest("errors_total", 0) or ev.latest("warnings_total", 0))


def _detail_probes(limit: int, min_level: str) -> list[ProbeCall]:
    """The summary and the top messages at or above `min_level` over the last minute."""
    return [
        ProbeCall("logs_summary"),
        ProbeCall("logs_top_messages", {"limit": limit, "min_level": min_level, "window_s": 60.0}),
    ]


class ErrorStorm(Rule):
    """Errors logged at a high rate, named by logger, template, rate and call site."""

    name = "error_storm"
    snapshots_needed = 2
    gap = 2.0

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        return _detail_probes(5, "ERROR") if _wants_details(ev) else []

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        summary = ev.result("logs_summary")
        top = ev.result("logs_top_messages")
        if not isinstance(summary, dict) or not isinstance(top, dict):
            return self._from_snapshot(ev)
        window = summary.get("last_10s") or {}
        rate = window.get("errors_per_s")
        errors = int(window.get("errors") or 0)
        if rate is None or rate < STORM_RATE or errors < STORM_MIN_ERRORS:
            return []
        groups = [g for g in top.get("groups", []) if g.get("in_window")]
        if not groups:
            return []
        lead = groups[0]
        share = lead["in_window"] / max(sum(g["in_window"] for g in groups), 1)
        severity: Severity = "critical" if rate >= CRITICAL_RATE else "warning"
        others = "; ".join(f"{g['logger']!r} {g['template']!r} {g['per_s']}/s" for g in groups[1:3])
        exc = f", with {', '.join(lead['exceptions'])} tracebacks" if lead.get("exceptions") else ""
        return [
            Finding(
                anomaly_type="error_storm",
                severity=severity,
                context=(
                    f"{errors} ERROR records in the last {window.get('seconds')} s "
                    f"({rate:.1f} errors/s, {rate * 60:.0f}/min); {summary.get('records_total')} "
                    f"records since the log handler was installed "
                    f"{summary.get('observing_since_s')} s ago"
                ),
                observation=(
                    f"logger {lead['logger']!r} repeats {lead['level']} {lead['template']!r} at "
                    f"{lead['per_s']:.1f}/s ({lead['per_min']:.0f}/min; {share:.0%} of recent "
                    f"errors, {lead['count']} since install{exc}), logged from {lead['location']} "
                    f"in thread {lead['thread']!r}; example: {lead['example']!r}"
                    + (f". Also: {others}" if others else "")
                ),
                hypothesis=(
                    f"a failing dependency behind {lead['logger']!r} is retried in a tight loop "
                    f"without backoff (the same template repeats); look at {lead['location']}"
                ),
            )
        ]

    @staticmethod
    def _from_snapshot(ev: Evidence) -> Sequence[Finding]:
        """The cheap check (triage): the snapshot's error rate alone, without the names."""
        if "logs_summary" in ev.results or "logs_summary" in ev.errors:
            return []  # the probes ran and saw no storm; do not second-guess them
        rate = float(ev.latest("errors_per_s", 0.0) or 0.0)
        errors = int(ev.latest("errors_last_min", 0) or 0)
        if rate < STORM_RATE or errors < STORM_MIN_ERRORS:
            return []
        severity: Severity = "critical" if rate >= CRITICAL_RATE else "warning"
        return [
            Finding(
                anomaly_type="error_storm",
                severity=severity,
                context=f"{errors} ERROR records in the last minute",
                observation=f"errors logged at {rate:.1f}/s over the last 10 s",
                hypothesis="one failure repeating; logs_top_messages names the logger, "
                "template and call site",
            )
        ]


class WarningFlood(Rule):
    """Warnings logged many times a second (noise that hides real problems, and costs CPU)."""

    name = "warning_flood"
    snapshots_needed = 2
    gap = 2.0

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if not _wants_details(ev) or not ev.latest("warnings_total", 0):
            return []
        return _detail_probes(3, "WARNING")

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        summary = ev.result("logs_summary")
        calls = ev.results.get("logs_top_messages", [])
        top = next((v for a, v in calls if a.get("min_level") == "WARNING"), None)
        if not isinstance(summary, dict) or not isinstance(top, dict):
            return []
        window = summary.get("last_10s") or {}
        rate = window.get("warnings_per_s")
        if rate is None or rate < WARNING_FLOOD_RATE:
            return []
        lead = next((g for g in top.get("groups", []) if g.get("level") == "WARNING"), None)
        if lead is None:
            return []
        return [
            Finding(
                anomaly_type="warning_flood",
                severity="info",
                context=f"{window.get('warnings')} WARNING records in the last "
                f"{window.get('seconds')} s ({rate:.1f}/s)",
                observation=(
                    f"logger {lead['logger']!r} logs {lead['template']!r} at {lead['per_s']:.1f}/s "
                    f"from {lead['location']} (thread {lead['thread']!r})"
                ),
                hypothesis="a warning in a hot path; it costs CPU and hides rarer records",
            )
        ]


class DuplicateHandlers(Rule):
    """One logger given the same handler again and again (a setup function called per use)."""

    name = "duplicate_handlers"
    snapshots_needed = 2
    gap = 2.0

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if len(ev.snapshots) < 2 or not ev.latest("handlers_total", 0):
            return []
        calls = [ProbeCall("logs_handlers", {"limit": 3})]
        if ev.delta("handlers_total") > 0 and self._lead(ev) is not None:
            calls.append(ProbeCall("logs_handler_origins"))  # who keeps adding them
        return calls

    @staticmethod
    def _lead(ev: Evidence) -> dict[str, Any] | None:
        result = ev.result("logs_handlers")
        if not isinstance(result, dict):
            return None
        return next((r for r in result.get("top") or [] if r.get("duplicates", 0) >= 1), None)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        result = ev.result("logs_handlers")
        lead = self._lead(ev)
        if not isinstance(result, dict) or lead is None:
            return []
        target = lead["by_target"][0]
        grew = int(ev.delta("handlers_total"))
        growth = f"; +{grew} handlers in {ev.elapsed():.1f} s" if grew > 0 else ""
        return [
            Finding(
                anomaly_type="duplicate_log_handlers",
                severity="warning",
                context=(
                    f"{result.get('handlers_total')} handlers on "
                    f"{result.get('loggers_with_handlers')} logger(s){growth}"
                ),
                observation=(
                    f"logger {lead['logger']!r} has {lead['handlers']} handlers, "
                    f"{target['count']} of them {target['class']} writing to "
                    f"{target['target']!r}: every record it logs is written "
                    f"{target['count']} times" + _origin_text(ev.result("logs_handler_origins"))
                ),
                hypothesis=(
                    f"the code that configures {lead['logger']!r} runs again on every use "
                    "(logging.getLogger returns the same logger each time, so each call adds "
                    "one more handler, and a FileHandler keeps a file open): configure logging "
                    "once at start-up, or add the handler only if the logger has none"
                ),
            )
        ]


def _origin_text(origins: Any) -> str:
    if not isinstance(origins, dict) or not origins.get("sites"):
        return ""
    lead = origins["sites"][0]
    via = f" (via {lead['via']})" if lead.get("via") else ""
    return (
        f"; new handlers are created at {lead['site']}{via}: {lead['count']} in the "
        f"{origins.get('window_s')} s window"
    )
