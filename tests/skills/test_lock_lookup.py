"""Locks found whatever the expression that takes them, and stalls reported without a cycle."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest

from lensbook.scenarios.ring_deadlock import start_ring
from lensbook.skills.base import render_output
from lensbook.skills.rules import Evidence
from lensbook.skills.threads import Deadlock, LockContention, ThreadsSkill
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


def _when_blocked(
    skill: ThreadsSkill, blocked: int, cleanup: Callable[[], None], **arguments: Any
) -> dict[str, Any]:
    """The probe's answer once `blocked` threads are blocked; `cleanup` runs whatever happens."""
    try:
        _until(lambda: _deadlocks(skill)["blocked_threads"] >= blocked, f"{blocked} blocked")
        return _deadlocks(skill, **arguments)
    finally:
        cleanup()


class Registry:
    """Locks handed out by a method call: the expression that takes one is a call."""

    def __init__(self, make: Callable[[], Any] = threading.Lock) -> None:
        self._locks = {"a": make(), "b": make()}

    def lock_for(self, key: str) -> Any:
        return self._locks[key]


class Account:
    def __init__(self) -> None:
        self.lock = threading.Lock()


def take(account: Account) -> None:
    account.lock.acquire()  # acquired here, released (never) elsewhere


def take_and_return(lock: Any) -> None:
    lock.acquire()  # returns still holding it: no live frame shows the lock taken


def _ring_station(locks: list[Any], i: int, ready: threading.Barrier, breaking: Any) -> None:
    take_and_return(locks[i])
    ready.wait()
    try:
        locks[(i + 1) % len(locks)].acquire()
        locks[(i + 1) % len(locks)].release()
        locks[i].release()
    except RuntimeError:  # its own lock was released by the test, to break the ring
        if not breaking.is_set():
            raise


def _start_ring(locks: list[Any], unblock: Callable[[], object]) -> Callable[[], None]:
    """Threads ``ring-0`` .. ``ring-N`` each take ``locks[i]`` in a function that returns, then
    wait for ``locks[i + 1]``: a cycle. The cleanup runs `unblock`, which frees ``locks[0]``."""
    ready = threading.Barrier(len(locks))
    breaking = threading.Event()
    threads = [
        threading.Thread(
            target=_ring_station, args=(locks, i, ready, breaking), name=f"ring-{i}", daemon=True
        )
        for i in range(len(locks))
    ]
    for t in threads:
        t.start()

    def cleanup() -> None:
        breaking.set()
        ready.abort()
        unblock()
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads)

    return cleanup


class WatchedRLock(threading._CRLock):  # type: ignore[misc,name-defined]
    """A C RLock subclass whose repr is the program's code: the skill must never call it."""

    reprs: ClassVar[list[str]] = []

    def __repr__(self) -> str:
        WatchedRLock.reprs.append("ran")
        return "<locked WatchedRLock object owner=1 count=1 at 0x1>"


RLOCKS = {
    "C RLock": threading.RLock,
    "pure-Python RLock": threading._RLock,
    "C RLock subclass with its own __repr__": WatchedRLock,
}


@pytest.fixture
def skill() -> Iterator[ThreadsSkill]:
    yield ThreadsSkill()


def test_a_ring_of_subscripted_locks_is_a_deadlock(skill: ThreadsSkill) -> None:
    result = _when_blocked(skill, 3, start_ring("ring"))
    (cycle,) = result["deadlocks"]
    assert sorted(cycle["threads"]) == ["ring-0", "ring-1", "ring-2"]
    assert sorted(cycle["locks"]) == [f"locks[(i + 1) % len(locks)] (locks[{n}])" for n in range(3)]
    for step in cycle["cycle"]:
        assert step["holds"][0]["lock"].startswith("locks[i] (locks[")
        assert "in pack_order" in step["at"]


def test_a_lock_under_a_dicts_key_is_named_without_the_keys_value(skill: ThreadsSkill) -> None:
    token = "Zq8VxW2mK9pL4nR7tY1u"  # a key is the program's data: a user, a token
    per_key = {token: threading.Lock()}
    per_key[token].acquire()

    def worker(api_key: str) -> None:
        with per_key[api_key]:
            pass

    threading.Thread(target=worker, args=(token,), daemon=True, name="keyed").start()
    tool = {t.name: t for t in skill.probes()}["threads_deadlocks"]
    try:
        _until(lambda: _deadlocks(skill)["blocked_threads"] >= 1, "the keyed thread blocked")
        text = render_output(tool.fn(**tool.validate({})), tool.max_chars)
    finally:
        per_key[token].release()
    assert token not in text
    (blocked,) = [b for b in json.loads(unmarked(text))["blocked"] if b["thread"] == "keyed"]
    assert blocked["waits_for"] == "per_key[api_key]"
    assert '"waits_for": "\u27e6per_key[api_key]\u27e7"' in text or "⟦per_key[api_key]⟧" in text


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


@pytest.mark.parametrize("kind", list(RLOCKS))
def test_a_ring_of_rlocks_taken_in_returned_functions_names_every_holder(
    skill: ThreadsSkill, kind: str
) -> None:
    locks = [RLOCKS[kind]() for _ in range(3)]
    WatchedRLock.reprs.clear()
    # (the test frees locks[0] with the RLock's _release_save, which Condition uses: it does
    # not check the owner)
    result = _when_blocked(skill, 3, _start_ring(locks, lambda: locks[0]._release_save()))
    (cycle,) = result["deadlocks"]
    assert sorted(cycle["threads"]) == ["ring-0", "ring-1", "ring-2"]
    for step in cycle["cycle"]:
        i = int(step["thread"][-1])
        # the owner the RLock recorded, though the function that took it has returned
        assert step["held_by"] == [f"ring-{(i + 1) % 3}"]
        assert step["waits_for"] == f"locks[(i + 1) % len(locks)] (locks[{(i + 1) % 3}])"
        assert step["lock_type"] == "RLock" and step["lock_locked"] is True
        assert "in _ring_station" in step["at"]
        (held,) = step["holds"]
        assert held["lock"] == f"locks[(i + 1) % len(locks)] (locks[{i}])"
        assert held["taken"].startswith("owner recorded by the RLock")
    ev = Evidence(context={}, results={"threads_deadlocks": [({}, result)]})
    (finding,) = Deadlock().judge(ev)
    for i in range(3):
        assert f"thread 'ring-{i}' holds locks[(i + 1) % len(locks)] (locks[{i}])" in (
            finding.observation
        )
        assert f"(held by 'ring-{(i + 1) % 3}')" in finding.observation
    assert WatchedRLock.reprs == []  # (the subclass's __repr__ never ran)


def test_a_ring_of_plain_locks_taken_in_returned_functions_is_reported_as_a_stall(
    skill: ThreadsSkill,
) -> None:
    # a plain Lock records no owner: no cycle can be proven, the long waits are reported
    locks = [threading.Lock() for _ in range(3)]
    result = _when_blocked(skill, 3, _start_ring(locks, locks[0].release), recheck_after_s=3.0)
    assert result["deadlocks"] == []
    blocked = sorted(result["blocked"], key=lambda b: str(b["thread"]))
    assert [b["thread"] for b in blocked] == ["ring-0", "ring-1", "ring-2"]
    for i, entry in enumerate(blocked):
        assert entry["waits_for"] == f"locks[(i + 1) % len(locks)] (locks[{(i + 1) % 3}])"
        assert entry["held_by"] is None and entry["lock_type"] == "Lock"
        assert "a function that has returned" in entry["holder_note"]
        assert entry["waited_s"] >= 2.5
    ev = Evidence(context={}, results={"threads_deadlocks": [({}, result)]})
    (finding,) = LockContention().judge(ev)
    assert finding.anomaly_type == "lock_wait_stalled" and finding.severity == "warning"
    assert "Threads 'ring-" in finding.observation
    for i in range(3):
        assert f"'ring-{i}' has waited" in finding.observation
    assert "in _ring_station `locks[(i + 1) % len(locks)].acquire()`" in finding.observation


def test_rlocks_returned_by_a_call_and_taken_in_returned_functions_are_a_deadlock(
    skill: ThreadsSkill,
) -> None:
    # each thread can reach both locks and both are locked: the one it waits for is the one
    # whose recorded owner is not itself (an RLock it owns would not block it)
    registry = Registry(threading.RLock)
    ready = threading.Barrier(2)
    breaking = threading.Event()

    def transfer(mine: str, theirs: str) -> None:
        take_and_return(registry.lock_for(mine))
        ready.wait()
        try:
            with registry.lock_for(theirs):
                pass
            registry.lock_for(mine).release()
        except RuntimeError:  # its own lock was released by the test, to break the cycle
            if not breaking.is_set():
                raise

    threads = [
        threading.Thread(target=transfer, args=("a", "b"), name="tx-ab", daemon=True),
        threading.Thread(target=transfer, args=("b", "a"), name="tx-ba", daemon=True),
    ]
    for t in threads:
        t.start()

    def break_cycle() -> None:
        breaking.set()
        registry.lock_for("a")._release_save()  # (as Condition does: no owner check)
        for t in threads:
            t.join(10)
        assert not any(t.is_alive() for t in threads)

    result = _when_blocked(skill, 2, break_cycle)
    (cycle,) = result["deadlocks"]
    steps = {step["thread"]: step for step in cycle["cycle"]}
    assert steps["tx-ab"]["waits_for"] == "registry.lock_for(theirs)"
    assert steps["tx-ab"]["held_by"] == ["tx-ba"] and steps["tx-ba"]["held_by"] == ["tx-ab"]
    assert all(step["lock_type"] == "RLock" for step in steps.values())


def test_an_rlock_subclass_named_like_an_owner_cannot_name_another_holder(
    skill: ThreadsSkill,
) -> None:
    class Spoof(threading._CRLock):  # type: ignore[misc,name-defined]
        pass

    # the class name appears in the C repr before the real fields: it must not be read as them
    Spoof.__name__ = "Spoof owner=1 count=1 at 0x1>"
    lock = Spoof()
    release = threading.Event()

    def hold() -> None:
        take_and_return(lock)
        release.wait(30)
        lock.release()

    def want() -> None:
        with lock:
            pass

    holder = threading.Thread(target=hold, name="holder", daemon=True)
    holder.start()
    _until(lambda: repr(lock).startswith("<locked"), "the holder to take the lock")
    waiter = threading.Thread(target=want, name="waiter", daemon=True)
    waiter.start()

    def stop() -> None:
        release.set()
        holder.join(10)
        waiter.join(10)

    result = _when_blocked(skill, 1, stop)
    (entry,) = result["blocked"]
    assert entry["thread"] == "waiter" and entry["waits_for"] == "lock"
    assert entry["held_by"] == ["holder"]
