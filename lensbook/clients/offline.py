"""The offline investigator: a deterministic rules engine behind the LLMClient Protocol.

It needs no network and no key, and drives the very same operator loop and tools a model would:
it takes a snapshot, asks the skill's rules which probes to call, takes a second snapshot after a
gap where a rule needs a trend, then turns the rules' findings into notifications citing the
snapshots, sets the state and calls done. It is stateless: every turn is rebuilt from the
conversation. It says what it is in every answer; it never pretends to be a model.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from lensbook.clients.base import Message, ModelRequest, ModelTurn, ToolCall, answered_calls
from lensbook.skills.rules import Evidence, Finding, Rule, as_dict, wanted_calls
from lensbook.skills.untrusted import undelimit
from lensbook.types import HealthState

__all__ = ["NAME", "OfflineInvestigator", "gather_evidence"]

NAME = "offline investigator"

_STATE_ORDER: dict[str, int] = {"healthy": 0, "observing": 1, "warning": 2, "critical": 3}
_ids = itertools.count(1)


class OfflineInvestigator:
    """Investigates with each skill's rules instead of a model (see `lensbook.skills.rules`)."""

    provider = "offline"
    model = "rules"
    in_process = True

    def __init__(self, *, max_rounds: int = 10, name: str = NAME) -> None:
        self.name = name
        self.max_rounds = max_rounds

    async def complete(self, request: ModelRequest) -> ModelTurn:
        if request.purpose == "investigate":
            return _turn(self._next_step(request))
        ev, sent = gather_evidence(request.messages, request.context)
        if request.purpose == "message":
            return _turn([_answer(request, ev, sent)])
        return _turn([_summary(ev, sent)])

    def _next_step(self, request: ModelRequest) -> list[ToolCall | str]:
        ev, sent = gather_evidence(request.messages, request.context)
        tools = {t.name for t in request.tools}
        if not ev.snapshots:
            return [_call("take_snapshot")]
        rules = _rules_of(request.skill)
        rounds = sum(1 for m in request.messages if m.role == "assistant")
        kinds = sorted({k for r in rules for k in getattr(r, "history_kinds", ())})
        if kinds and "get_history" in tools and not _has_called(request.messages, "get_history"):
            return [_call("get_history", kinds=kinds, limit=200)]
        if rounds < self.max_rounds:
            wanted = wanted_calls(rules, ev, tools)
            if wanted:
                return [_call(c.name, **c.arguments) for c in wanted]
            needed = max((r.snapshots_needed for r in rules), default=1)
            if needed > len(ev.snapshots):
                gap = max(
                    (r.gap for r in rules if r.snapshots_needed > len(ev.snapshots)), default=2.0
                )
                return [_call("wait", seconds=gap), _call("take_snapshot")]
        if sent or _has_called(request.messages, "set_state"):
            return [_call("done", summary=_summary(ev, sent))]
        return self._conclude(rules, ev, str(getattr(request.skill, "id", "")))

    def _conclude(
        self, rules: Sequence[Rule], ev: Evidence, skill_id: str = ""
    ) -> list[ToolCall | str]:
        findings: list[Finding] = []
        for rule in rules:
            try:
                findings.extend(rule.judge(ev))
            except Exception as exc:  # a broken rule must not end the run
                findings.append(
                    Finding(
                        anomaly_type="rule_error",
                        severity="info",
                        context=f"rule {getattr(rule, 'name', rule)!r} of the offline investigator",
                        observation=f"the rule raised {type(exc).__name__}: {exc}",
                    )
                )
        findings.extend(_triage_pointers(ev, findings, skill_id))
        cite = list(ev.snapshot_ids)
        known = {e.get("id") for e in ev.history}
        calls: list[ToolCall | str] = []
        for f in findings:
            args: dict[str, Any] = {
                "anomaly_type": f.anomaly_type,
                "severity": f.severity,
                "context": f.context,
                "observation": f.observation,
                "snapshot_ids": cite + [h for h in f.history_ids if h in known],
            }
            if f.hypothesis:
                args["hypothesis"] = f.hypothesis
            calls.append(_call("send_notification", **args))
        state: HealthState = "healthy"
        for f in findings:
            if _STATE_ORDER[f.implied_state] > _STATE_ORDER[state]:
                state = f.implied_state
        reason = (
            "; ".join(f"{f.severity}: {f.anomaly_type}" for f in findings)
            if findings
            else f"no rule of the skill fired on {len(ev.snapshots)} snapshot(s)"
        )
        calls.append(_call("set_state", state=state, reason=f"{NAME}: {reason}"))
        calls.append(_call("done", summary=_conclusion_text(findings, state, ev)))
        return calls


def _triage_pointers(ev: Evidence, findings: Sequence[Finding], skill_id: str) -> list[Finding]:
    """What triage saw before a vague run in other skills' domains: an info note naming the
    operator to run, so "is anything wrong?" never gets a bare "healthy" over a known fault."""
    signals = ev.context.get("triage")
    if not isinstance(signals, list) or ev.context.get("requested_by"):
        return []  # a coordinator invokes the other operators itself
    seen = {f.anomaly_type for f in findings}
    pointers = []
    for s in signals:
        if not isinstance(s, dict) or s.get("severity") not in ("warning", "critical"):
            continue
        if s.get("skill") == skill_id or s.get("anomaly_type") in seen:
            continue
        seen.add(str(s.get("anomaly_type")))
        pointers.append(
            Finding(
                anomaly_type="triage_pointer",
                severity="info",
                context=f"triage before this run (confidence {s.get('confidence')})",
                observation=f"{s.get('skill')}/{s.get('anomaly_type')} ({s.get('severity')}): "
                f"{undelimit(s.get('summary'))}",
                hypothesis=f"outside this skill's domain: run the {s.get('skill')} operator "
                f"(lensbook.run({s.get('skill')!r}) or %lens run {s.get('skill')}) to name the "
                "cause",
            )
        )
    return pointers[:3]


def _rules_of(skill: Any) -> list[Rule]:
    rules = getattr(skill, "rules", None)
    if rules is None:
        return []
    return list(rules())


def gather_evidence(
    messages: Sequence[Message], context: dict[str, Any]
) -> tuple[Evidence, list[dict[str, Any]]]:
    """The evidence and the notifications sent, rebuilt from a conversation."""
    ev = Evidence(context=dict(context))
    sent: list[dict[str, Any]] = []
    for call, result in answered_calls(messages):
        args = call.arguments if isinstance(call.arguments, dict) else {}
        if result.is_error:
            ev.errors.setdefault(call.name, []).append(result.content)
            continue
        value = _parse(result.content)
        if call.name == "take_snapshot" and isinstance(value, dict) and "id" in value:
            ev.snapshot_ids.append(str(value["id"]))
            ev.snapshots.append(dict(value.get("data") or {}))
            ev.snapshot_times.append(_epoch(value.get("captured_at")))
        elif call.name == "send_notification":
            sent.append(args)
        elif call.name == "get_history" and isinstance(value, dict):
            _add_history(ev, value)
        else:
            ev.results.setdefault(call.name, []).append((args, value))
    return ev, sent


def _add_history(ev: Evidence, value: dict[str, Any]) -> None:
    ev.history_read = True
    ev.history_recording = ev.history_recording or bool(value.get("recording"))
    seen = {e.get("id") for e in ev.history}
    for event in value.get("events") or []:
        if isinstance(event, dict) and event.get("id") not in seen:
            ev.history.append(event)
            seen.add(event.get("id"))
    ev.history.sort(key=lambda e: float(e.get("time") or 0.0))


def _parse(content: str) -> Any:
    try:
        return undelimit(json.loads(content))
    except ValueError:
        return content


def _epoch(stamp: Any) -> float:
    try:
        return datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return 0.0


def _has_called(messages: Sequence[Message], name: str) -> bool:
    return any(c.name == name for m in messages for c in m.tool_calls)


def _call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(id=f"offline_{next(_ids)}", name=name, arguments=arguments)


def _turn(items: list[ToolCall | str]) -> ModelTurn:
    return ModelTurn.of(items, model=NAME)


def _conclusion_text(findings: Sequence[Finding], state: str, ev: Evidence) -> str:
    if not findings:
        return (
            f"{NAME}: nothing abnormal in {len(ev.snapshots)} snapshot(s) and "
            f"{sum(len(v) for v in ev.results.values())} probe result(s); state {state}."
        )
    items = "; ".join(f"[{f.severity}] {f.anomaly_type}: {f.observation}" for f in findings)
    return f"{NAME}: state {state}. {items}"


def _summary(ev: Evidence, sent: Sequence[dict[str, Any]]) -> str:
    notes = "; ".join(
        f"[{n.get('severity')}] {n.get('anomaly_type')}: {n.get('observation')}" for n in sent
    )
    probes = ", ".join(sorted(ev.results)) or "none"
    return (
        f"{NAME} (rules, no model): {len(ev.snapshots)} snapshot(s) "
        f"({', '.join(ev.snapshot_ids) or 'none'}), probes called: {probes}. "
        f"Notifications: {notes or 'none'}."
    )


def _answer(request: ModelRequest, ev: Evidence, sent: Sequence[dict[str, Any]]) -> str:
    question = request.messages[-1].text.splitlines()[-1] if request.messages else ""
    state = request.context.get("state", "unknown")
    latest = ev.snapshots[-1] if ev.snapshots else {}
    if not latest and request.messages:
        # no run yet: the operator put a fresh snapshot in the question
        text = request.messages[-1].text
        if "Current snapshot: " in text:
            latest = as_dict(_parse(text.split("Current snapshot: ", 1)[1]))
    figures = ", ".join(f"{k}={v}" for k, v in list(latest.items())[:12]) or "none"
    notes = "\n".join(
        f"- [{n.get('severity')}] {n.get('anomaly_type')}: {n.get('observation')}"
        + (f" (hypothesis: {n['hypothesis']})" if n.get("hypothesis") else "")
        for n in sent
    )
    return (
        f"This is the {NAME} (a rules engine, not a language model); it answers from its "
        f"findings, whatever the question ({question.strip()!r}).\n"
        f"Health state: {state}.\n"
        f"Notifications:\n{notes or '- none'}\n"
        f"Latest snapshot: {figures}"
    )
