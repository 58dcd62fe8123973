"""Calling a skill's probes in the tests as the operator and the offline investigator do: from
a thread of their own, with the answer rendered to the model's JSON text and parsed back; and
the evidence the investigator gathers for the skill's rules."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable
from typing import Any

from lensbook.skills.base import Skill, render_output
from lensbook.skills.rules import Evidence
from lensbook.skills.untrusted import undelimit


def probe_caller(thread_name_prefix: str) -> Callable[..., Any]:
    """A function that calls ``fn(*args, **kwargs)`` on a thread named after
    `thread_name_prefix` (off the main thread, as the operator does) and returns its parsed
    answer, delimiters taken off."""

    def off_main(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=thread_name_prefix
        ) as pool:
            answer = pool.submit(fn, *args, **kwargs).result(30)
        return undelimit(json.loads(render_output(answer, 20000)))

    return off_main


def unmarked(text: str) -> str:
    """JSON text without the markers around the process's own text (thread names...)."""
    return (
        text.replace("\\u27e6", "")
        .replace("\\u27e7", "")
        .replace("\u27e6", "")
        .replace("\u27e7", "")
    )


def rendered(value: Any) -> Any:
    """A probe's answer as the model reads it (rendered, cap of 100,000), parsed back."""
    return undelimit(json.loads(render_output(value, 100_000)))


def evidence_around(skill: Skill, during: Callable[[], object]) -> Evidence:
    """Evidence as the offline investigator builds it: a snapshot, `during()`, a snapshot,
    then every probe the skill's rules want."""
    ev = Evidence(context={"reason": "errors?"})
    ev.snapshots.append(rendered(skill.snapshot()))
    ev.snapshot_times.append(time.time())
    during()
    ev.snapshots.append(rendered(skill.snapshot()))
    ev.snapshot_times.append(time.time())
    probes = {p.name: p for p in skill.probes()}
    for rule in skill.rules():
        for call in rule.wants(ev):
            if not ev.called(call):
                value = rendered(probes[call.name].fn(**call.arguments))
                ev.results.setdefault(call.name, []).append((call.arguments, value))
    return ev
