"""Run a scenario in this process: induce the fault, investigate it, judge the diagnosis."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import lensbook
from lensbook import events
from lensbook.evidence import BASE_TOOLS
from lensbook.scenarios import Scenario, get_scenario
from lensbook.types import CompletionResult

__all__ = ["Outcome", "judge", "run_scenario"]


@dataclass
class Outcome:
    """What one investigation of a scenario took and found."""

    scenario: str
    skill: str
    diagnosed: bool
    false_alarm: bool
    state: str
    iterations: int
    tool_calls: int
    probe_calls: int
    tool_output_bytes: int
    seconds: float
    client: str
    missing: list[str] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    error: str | None = None
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    run_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(
    scenario: Scenario, result: CompletionResult | Sequence[CompletionResult]
) -> tuple[bool, bool, list[str]]:
    """(diagnosed, false_alarm, missing patterns) for a scenario's result (or the results of
    each of its skills' runs)."""
    results = [result] if isinstance(result, CompletionResult) else list(result)
    notes = [n for r in results for n in r.notifications]
    alarming = [n for n in notes if n.severity in ("warning", "critical")]
    if scenario.healthy:
        false_alarm = bool(alarming) or any(
            r.state not in ("healthy", "observing") for r in results
        )
        return not false_alarm, false_alarm, []
    text = "\n".join(
        f"{n.anomaly_type} {n.context} {n.observation} {n.hypothesis or ''}" for n in notes
    )
    missing = [p for p in scenario.expect if not re.search(p, text, re.IGNORECASE | re.DOTALL)]
    return bool(alarming) and not missing, False, missing


def run_scenario(
    name: str | Scenario,
    *,
    client: Any = None,
    max_iterations: int | None = None,
    on_event: Any = None,
) -> Outcome:
    """Induce the scenario's fault here, investigate it through `lensbook.run`, and judge it."""
    scenario = name if isinstance(name, Scenario) else get_scenario(name)
    counts = {"tool_calls": 0, "probe_calls": 0, "bytes": 0}

    def count(event: events.Event) -> None:
        if event.kind == "tool_result":
            counts["tool_calls"] += 1
            counts["bytes"] += int(event.data.get("bytes", 0))
            if event.data.get("name") not in BASE_TOOLS:
                counts["probe_calls"] += 1
        if on_event is not None:
            on_event(event)

    skills = list(scenario.skills or (scenario.skill,))
    cleanup = scenario.induce()
    token = events.subscribe(count)
    started = time.perf_counter()
    results: list[CompletionResult] = []
    errors: list[str] = []
    try:
        time.sleep(scenario.settle)
        lensbook.start(skills, client=client)
        for skill in skills:  # one after another: runs side by side would disturb each other
            try:
                notes = lensbook.run(
                    skill,
                    reason=scenario.reason,
                    max_iterations=max_iterations or scenario.max_iterations,
                )
                results.append(notes.result)
            except lensbook.RunFailed as exc:
                if exc.result is None:
                    raise
                results.append(exc.result)
                errors.append(f"{skill}: {exc}" if len(skills) > 1 else str(exc))
    finally:
        events.unsubscribe(token)
        if cleanup is not None:
            cleanup()
    seconds = time.perf_counter() - started - scenario.settle
    diagnosed, false_alarm, missing = judge(scenario, results)
    order = ("healthy", "observing", "warning", "critical")
    return Outcome(
        scenario=scenario.name,
        skill="+".join(skills),
        diagnosed=diagnosed and not errors,
        false_alarm=false_alarm,
        state=max((r.state for r in results), key=lambda s: order.index(s) if s in order else 0),
        iterations=sum(r.iterations for r in results),
        tool_calls=counts["tool_calls"],
        probe_calls=counts["probe_calls"],
        tool_output_bytes=counts["bytes"],
        seconds=round(seconds, 3),
        client=results[0].client,
        missing=missing,
        notifications=[n.to_dict() for r in results for n in r.notifications],
        input_tokens=sum(r.usage.input_tokens for r in results),
        output_tokens=sum(r.usage.output_tokens for r in results),
        error="; ".join(errors) or None,
        cache_read_input_tokens=sum(r.usage.cache_read_input_tokens for r in results),
        cache_creation_input_tokens=sum(r.usage.cache_creation_input_tokens for r in results),
        run_id=",".join(r.run_id for r in results),
    )
