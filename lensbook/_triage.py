"""Triage: a cheap sweep of every started skill, the flight recorder's history and each rule's
cheap checks, ranked by severity and confidence, before any investigation.

    t = lensbook.triage()
    t.signals        # ranked: skill, anomaly type, severity, confidence, summary, evidence
    t.skills()       # the skills the evidence points at, most severe first
    t.frame()        # as a pandas DataFrame

For each skill it takes one snapshot (never a heap walk) and builds the `Evidence` a rule reads:
the oldest sample of that skill in the metrics store within `window_s` (when there is one) and
the snapshot just taken, so trend rules see the process's history, not an instant. It asks each
rule what it `wants`, calls only the probes their skill marked ``cheap`` (microseconds, see
`lensbook.probe`), and asks each rule to `judge`. Every finding becomes a `Signal`; so do the
error events of the flight recorder's history (via `lensbook.skills._history`). Confidence
says how much the evidence behind a signal weighs: a trend over many samples or a finding of
a probe counts more than one snapshot.

The coordinator dispatches operators from this ranking (its reason's keywords only break ties),
and an operator run whose reason is vague is told what triage saw. Cost: the sum of the
skills' snapshot costs plus the cheap probes, bounded by `budget_s` (skills left out past it
are listed in ``skipped``); no heap walk, so it stays far below 100 ms on a million-object heap.
"""

from __future__ import annotations

import contextlib
import re
import time
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from lensbook.skills import SkillLike, knowledge, resolve_skill, skill_ids
from lensbook.skills._history import error_rate
from lensbook.skills.base import PROBE_ATTR, ProbeTool, jsonable, outgoing
from lensbook.skills.redact import clip, redact
from lensbook.skills.rules import Evidence, Finding, ProbeCall, Rule, wanted_calls
from lensbook.skills.untrusted import from_process
from lensbook.types import Severity

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Signal", "Triage", "is_vague", "triage"]

_SEVERITY_RANK: dict[str, int] = {"critical": 3, "warning": 2, "info": 1}


@dataclass(frozen=True)
class Signal:
    """One thing triage saw: which skill, what kind, how bad, how sure, and why."""

    skill: str
    anomaly_type: str
    severity: Severity
    #: 0..1: how much evidence stands behind it (samples, probes, history events)
    confidence: float
    summary: str
    #: "rule" (a rule's cheap check) or "history" (the flight recorder)
    source: str
    #: history ids ("h-...") the signal rests on
    history_ids: tuple[str, ...] = ()
    hypothesis: str | None = None

    @property
    def score(self) -> float:
        return _SEVERITY_RANK.get(self.severity, 0) + self.confidence

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Triage:
    """The ranked result of a sweep (see the module's docstring)."""

    at: float
    seconds: float
    signals: list[Signal] = field(default_factory=list)
    #: skill id -> the snapshot taken
    snapshots: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: skill id -> why it could not be swept (a raising snapshot, the time budget)
    skipped: dict[str, str] = field(default_factory=dict)
    history_recording: bool = False

    def skills(self, min_severity: Severity = "warning") -> list[str]:
        """Skills the signals point at (at `min_severity` or above), most severe first."""
        floor = _SEVERITY_RANK[min_severity]
        found: list[str] = []
        for s in self.signals:
            if _SEVERITY_RANK.get(s.severity, 0) >= floor and s.skill not in found:
                found.append(s.skill)
        return found

    @property
    def healthy(self) -> bool:
        return not self.skills()

    def brief(self, limit: int = 8) -> list[dict[str, Any]]:
        """The strongest signals, short, as they may reach a model (a run's or a coordinator's
        context): a summary quotes the process (a logger's name, an exception's site, a type
        name), so it is redacted, cut, and delimited as the process's text."""
        return list(
            outgoing(
                [
                    {
                        "skill": s.skill,
                        "anomaly_type": s.anomaly_type,
                        "severity": s.severity,
                        "confidence": s.confidence,
                        "summary": from_process(clip(s.summary, 300)),
                    }
                    for s in self.signals[:limit]
                ]
            )
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "seconds": round(self.seconds, 4),
            "signals": [s.to_dict() for s in self.signals],
            "skipped": dict(self.skipped),
            "history_recording": self.history_recording,
        }

    def frame(self) -> pd.DataFrame:
        """The signals as a pandas DataFrame, ranked."""
        import pandas as pd

        columns = ["skill", "anomaly_type", "severity", "confidence", "summary", "source"]
        return pd.DataFrame([s.to_dict() for s in self.signals], columns=[*columns, "history_ids"])

    def text(self) -> str:
        lines = [
            f"triage: {len(self.signals)} signal(s) from {len(self.snapshots)} skill(s) in "
            f"{self.seconds * 1000:.0f} ms"
            + ("" if self.history_recording else " (no flight-recorder history)")
        ]
        for s in self.signals:
            lines.append(
                f"  [{s.severity} {s.confidence:.2f}] {s.skill}/{s.anomaly_type}: {s.summary}"
            )
        if not self.signals:
            lines.append("  nothing abnormal in the snapshots, rules and history")
        for sid, why in self.skipped.items():
            lines.append(f"  (skipped {sid}: {why})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            f"<tr><td>{html.escape(s.severity)}</td><td>{s.confidence:.2f}</td>"
            f"<td>{html.escape(s.skill)}</td><td>{html.escape(s.anomaly_type)}</td>"
            f"<td>{html.escape(s.summary)}</td></tr>"
            for s in self.signals
        )
        head = html.escape(self.text().splitlines()[0])
        if not rows:
            return f"<p><b>{head}</b>: nothing abnormal</p>"
        return (
            f"<p><b>{head}</b></p><table><tr><th>severity</th><th>confidence</th>"
            f"<th>skill</th><th>anomaly</th><th>summary</th></tr>{rows}</table>"
        )


def triage(
    skills: Iterable[str | SkillLike] | None = None,
    *,
    window_s: float = 600.0,
    budget_s: float = 2.0,
) -> Triage:
    """Sweep the started skills (every known one, built-in or registered, when none is
    started), their cheap rule checks and the history; return the signals ranked by severity,
    then confidence."""
    started = time.perf_counter()
    now = time.time()
    result = Triage(at=now, seconds=0.0)
    deadline = started + max(budget_s, 0.01)
    for skill in _skills(skills):
        sid = str(getattr(skill, "id", skill))
        if time.perf_counter() > deadline:
            result.skipped[sid] = "time budget reached"
            continue
        try:
            snap = dict(skill.snapshot())
        except Exception as exc:
            result.skipped[sid] = f"snapshot raised {type(exc).__name__}: {exc}"
            continue
        result.snapshots[sid] = snap
        result.signals.extend(_sweep(skill, sid, snap, now, window_s))
    result.signals.extend(_history_signals(min(window_s, 120.0), now, result.signals))
    result.history_recording = error_rate(1.0, now).recording
    result.signals.sort(key=lambda s: -s.score)
    result.seconds = time.perf_counter() - started
    return result


def is_vague(reason: str) -> bool:
    """Whether a reason points at no domain: none of its words starts with a skill's keyword
    (`Skill.keywords`: "orders service degraded", "is anything wrong?"). Such a run starts
    from triage."""
    return not knowledge.gather().named(re.findall(r"[a-z]+", reason.lower()))


def _skills(wanted: Iterable[str | SkillLike] | None) -> list[SkillLike]:
    if wanted is None:
        # deferred: the operator package's root imports the investigation loop, which imports
        # this module (`started` itself imports nothing of lensbook's)
        from lensbook.operator import started

        wanted = started.skill_ids() or skill_ids()
    return [resolve_skill(s) for s in wanted]


def _sweep(
    skill: SkillLike, sid: str, snap: dict[str, Any], now: float, window_s: float
) -> list[Signal]:
    rules: Sequence[Rule] = list(getattr(skill, "rules", lambda: ())())
    if not rules:
        return []
    ev = _evidence(sid, snap, now, window_s)
    cheap = _cheap_probes(skill)
    for rule in rules:  # one rule at a time: the next one sees what this one's probes found
        for call in wanted_calls([rule], ev, cheap):
            _call(cheap[call.name], call, ev)
    signals: list[Signal] = []
    for rule in rules:
        try:
            findings = list(rule.judge(ev))
        except Exception:  # a rule that needs a probe triage did not call
            continue
        signals.extend(_signal(sid, f, ev) for f in findings)
    return signals


_cheap_cache: weakref.WeakKeyDictionary[Any, dict[str, ProbeTool]] = weakref.WeakKeyDictionary()


def _cheap_probes(skill: SkillLike) -> dict[str, ProbeTool]:
    """The probes a skill marked cheap, by tool name; built once per skill (building every
    probe's argument model costs milliseconds, more than the whole sweep may)."""
    try:
        return _cheap_cache[skill]
    except (KeyError, TypeError):
        pass
    found: dict[str, ProbeTool] = {}
    prefix = str(getattr(skill, "id", ""))
    for attr in dir(type(skill)):
        options = getattr(getattr(type(skill), attr, None), PROBE_ATTR, None)
        if options is not None and getattr(options, "cheap", False):
            tool = ProbeTool.from_function(getattr(skill, attr), prefix=prefix)
            found[tool.name] = tool
    with contextlib.suppress(TypeError):  # an object that takes no weak reference
        _cheap_cache[skill] = found
    return found


def _evidence(sid: str, snap: dict[str, Any], now: float, window_s: float) -> Evidence:
    """The snapshot now, after the oldest sampled values of this skill within the window."""
    from lensbook.sampling import store

    ev = Evidence(context={"reason": "", "triage": True})
    baseline: dict[str, Any] = {}
    at = now
    for key in snap:
        points = store.series(sid, key, now - window_s)
        if points:
            baseline[key] = points[0][1]
            at = min(at, points[0][0])
    if baseline and at < now - 0.5:
        ev.snapshots.append({**snap, **baseline})
        ev.snapshot_ids.append("metrics")
        ev.snapshot_times.append(at)
    ev.snapshots.append(snap)
    ev.snapshot_ids.append("triage")
    ev.snapshot_times.append(now)
    return ev


def _call(tool: ProbeTool, call: ProbeCall, ev: Evidence) -> None:
    try:
        value = tool.fn(**tool.validate(call.arguments))
        ev.results.setdefault(call.name, []).append((call.arguments, redact(jsonable(value))))
    except Exception as exc:
        ev.errors.setdefault(call.name, []).append(f"{type(exc).__name__}: {exc}")


def _signal(sid: str, finding: Finding, ev: Evidence) -> Signal:
    # a trend over sampled history or a probe's answer weighs more than one snapshot
    confidence = 0.4
    if len(ev.snapshots) >= 2:
        confidence += 0.2
    if ev.results:
        confidence += 0.2
    if finding.hypothesis:
        confidence += 0.1
    return Signal(
        skill=sid,
        anomaly_type=finding.anomaly_type,
        severity=finding.severity,
        confidence=round(min(confidence, 1.0), 2),
        summary=finding.observation,
        source="rule",
        hypothesis=finding.hypothesis,
    )


def _history_signals(window_s: float, now: float, found: Sequence[Signal]) -> list[Signal]:
    """Errors in the flight recorder's history, for the skills that investigate errors (logs
    and exceptions, as they declare)."""
    if any(s.anomaly_type == "error_storm" for s in found):
        return []  # the runtime rule already read the same history
    rate = error_rate(window_s, now)
    if rate.count < 5:
        return []
    severity: Severity = "warning" if rate.per_s >= 1.0 else "info"
    where = ", ".join(f"{w} x{n}" for w, n in rate.top) or "unknown"
    confidence = round(min(1.0, 0.5 + rate.count / 200), 2)
    return [
        Signal(
            skill=skill,
            anomaly_type="error_storm",
            severity=severity,
            confidence=confidence,
            summary=f"{rate.count} errors in {rate.window_s:.0f} s ({rate.per_s:.1f}/s); most from "
            f"{where}",
            source="history",
            history_ids=tuple(rate.ids),
        )
        for skill in knowledge.gather().investigators("error_storm")
    ]
