"""Rules: how a skill teaches the offline investigator to investigate it.

The offline investigator (`lensbook.clients.offline`) drives the same operator loop a model
would. Each turn it rebuilds the `Evidence` from the conversation (snapshots and probe results),
asks every rule of the skill which probes it `wants` next, calls those not yet called, and when
no rule wants more, asks each rule to `judge` the evidence. A rule is any object with these two
methods; subclass `Rule` for the defaults.

    class QueueBacklog(Rule):
        name = "queue_backlog"
        snapshots_needed = 2            # a trend: two snapshots, `gap` seconds apart

        def wants(self, ev):
            return [ProbeCall("queue_oldest", {"limit": 3})] if ev.latest("depth", 0) > 100 else []

        def judge(self, ev):
            if ev.delta("depth") > 50:
                oldest = ev.result("queue_oldest")
                return [Finding("queue_backlog", "warning", context=..., observation=...)]
            return []

A rule that names `history_kinds` also reads what the flight recorder saw before the run
(`ev.history`, `ev.history_of(kind)`) and cites those events in `Finding.history_ids`.

A rule may also say which family of symptoms its findings belong to (`families`, e.g.
``{"memory growth": ("queue_backlog",)}``): the coordinator links findings of one family seen by
several operators, and follows the causal `Chain`s between families that skills declare
(`lensbook.skills.knowledge` gathers both).
"""

from __future__ import annotations

from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lensbook.types import HealthState, Severity

__all__ = [
    "Chain",
    "CountGrowth",
    "Evidence",
    "Finding",
    "ProbeCall",
    "Rule",
    "as_dict",
    "as_number",
    "wanted_calls",
]


def as_dict(value: Any) -> dict[str, Any]:
    """`value` if it is a JSON object, else an empty one: what a rule reads from a probe's
    result or a snapshot's field, which may be an error text, a list or missing."""
    return value if isinstance(value, dict) else {}


def as_number(value: Any, default: float = 0.0) -> float:
    """`value` as a float if it is a JSON number (a bool is not one), else `default`."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else default


@dataclass(frozen=True)
class ProbeCall:
    """A tool the rule wants called, with its arguments."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Chain:
    """A known causal chain between families of symptoms: each link explains the next."""

    links: tuple[str, ...]
    mechanism: str


@dataclass(frozen=True)
class Finding:
    """What a rule concludes; becomes one notification (citing the run's snapshots)."""

    anomaly_type: str
    severity: Severity
    context: str
    observation: str
    hypothesis: str | None = None
    #: the health state this finding implies (default: from the severity)
    state: HealthState | None = None
    #: history events (flight recorder ids, "h-...") that prove it, cited with the snapshots
    history_ids: tuple[str, ...] = ()

    @property
    def implied_state(self) -> HealthState:
        if self.state is not None:
            return self.state
        states: dict[str, HealthState] = {
            "info": "observing",
            "warning": "warning",
            "critical": "critical",
        }
        return states[self.severity]


@dataclass
class Evidence:
    """What the investigation has seen so far, for rules to read."""

    context: dict[str, Any]
    #: snapshot data in the order taken, with their ids and capture times (epoch seconds)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    snapshot_ids: list[str] = field(default_factory=list)
    snapshot_times: list[float] = field(default_factory=list)
    #: probe results: tool name -> list of (arguments, parsed JSON value or raw text), in order
    results: dict[str, list[tuple[dict[str, Any], Any]]] = field(default_factory=dict)
    #: probe errors: tool name -> error texts
    errors: dict[str, list[str]] = field(default_factory=dict)
    #: flight-recorder events the run was shown (``get_history``), oldest first, each once;
    #: each a dict with id, time, kind, source, summary and detail
    history: list[dict[str, Any]] = field(default_factory=list)
    #: whether the run asked for the history (and the recorder was on when it answered)
    history_read: bool = False
    history_recording: bool = False

    @property
    def reason(self) -> str:
        return str(self.context.get("reason", ""))

    def latest(self, key: str, default: Any = None) -> Any:
        """The newest snapshot's value for `key`."""
        return self.snapshots[-1].get(key, default) if self.snapshots else default

    def first(self, key: str, default: Any = None) -> Any:
        return self.snapshots[0].get(key, default) if self.snapshots else default

    def delta(self, key: str) -> float:
        """Newest minus oldest snapshot value of a numeric key (0 when unknown)."""
        a, b = self.first(key), self.latest(key)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return float(b) - float(a)
        return 0.0

    def elapsed(self) -> float:
        """Seconds between the oldest and newest snapshot."""
        if len(self.snapshot_times) < 2:
            return 0.0
        return self.snapshot_times[-1] - self.snapshot_times[0]

    def rose(self, key: str, floor: float, share: float) -> bool:
        """Whether `key` rose by at least `floor` and by `share` of its first value.

        The floor keeps a small count's noise (a pool's worker or two) from counting as growth;
        the share scales the bar with what the program already had.
        """
        first = self.first(key, 0)
        start = float(first) if isinstance(first, (int, float)) else 0.0
        return self.delta(key) >= max(floor, share * start)

    def moved(self, key: str, unit: str = "") -> str:
        """How `key` moved over the snapshots, as findings state it: ``"10 -> 90 MB in 2.0 s"``."""
        return f"{self.first(key)} -> {self.latest(key)}{unit} in {self.elapsed():.1f} s"

    def rate(self, key: str) -> float | None:
        """Per-second change of `key` between the oldest and newest snapshot."""
        span = self.elapsed()
        return self.delta(key) / span if span > 0 else None

    def history_of(self, *kinds: str) -> list[dict[str, Any]]:
        """The history events of these kinds, oldest first."""
        return [e for e in self.history if e.get("kind") in kinds]

    def result(self, name: str, default: Any = None) -> Any:
        """The newest result of probe `name` (parsed JSON where it parsed)."""
        found = self.results.get(name)
        return found[-1][1] if found else default

    def called(self, call: ProbeCall) -> bool:
        return any(args == call.arguments for args, _ in self.results.get(call.name, [])) or (
            call.name in self.errors
        )


class Rule:
    """Base class of rules; override `wants` and `judge`."""

    name: str = ""
    #: snapshots this rule needs before judging (2 or more for a trend)
    snapshots_needed: int = 1
    #: seconds to wait between snapshots when a trend is needed
    gap: float = 2.0
    #: flight-recorder kinds this rule reads (`Evidence.history`); the offline investigator
    #: asks for them once, after the first snapshot
    history_kinds: tuple[str, ...] = ()
    #: family of symptoms -> the anomaly types of this rule's findings in it (for the
    #: coordinator: see `lensbook.skills.knowledge`)
    families: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        """Probes to call next given the evidence so far (already-called ones are skipped)."""
        return ()

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        """Findings from the evidence; empty when this rule sees nothing wrong."""
        return ()


def wanted_calls(rules: Sequence[Rule], ev: Evidence, tools: Container[str]) -> list[ProbeCall]:
    """The probe calls `rules` want next, in order and once each: only those `tools` holds and
    `ev` has not seen yet. A rule whose `wants` raises asks for nothing (it may judge anyway)."""
    wanted: list[ProbeCall] = []
    for rule in rules:
        try:
            calls = list(rule.wants(ev))
        except Exception:
            continue
        for c in calls:
            if c.name in tools and not ev.called(c) and c not in wanted:
                wanted.append(c)
    return wanted


class CountGrowth(Rule):
    """A rule about a snapshot count that climbs (threads, tasks): once `key` rose by `floor`
    and by `share` of its first value (`Evidence.rose`), it asks for the `detail` probes that
    name what grows, and its `judge` reads them while `growing` holds."""

    snapshots_needed = 2
    #: the snapshot count this rule watches
    key: str = ""
    #: growth that counts: at least `floor`, and this share of the first value
    floor: float = 0.0
    share: float = 0.0
    #: the probes that name what grows (copied for each call: their arguments are dicts)
    detail: tuple[ProbeCall, ...] = ()

    def growing(self, ev: Evidence) -> bool:
        return len(ev.snapshots) >= 2 and ev.rose(self.key, self.floor, self.share)

    def wants(self, ev: Evidence) -> Sequence[ProbeCall]:
        if not self.growing(ev):
            return []
        return [ProbeCall(c.name, dict(c.arguments)) for c in self.detail]
