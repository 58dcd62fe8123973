"""The offline coordinator: correlation rules behind the LLMClient Protocol, no model needed.

It drives the same coordinator tools a model would, and like the offline investigator it is
stateless: every turn is rebuilt from the conversation. It invokes the operators whose skills
the question (or the watcher's anomalies) names, waits for them, reads their notifications,
invokes the neighbours of a known causal chain once to check for consequences, then links
notifications:

- causal: families of findings that follow a known chain, e.g. memory growth -> GC pressure ->
  event-loop lag (high confidence for three links, medium for two);
- symptomatic: one family (or one named culprit) reported by several operators (medium; high
  when they name the same culprit);
- temporal: findings of several operators within a time window and nothing more (low
  confidence, the hypothesis not grounded).

What it does not link it acknowledges. It says what it is in every answer.

The families, the skills that investigate them, the chains, the question's keywords and the
culprit patterns are not tables here: every skill declares its own (`lensbook.skills.Skill`,
`lensbook.skills.rules.Rule.families`) and `lensbook.skills.knowledge.gather` merges them, so a
registered user skill is dispatched and linked like a built-in one.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from lensbook.clients.base import Message, ModelRequest, ModelTurn, ToolCall, answered_calls
from lensbook.skills.knowledge import Knowledge, gather
from lensbook.skills.redact import clip
from lensbook.skills.rules import Chain
from lensbook.skills.untrusted import undelimit

__all__ = [
    "NAME",
    "Draft",
    "OfflineCoordinator",
    "classify",
    "correlate",
    "follow_ups",
]

NAME = "offline coordinator"

#: notifications further apart than this (seconds) are not correlated in time
WINDOW = 300.0
#: the most operators a first invocation starts
MAX_FIRST_SKILLS = 4

_SEVERE = ("warning", "critical")
_LEVELS = ("low", "medium", "high")
_ids = itertools.count(1)


def classify(
    reason: str,
    available: Sequence[str],
    anomalies: Iterable[Mapping[str, Any]] = (),
    triage: Iterable[Mapping[str, Any]] = (),
) -> list[str]:
    """The skills to invoke first, among those available: those a watcher's anomalies name,
    then those triage's evidence points at (by severity and confidence; the question's
    keywords only break ties), and only without evidence those the question's words name."""
    anomalies = list(anomalies)
    chosen: list[str] = []
    for anomaly in anomalies:
        skill = str(anomaly.get("skill", ""))
        if skill in available and skill not in chosen:
            chosen.append(skill)
    known = gather()
    named = known.named(re.findall(r"[a-z]+", reason.lower()))
    evidence: dict[str, float] = {}
    for signal in triage:
        if str(signal.get("severity")) not in _SEVERE:
            continue
        score = _SEVERITY_SCORE.get(str(signal.get("severity")), 0) + float(
            signal.get("confidence") or 0.0
        )
        for skill in _skills_for(signal, known):
            evidence[skill] = max(evidence.get(skill, 0.0), score)
    for skill in sorted(evidence, key=lambda s: (-evidence[s], s not in named)):
        if skill in available and skill not in chosen:
            chosen.append(skill)
    if not evidence:
        for skill in named:
            if skill in available and skill not in chosen:
                chosen.append(skill)
    if not chosen:
        fallback = [s for s in ("runtime", "memory", "logs") if s in available]
        chosen = fallback[:1] or list(available)[:1]
    return chosen[: max(MAX_FIRST_SKILLS, len(anomalies))]


_SEVERITY_SCORE = {"critical": 3, "warning": 2, "info": 1}


def _skills_for(signal: Mapping[str, Any], known: Knowledge) -> list[str]:
    """The operators that investigate a triage signal: its family's skills (runtime's memory
    growth is the memory skill's to explain), else the skill that raised it."""
    return list(known.investigators(str(signal.get("anomaly_type")))) or [str(signal.get("skill"))]


def follow_ups(
    notes: Iterable[Mapping[str, Any]], available: Sequence[str], invoked: Iterable[str]
) -> list[str]:
    """Skills next to a found family on a known chain, not invoked yet: they check the chain."""
    seen = set(invoked)
    known = gather()
    found = {
        known.family_of(str(n.get("anomaly_type")))
        for n in notes
        if str(n.get("severity")) in _SEVERE
    }
    wanted: list[str] = []
    for chain in known.chains:
        for i, link in enumerate(chain.links):
            if link not in found:
                continue
            for near in chain.links[max(0, i - 1) : i + 2]:
                for skill in known.family_skills.get(near, ())[:1]:
                    if skill in available and skill not in seen and skill not in wanted:
                        wanted.append(skill)
    return wanted


@dataclass
class Draft:
    """An insight the rules would produce."""

    notification_ids: list[str]
    correlation_type: str
    summary: str
    matched_observations: list[str]
    hypothesis_grounded: bool
    confidence: str
    root_cause_hypothesis: str | None = None
    skills: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        group: list[dict[str, Any]],
        correlation_type: str,
        summary: str,
        *,
        grounded: bool,
        confidence: str,
        root: str | None = None,
    ) -> Draft:
        """The insight linking `group`: its ids, observations and skills come from the group."""
        return cls(
            notification_ids=[n["id"] for n in group],
            correlation_type=correlation_type,
            summary=summary,
            matched_observations=[_observed(n) for n in group],
            hypothesis_grounded=grounded,
            confidence=confidence,
            root_cause_hypothesis=root,
            skills=_skills(group),
        )

    def arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "notification_ids": self.notification_ids,
            "correlation_type": self.correlation_type,
            "summary": self.summary,
            "matched_observations": self.matched_observations,
            "hypothesis_grounded": self.hypothesis_grounded,
            "confidence": self.confidence,
        }
        if self.root_cause_hypothesis:
            args["root_cause_hypothesis"] = self.root_cause_hypothesis
        return args


def correlate(
    notes: Sequence[Mapping[str, Any]], window: float = WINDOW
) -> tuple[list[Draft], list[str]]:
    """Insights linking notifications of different operators, and the ids left unlinked."""
    known = gather()
    pool = [dict(n) for n in notes if n.get("id")]
    for n in pool:  # read once per note (copies: the caller's notes stay as they were)
        n["_family"] = known.family_of(str(n.get("anomaly_type")))
        n["_culprits"] = _culprits(n, known.culprit_patterns)
    used: set[str] = set()
    drafts: list[Draft] = []
    for chain in sorted(known.chains, key=lambda c: -len(c.links)):
        draft = _causal(chain, [n for n in pool if n["id"] not in used], window)
        if draft is not None:
            drafts.append(draft)
            used.update(draft.notification_ids)
    for family in known.families:
        group = [n for n in pool if n["id"] not in used and n["_family"] == family]
        if len({n["skill"] for n in group}) >= 2 and _span(group) <= window:
            drafts.append(_symptomatic(group, f"{family} seen by several operators"))
            used.update(n["id"] for n in group)
    for group in _by_shared_culprit([n for n in pool if n["id"] not in used]):
        if _span(group) <= window:
            drafts.append(_symptomatic(group, "several operators name the same culprit"))
            used.update(n["id"] for n in group)
    for group in _clusters([n for n in pool if n["id"] not in used and _severe(n)], window):
        if len({n["skill"] for n in group}) >= 2:
            drafts.append(_temporal(group))
            used.update(n["id"] for n in group)
    return drafts, [n["id"] for n in pool if n["id"] not in used]


def _causal(chain: Chain, pool: list[dict[str, Any]], window: float) -> Draft | None:
    present = [[n for n in pool if n["_family"] == link] for link in chain.links]
    best: tuple[int, int] | None = None
    start = None
    for i, group in enumerate([*present, []]):
        if group:
            start = i if start is None else start
            continue
        if start is not None and i - start >= 2 and (best is None or i - start > best[1] - best[0]):
            best = (start, i)
        start = None
    if best is None:
        return None
    links = chain.links[best[0] : best[1]]
    group = [n for g in present[best[0] : best[1]] for n in g]
    if len({n["skill"] for n in group}) < 2 or _span(group) > window:
        return None
    if not any(_severe(n) for n in group):
        return None
    level = 2 if len(links) >= 3 else 1
    if any(not any(_severe(n) for n in g) for g in present[best[0] : best[1]]):
        level -= 1
    head = present[best[0]]
    cause = next((n for n in head if n.get("hypothesis")), head[0])
    culprit = cause["_culprits"]
    root = f"{cause.get('hypothesis') or cause.get('observation')} Mechanism: {chain.mechanism}."
    return Draft.of(
        group,
        "causal",
        f"{' -> '.join(links)}: the {links[0]} found by {cause['skill']} explains "
        f"{' and '.join(links[1:])} ({chain.mechanism}). A known pattern matched by rules, "
        "not a proof.",
        grounded=bool(culprit),
        confidence=_LEVELS[max(0, level)],
        root=root,
    )


def _symptomatic(group: list[dict[str, Any]], what: str) -> Draft:
    shared = set.intersection(*(n["_culprits"] for n in group)) if group else set()
    named = f"; they name {', '.join(sorted(shared)[:3])}" if shared else ""
    cause = next((n for n in group if n.get("hypothesis")), None)
    return Draft.of(
        group,
        "symptomatic",
        f"One problem, {what}: {', '.join(_kinds(group))}{named}.",
        grounded=bool(shared),
        confidence="high" if shared else "medium",
        root=str(cause["hypothesis"]) if cause else None,
    )


def _temporal(group: list[dict[str, Any]]) -> Draft:
    return Draft.of(
        group,
        "temporal",
        f"{len(group)} findings of {', '.join(_skills(group))} within "
        f"{_span(group):.0f} s of each other ({', '.join(_kinds(group))}); no known "
        "mechanism links them: they may share a trigger (load, a deploy) or be independent.",
        grounded=False,
        confidence="low",
    )


#: culprits every notification may name; skills add their own (`Skill.culprit_patterns`)
_CULPRIT_PATTERNS = (
    re.compile(r"[\w./-]+\.py:\d+"),
    re.compile(r"'([^'\s][^']{2,80})'"),
    re.compile(r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\b"),
)


def _culprits(note: Mapping[str, Any], extra: Sequence[re.Pattern[str]] = ()) -> set[str]:
    """Specific names a notification gives as its culprit: file:line, quoted names, dotted names
    and what the skills' own `culprit_patterns` match.

    Only the lead of the observation (up to its first "; ") counts, with the hypothesis and
    the context: the rest lists runners-up ("next: other.py:33 +23 KB"), which name no culprit.
    """
    lead = str(note.get("observation") or "").split("; ", 1)[0]
    text = " ".join([lead, str(note.get("hypothesis") or ""), str(note.get("context") or "")])
    found: set[str] = set()
    for pattern in (*_CULPRIT_PATTERNS, *extra):
        for match in pattern.finditer(text):
            token = match.group(1) if pattern.groups else match.group(0)
            if len(token) >= 5 and not token.replace(".", "").isdigit():
                found.add(token)
    return found


def _by_shared_culprit(pool: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    groups: list[list[dict[str, Any]]] = []
    taken: set[str] = set()
    for a, b in itertools.combinations(pool, 2):
        if a["skill"] == b["skill"] or a["id"] in taken or b["id"] in taken:
            continue
        if a["_culprits"] & b["_culprits"]:
            groups.append([a, b])
            taken.update((a["id"], b["id"]))
    return groups


def _clusters(pool: list[dict[str, Any]], window: float) -> list[list[dict[str, Any]]]:
    ordered = sorted(pool, key=_when)
    clusters: list[list[dict[str, Any]]] = []
    for note in ordered:
        if clusters and _when(note) - _when(clusters[-1][0]) <= window:
            clusters[-1].append(note)
        else:
            clusters.append([note])
    return clusters


def _when(note: Mapping[str, Any]) -> float:
    try:
        return datetime.fromisoformat(str(note.get("detected_at"))).timestamp()
    except ValueError:
        return 0.0


def _span(group: Sequence[Mapping[str, Any]]) -> float:
    times = [_when(n) for n in group]
    return max(times) - min(times) if times else 0.0


def _severe(note: Mapping[str, Any]) -> bool:
    return str(note.get("severity")) in _SEVERE


def _skills(group: Iterable[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(n.get("skill")) for n in group))


def _kinds(group: Iterable[Mapping[str, Any]]) -> list[str]:
    return [f"{n.get('skill')}/{n.get('anomaly_type')}" for n in group]


def _observed(note: Mapping[str, Any]) -> str:
    text = clip(str(note.get("observation") or ""), 300)
    return f"{note.get('skill')}/{note.get('anomaly_type')} ({note.get('severity')}): {text}"


# -- reading the conversation --------------------------------------------------------------


@dataclass
class Picture:
    """What the coordinator has seen so far, rebuilt from its conversation."""

    invocations: list[list[str]] = field(default_factory=list)
    operators: list[dict[str, Any]] | None = None
    status_at: int = -1
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes_at: int = -1
    concluded: bool = False
    done_refused: bool = False
    rounds: int = 0

    @property
    def invoked(self) -> set[str]:
        return {s for started in self.invocations for s in started}

    @property
    def running(self) -> bool:
        return self.operators is None or any(o.get("running") for o in self.operators)


def read(messages: Sequence[Message]) -> Picture:
    """The picture a coordinator conversation gives."""
    pic = Picture(rounds=sum(1 for m in messages if m.role == "assistant"))
    for index, (found, result) in enumerate(answered_calls(messages), 1):
        name = found.name
        if name == "done":
            pic.done_refused = result.is_error
            pic.concluded = pic.concluded or not result.is_error
        if result.is_error:
            continue
        value = _parse(result.content)
        if not isinstance(value, dict):
            continue
        if name == "invoke_operators":
            pic.invocations.append([str(s) for s in value.get("started") or []])
        if name in ("invoke_operators", "wait", "get_operator_statuses"):
            ops = value.get("operators")
            if isinstance(ops, list):
                pic.operators = [o for o in ops if isinstance(o, dict)]
                pic.status_at = index
        elif name == "get_notifications":
            for note in value.get("notifications") or []:
                if isinstance(note, dict) and note.get("id"):
                    pic.notes[str(note["id"])] = note
            pic.notes_at = index
        elif name in ("produce_insight", "update_notification_statuses"):
            pic.concluded = True
    return pic


def _parse(content: str) -> Any:
    try:
        return undelimit(json.loads(content))
    except ValueError:
        return None


class OfflineCoordinator:
    """Coordinates with correlation rules instead of a model (see the module's docstring)."""

    provider = "offline"
    model = "rules"
    in_process = True

    def __init__(self, *, max_rounds: int = 24, wait_seconds: float = 10.0, name: str = NAME):
        self.name = name
        self.max_rounds = max_rounds
        self.wait_seconds = wait_seconds

    async def complete(self, request: ModelRequest) -> ModelTurn:
        if request.purpose != "investigate":
            return _turn(
                [
                    f"This is the {NAME} (correlation rules, not a language model); it answers "
                    "only through the coordinator's tools."
                ]
            )
        stage = str(request.context.get("stage", "agent"))
        available = [str(s) for s in request.context.get("available_skills") or []]
        if stage == "classify":
            skills = classify(
                _reason(request.context),
                available,
                _anomalies(request.context),
                _triage(request.context),
            )
            return _turn(
                [_call("select_skills", skills=skills, reason=_why(skills, request.context))]
            )
        if stage == "synthesise":
            # the notifications are the result of the get_notifications call lensbook made
            return _turn(self._conclude(list(read(request.messages).notes.values())))
        return _turn(self._next_step(request, available))

    def _next_step(self, request: ModelRequest, available: list[str]) -> list[ToolCall | str]:
        pic = read(request.messages)
        reason = _reason(request.context)
        if pic.concluded or pic.rounds >= self.max_rounds:
            return [_call("done", summary=_summary_of(pic))]
        if not pic.invocations:
            skills = classify(
                reason, available, _anomalies(request.context), _triage(request.context)
            )
            return [
                _call("think", thought=f"{NAME}: {_why(skills, request.context)}"),
                _call("invoke_operators", skills=skills, context=reason or "look for anomalies"),
            ]
        if pic.done_refused or pic.running:
            return [_call("wait", seconds=self.wait_seconds)]
        if pic.notes_at < pic.status_at:
            return [_call("get_notifications", status="all")]
        if len(pic.invocations) < 2:
            more = follow_ups(pic.notes.values(), available, pic.invoked)
            if more:
                return [
                    _call(
                        "think",
                        thought=f"{NAME}: the findings sit on a known causal chain; checking "
                        f"its neighbours {', '.join(more)} for causes or consequences.",
                    ),
                    _call(
                        "invoke_operators",
                        skills=more,
                        context=f"check for consequences or causes of: {reason}"
                        if reason
                        else "check for consequences of the other findings",
                    ),
                ]
        unread = [n for n in pic.notes.values() if n.get("status") == "unread"]
        return self._conclude(unread)

    def _conclude(self, notes: list[dict[str, Any]]) -> list[ToolCall | str]:
        drafts, rest = correlate(notes)
        calls: list[ToolCall | str] = [_call("produce_insight", **d.arguments()) for d in drafts]
        if rest:
            calls.append(
                _call(
                    "update_notification_statuses",
                    ids=rest,
                    status="acknowledged",
                    reason=f"{NAME}: no correlation with another operator's findings",
                )
            )
        calls.append(_call("done", summary=_conclusion(drafts, notes)))
        return calls


def _reason(context: Mapping[str, Any]) -> str:
    return str(context.get("reason") or "")


def _anomalies(context: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = context.get("anomalies")
    return [a for a in found if isinstance(a, Mapping)] if isinstance(found, list) else []


def _triage(context: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    found = context.get("triage")
    return [s for s in found if isinstance(s, Mapping)] if isinstance(found, list) else []


def _why(skills: Sequence[str], context: Mapping[str, Any] | None = None) -> str:
    severe = [s for s in _triage(context or {}) if str(s.get("severity")) in _SEVERE]
    if severe:
        seen = "; ".join(
            f"{s.get('skill')}/{s.get('anomaly_type')} ({s.get('severity')}, confidence "
            f"{s.get('confidence')})"
            for s in severe[:4]
        )
        return f"triage saw {seen}, so the evidence points at {', '.join(skills)}"
    return f"the question points at {', '.join(skills)}"


def _conclusion(drafts: Sequence[Draft], notes: Sequence[Mapping[str, Any]]) -> str:
    if not notes:
        return f"{NAME}: the operators sent no notification; nothing to correlate."
    if not drafts:
        return (
            f"{NAME}: {len(notes)} notification(s) ({', '.join(_kinds(notes))}); none links "
            "to another operator's findings."
        )
    parts = [f"[{d.confidence} {d.correlation_type}] {d.summary}" for d in drafts]
    return f"{NAME}: {len(drafts)} insight(s) from {len(notes)} notification(s). " + " ".join(parts)


def _summary_of(pic: Picture) -> str:
    return f"{NAME}: {len(pic.notes)} notification(s) read; see the insights produced."


def _call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=f"offline_coordinator_{next(_ids)}", name=name, arguments=arguments)


def _turn(items: list[ToolCall | str]) -> ModelTurn:
    return ModelTurn.of(items, model=NAME)
