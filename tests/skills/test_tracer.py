"""The tracer skill: real functions traced while real threads and loops call them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

import lensbook
from lensbook.clients.offline import OfflineInvestigator
from lensbook.skills.base import render_output
from lensbook.skills.rules import Evidence
from lensbook.skills.tracer import (
    TraceNamedFunction,
    TracerSkill,
    _installed,
    _Session,
    active_traces,
    resolve_target,
    target_from,
)
from lensbook.skills.untrusted import undelimit

SOURCE = """
import asyncio
import time


def checksum(n):
    if n < 0:
        raise ValueError("negative")
    return sum(range(n))


def nightly_report():
    return checksum(2000)


def health_check():
    return checksum(10)


def slow_lookup():
    time.sleep(0.6)


class Pool:
    def get(self, n):
        return checksum(n)

    @staticmethod
    def size():
        return 4

    @classmethod
    def create(cls):
        return cls()


async def fetch(delay):
    await asyncio.sleep(delay)
    return delay


def numbers():
    yield 1
"""


@pytest.fixture
def target() -> Iterator[types.ModuleType]:
    """A real module, importable by name, whose functions the tests trace."""
    module = types.ModuleType("lb_tracer_target")
    module.__file__ = "<lb_tracer_target>"
    exec(compile(SOURCE, "<lb_tracer_target>", "exec"), module.__dict__)
    sys.modules[module.__name__] = module
    yield module
    del sys.modules[module.__name__]


class Caller:
    """A thread calling the target's functions by attribute until stopped."""

    def __init__(self, module: types.ModuleType, calls: list[str]) -> None:
        self.module = module
        self.calls = calls
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="caller", daemon=True)

    def run(self) -> None:
        m = self.module
        pool = m.Pool()
        while not self.stop.is_set():
            for name in self.calls:
                if name == "nightly_report":
                    m.nightly_report()
                elif name == "health_check":
                    m.health_check()
                elif name == "bad":
                    with contextlib.suppress(ValueError):
                        m.checksum(-1)
                elif name == "pool":
                    pool.get(5)
                    m.Pool.size()
                    m.Pool.create()
                elif name == "slow":
                    m.slow_lookup()
            time.sleep(0.002)

    def __enter__(self) -> Caller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_trace_counts_times_and_names_callers(target: types.ModuleType) -> None:
    original = target.checksum
    skill = TracerSkill()
    with Caller(target, ["nightly_report", "health_check", "bad"]):
        out = skill.trace("lb_tracer_target.checksum", seconds=0.5)
    assert target.checksum is original  # restored
    assert out["restored"] is True and active_traces() == []
    assert out["kind"] == "function" and out["defined_at"] == "<lb_tracer_target>:6"
    assert out["stopped_by"] == "time"
    assert out["calls"] >= 3
    assert out["max_ms"] >= out["mean_ms"] >= out["min_ms"] > 0
    callers = {c["at"].split(" in ")[1] for c in out["callers"]}
    assert {"nightly_report", "health_check"} <= callers
    assert out["threads"] == {"caller": out["calls"]}
    assert out["exceptions"]["ValueError"] >= 1
    assert skill.snapshot()["traces_run"] == 1
    assert len(render_output(out)) < 5000


def test_methods_static_and_class_methods_are_restored(target: types.ModuleType) -> None:
    pool_dict = dict(vars(target.Pool))
    skill = TracerSkill()
    with Caller(target, ["pool"]):
        for name, kind in (("get", "method"), ("size", "staticmethod"), ("create", "classmethod")):
            out = skill.trace(f"lb_tracer_target.Pool.{name}", seconds=0.2)
            assert out["kind"] == kind and out["calls"] >= 1, out
    for name in ("get", "size", "create"):
        assert vars(target.Pool)[name] is pool_dict[name]


def test_coroutine_function_is_timed_to_completion(target: types.ModuleType) -> None:
    loop = asyncio.new_event_loop()
    stop = threading.Event()

    async def keep_fetching() -> None:
        while not stop.is_set():
            await target.fetch(0.01)

    thread = threading.Thread(target=loop.run_until_complete, args=(keep_fetching(),))
    thread.start()
    try:
        out = TracerSkill().trace("lb_tracer_target.fetch", seconds=0.3)
    finally:
        stop.set()
        thread.join(10)
        loop.close()
    assert out["kind"] == "coroutine function"
    assert out["calls"] >= 1
    assert out["min_ms"] > 0
    assert any("keep_fetching" in c["at"] for c in out["callers"])


def test_generator_functions_are_counted_not_timed(target: types.ModuleType) -> None:
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            list(target.numbers())
            time.sleep(0.005)

    thread = threading.Thread(target=consume)
    thread.start()
    try:
        out = TracerSkill().trace("lb_tracer_target.numbers", seconds=0.2)
    finally:
        stop.set()
        thread.join(10)
    assert out["kind"] == "generator function" and out["calls"] >= 1
    assert "not measured" in out["durations"]


def test_max_calls_ends_the_window_early(target: types.ModuleType) -> None:
    with Caller(target, ["nightly_report"]):
        out = TracerSkill().trace("lb_tracer_target.checksum", seconds=10, max_calls=5)
    assert out["stopped_by"] == "max_calls"
    assert out["calls"] == 5
    assert out["window_s"] < 10


def test_bad_targets_are_refused_and_nothing_is_left(target: types.ModuleType) -> None:
    skill = TracerSkill()
    for name, message in (
        ("checksum", "not a dotted name"),
        ("not_loaded_anywhere.f", "no loaded module"),
        ("lb_tracer_target.missing", "no attribute"),
        ("lb_tracer_target.Pool.get.inner", "not a class"),
        ("lb_tracer_target.asyncio", "not a function"),
    ):
        with pytest.raises(ValueError, match=message):
            skill.trace(name, seconds=0.1)
    assert active_traces() == []


def test_the_original_is_restored_when_the_window_fails(target: types.ModuleType) -> None:
    original = target.checksum
    session = _Session(resolve_target("lb_tracer_target.checksum"), 100, time.monotonic() + 5)
    with pytest.raises(KeyboardInterrupt), _installed(session):
        assert target.checksum is not original
        assert active_traces() == ["lb_tracer_target.checksum"]
        target.checksum(3)
        raise KeyboardInterrupt
    assert target.checksum is original
    assert active_traces() == []
    assert session.finished == 1


def test_one_window_per_function(target: types.ModuleType) -> None:
    session = _Session(resolve_target("lb_tracer_target.checksum"), 100, time.monotonic() + 5)
    with _installed(session), pytest.raises(ValueError, match="already being traced"):
        TracerSkill().trace("lb_tracer_target.checksum", seconds=0.1)
    assert active_traces() == []


def test_a_replacement_made_during_the_window_is_kept(target: types.ModuleType) -> None:
    def replacement(n: int) -> int:
        return n

    session = _Session(resolve_target("lb_tracer_target.checksum"), 100, time.monotonic() + 5)
    with _installed(session):
        target.checksum = replacement
    assert target.checksum is replacement


def test_a_wrapper_kept_past_the_window_passes_calls_through(target: types.ModuleType) -> None:
    session = _Session(resolve_target("lb_tracer_target.checksum"), 100, time.monotonic() + 5)
    with _installed(session):
        kept = target.checksum
    assert kept(10) == 45
    assert session.finished == 0  # recorded nothing after the window


def test_find_locates_functions_by_part_of_their_name(target: types.ModuleType) -> None:
    out = TracerSkill().find("checksum")
    assert out["matches"][0]["target"] == "lb_tracer_target.checksum"
    names = [m["target"] for m in TracerSkill().find("Pool.get")["matches"]]
    assert "lb_tracer_target.Pool.get" in names


def test_target_from_context_or_reason() -> None:
    assert target_from(Evidence(context={"target": "a.b"})) == "a.b"
    assert target_from(Evidence(context={"reason": "is `app.db.Pool.get` slow?"})) == (
        "app.db.Pool.get"
    )
    assert target_from(Evidence(context={"reason": "why is json.dumps slow"})) == "json.dumps"
    assert target_from(Evidence(context={"reason": "routine check"})) is None
    assert TraceNamedFunction().wants(Evidence(context={"reason": "routine check"})) == []


def evidence_with(out: Any, **context: Any) -> Evidence:
    ev = Evidence(context=context)
    ev.results["tracer_trace"] = [({}, undelimit(json.loads(render_output(out))))]
    return ev


def test_rule_reports_slow_calls(target: types.ModuleType) -> None:
    with Caller(target, ["slow"]):
        out = TracerSkill().trace("lb_tracer_target.slow_lookup", seconds=1.5)
    (finding,) = TraceNamedFunction().judge(
        evidence_with(out, target="lb_tracer_target.slow_lookup")
    )
    assert finding.anomaly_type == "slow_calls" and finding.severity == "warning"
    assert "lb_tracer_target.slow_lookup" in finding.observation


def test_rule_profile_and_no_calls_are_information(target: types.ModuleType) -> None:
    with Caller(target, ["health_check"]):
        busy = TracerSkill().trace("lb_tracer_target.checksum", seconds=0.3)
    idle = TracerSkill().trace("lb_tracer_target.slow_lookup", seconds=0.1)
    rule = TraceNamedFunction()
    (profile,) = rule.judge(evidence_with(busy, target="lb_tracer_target.checksum"))
    assert profile.anomaly_type == "call_profile" and profile.severity == "info"
    assert "health_check" in profile.observation
    (none,) = rule.judge(evidence_with(idle, target="lb_tracer_target.slow_lookup"))
    assert none.anomaly_type == "no_calls" and none.severity == "info"


def test_a_window_is_kept_in_the_history_and_a_later_run_sets_its_own_beside_it(
    target: types.ModuleType,
) -> None:
    from lensbook import recorder

    recorder.clear()
    recorder.start("test", sample_interval=None)
    try:
        with Caller(target, ["health_check"]):
            first = TracerSkill().trace("lb_tracer_target.checksum", seconds=0.3)
        (kept,) = recorder.history_events(kinds=["trace"])
        with Caller(target, ["slow"]):
            slow = TracerSkill().trace("lb_tracer_target.slow_lookup", seconds=1.0)
    finally:
        recorder.stop("test")
    assert kept.source == "lb_tracer_target.checksum"
    d = kept.detail
    assert d["calls"] == first["calls"] > 0 and d["p95_ms"] == first["p95_ms"]
    assert d["defined_at"] == "<lb_tracer_target>:6" and d["exceptions"] == 0
    assert [c["at"] for c in d["callers"]] == [str(c["at"]) for c in first["callers"][:3]]
    assert recorder.describe(kept).startswith("traced lb_tracer_target.checksum for ")
    ev = evidence_with(first, target="lb_tracer_target.checksum")
    ev.history = [e.to_dict() for e in recorder.history_events(kinds=["trace"])]
    (profile,) = TraceNamedFunction().judge(ev)
    assert profile.history_ids == (kept.id,)
    assert f"window saw {first['calls']} calls" in profile.observation
    assert "Earlier, at " in profile.observation
    # another target's window is not cited
    other = evidence_with(slow, target="lb_tracer_target.slow_lookup")
    other.history = [e.to_dict() for e in recorder.history_events(kinds=["trace"])][:1]
    (finding,) = TraceNamedFunction().judge(other)
    assert finding.history_ids == () and "Earlier" not in finding.observation
    # with the recorder off, a window writes nothing
    TracerSkill().trace("lb_tracer_target.checksum", seconds=0.1)
    assert len(recorder.history_events(kinds=["trace"])) == 2
    recorder.clear()


def test_run_through_the_operator(target: types.ModuleType) -> None:
    original = target.checksum
    lensbook.start(["tracer"], client=OfflineInvestigator())
    with Caller(target, ["nightly_report"]):
        notes = lensbook.run(
            "tracer", {"reason": "how often is it called?", "target": "lb_tracer_target.checksum"}
        )
    result = notes.result
    assert target.checksum is original
    assert result.state == "observing"
    (note,) = result.notifications
    assert note.anomaly_type == "call_profile" and "nightly_report" in note.observation
