"""Locks found whatever the expression that takes them, and stalls reported without a cycle."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lensbook.scenarios.ring_deadlock import start_ring
from lensbook.skills.base import render_output
from lensbook.skills.rules import Evidence
from lensbook.skills.threads import LockContention, ThreadsSkill
from tests.skills._probes import unmarked


def _deadlocks(skill: ThreadsSkill, **arguments: Any) -> dict[str, Any]:
    """The probe's answer as the loop sees it, with the process-text markers taken off."""
    tool = {t.name: t for t in skill.probes()}["threads_deadlocks"]
    text = render_output(tool.fn(**tool.validate(arguments)), tool.max_chars)
    value: dict[str, Any] = json.loads(unmarked(text))
    return value


def _until(check: Callable[[], bool], what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Registry:
    """Locks handed out by a method call: the expression that takes one is a call."""

    def __init__(self) -> None:
        self._locks = {"a": threading.Lock(), "b": threading.Lock()}

    def lock_for(self, key: str) -> threading.Lock:
        return self._locks[key]


class Account:
    def __init__(self) -> None:
        self.lock = threading.Lock()


def take(account: Account) -> None:
    account.lock.acquire()  # acquired here, released (never) elsewhere


@pytest.fixture
def skill() -> Iterator[ThreadsSkill]:
    yield ThreadsSkill()


def test_a_ring_of_subscripted_locks_is_a_deadlock(skill: ThreadsSkill) -> None:
    cleanup = start_ring("ring")
    try:
        _until(lambda: _deadlocks(skill)["blocked_threads"] >= 3, "three blocked threads")
        result = _deadlocks(skill)
    finally:
        cleanup()
    (cycle,) = result["deadlocks"]
    assert sorted(cycle["threads"]) == ["ring-0", "ring-1", "ring-2"]
    assert sorted(cycle["locks"]) == [f"locks[(i + 1) % len(locks)] (locks[{n}])" for n in range(3)]
    for step in cycle["cycle"]:
        assert step["holds"][0]["lock"].startswith("locks[i] (locks[")
        assert "in pack_order" in step["at"]


def test_a_lock_returned_by_a_call_is_found_by_reference(skill: ThreadsSkill) -> None:
    registry = Registry()
    release = threading.Event()

    def hold() -> None:
        with registry.lock_for("a"):
            release.wait(30)

    def want() -> None:
        with registry.lock_for("a"):
            pass

    holder = threading.Thread(target=hold, name="holder")
    holder.start()
    _until(lambda: registry.lock_for("a").locked(), "the holder to take the lock")
    waiter = threading.Thread(target=want, name="waiter")
    waiter.start()
    try:
        _until(lambda: _deadlocks(skill)["blocked_threads"] >= 1, "a blocked thread")
        result = _deadlocks(skill)
    finally:
        release.set()
        holder.join(10)
        waiter.join(10)
    (entry,) = result["blocked"]
    assert entry["thread"] == "waiter"
    assert entry["waits_for"] == "registry.lock_for('a')"
    assert entry["held_by"] == ["holder"]
    assert entry["lock_type"] == "Lock"


def test_a_lock_taken_in_one_function_and_never_released_is_reported_as_a_stall(
    skill: ThreadsSkill,
) -> None:
    account = Account()
    take(account)

    def pay() -> None:
        with account.lock:
            pass

    payer = threading.Thread(target=pay, name="payer", daemon=True)
    payer.start()
    try:
        _until(lambda: _deadlocks(skill)["blocked_threads"] >= 1, "a blocked thread")
        result = _deadlocks(skill, recheck_after_s=3.0)
    finally:
        account.lock.release()
        payer.join(10)
    (entry,) = result["blocked"]
    assert entry["waits_for"] == "account.lock" and entry["held_by"] is None
    assert entry["waited_s"] >= 2.5
    ev = Evidence(context={}, results={"threads_deadlocks": [({}, result)]})
    (finding,) = LockContention().judge(ev)
    assert finding.anomaly_type == "lock_wait_stalled" and finding.severity == "warning"
    assert "'payer' has waited" in finding.observation
    assert "test_lock_lookup.py:" in finding.observation
    assert "<locals>.pay `with account.lock:`" in finding.observation


def test_a_lookup_runs_no_code_of_an_object_that_computes_its_class() -> None:
    import sys

    from lensbook.skills.threads import resolve_expr

    ran: list[str] = []

    class Lazy:
        def __init__(self) -> None:
            self.lock = threading.Lock()

        @property  # type: ignore[misc]
        def __class__(self) -> type:  # (as a lazy proxy's: its factory would run)
            ran.append("__class__")
            raise RuntimeError("set-up ran")

    holder = Lazy()
    import ast

    value = resolve_expr(ast.parse("holder.lock", mode="eval").body, sys._getframe())
    assert value is holder.lock and ran == []
