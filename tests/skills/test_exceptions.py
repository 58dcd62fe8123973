"""The exceptions skill: chained hooks on every route an exception takes, counts and rules."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import json
import logging
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lensbook import _loop
from lensbook.skills.base import render_output
from lensbook.skills.exceptions import ExceptionsSkill
from lensbook.skills.untrusted import undelimit
from tests._ipython import ipython_shell
from tests.skills._probes import evidence_around, rendered


@pytest.fixture
def skill() -> Iterator[ExceptionsSkill]:
    sk = ExceptionsSkill()
    yield sk
    sk.close()


def die(name: str, exc: BaseException) -> None:
    def body() -> None:
        raise exc

    worker = threading.Thread(target=body, name=name)
    worker.start()
    worker.join(5)


def test_hooks_installed_lazily_chained_and_removed(previous_threadhook: list[str]) -> None:
    hook, thook, handlers = sys.excepthook, threading.excepthook, list(logging.root.handlers)
    sk = ExceptionsSkill()
    assert (sys.excepthook, threading.excepthook) == (hook, thook)  # nothing at construction
    sk.snapshot()
    sk.snapshot()
    assert sys.excepthook is not hook and threading.excepthook is not thook
    assert logging.root.handlers == handlers  # logged tracebacks come through the tap
    die("worker-1", KeyError("sku-42"))
    assert previous_threadhook == ["KeyError in worker-1"]  # chained
    sk.close()
    assert (sys.excepthook, threading.excepthook) == (hook, thook)
    assert logging.root.handlers == handlers


def test_a_wrapped_hook_becomes_a_pass_through_on_close(previous_threadhook: list[str]) -> None:
    sk = ExceptionsSkill()
    sk.snapshot()
    ours = threading.excepthook

    def someone_elses(args: Any) -> None:
        ours(args)

    threading.excepthook = someone_elses
    sk.close()
    assert threading.excepthook is someone_elses  # not torn out from under its wrapper
    die("worker-2", ValueError("still reaches the hook before lensbook"))
    assert previous_threadhook == ["ValueError in worker-2"]


def test_thread_death_is_recorded_with_where_and_thread(
    skill: ExceptionsSkill, previous_threadhook: list[str]
) -> None:
    skill.snapshot()
    die("ingest-7", LookupError("no route for tenant 12"))
    die("stopper", SystemExit(0))  # a thread asking to exit is not an error
    snap = skill.snapshot()
    assert snap["thread_deaths"] == 1 and snap["uncaught_total"] == 1
    latest = rendered(skill.recent())["exceptions"][0]
    assert latest["type"] == "LookupError"
    assert latest["message"] == "no route for tenant 12"
    assert latest["thread"] == "ingest-7"
    assert latest["sources"] == ["thread"]
    assert latest["where"].endswith("in body")
    assert latest["line"] == "raise exc"


def test_sys_excepthook_is_seen_and_chained(skill: ExceptionsSkill) -> None:
    skill.snapshot()
    stderr = io.StringIO()
    try:
        raise RuntimeError("main thread gave up")
    except RuntimeError:
        with contextlib.redirect_stderr(stderr):
            sys.excepthook(*sys.exc_info())
    assert "main thread gave up" in stderr.getvalue()  # the previous hook still printed it
    assert skill.summary()["by_source"] == {"excepthook": 1}


def test_logged_tracebacks_each_count(skill: ExceptionsSkill) -> None:
    skill.snapshot()
    log = logging.getLogger("app.db")
    for i in range(3):  # three exception objects, likely at one reused address
        try:
            i / 0
        except ZeroDivisionError:
            log.exception("query %d failed", i)
    log.error("no traceback here")
    summary = skill.summary()
    assert summary["by_source"] == {"logging": 3}
    assert summary["by_type"] == [{"type": "ZeroDivisionError", "count": 3}]
    top = rendered(skill.top())["groups"][0]
    assert top["count"] == 3 and top["sources"] == {"logging": 3}


def test_asyncio_task_errors_on_the_lens_loop_count_once(skill: ExceptionsSkill) -> None:
    loop = _loop.get_loop()
    previous: list[str] = []
    loop.set_exception_handler(lambda lp, ctx: previous.append(ctx["message"]))
    skill.snapshot()

    async def settle_invoice() -> None:
        raise ConnectionResetError("ledger went away")

    async def forget_a_task() -> None:
        asyncio.get_running_loop().create_task(settle_invoice())
        await asyncio.sleep(0.05)

    _loop.run_sync(forget_a_task(), timeout=5)
    _loop.run_sync(asyncio.sleep(0), timeout=5)
    gc.collect()  # the task's exception is reported when the task is collected
    _loop.run_sync(asyncio.sleep(0.01), timeout=5)
    assert previous == ["Task exception was never retrieved"]
    seen = rendered(skill.recent())["exceptions"]
    assert len(seen) == 1
    assert seen[0]["type"] == "ConnectionResetError"
    assert seen[0]["sources"] == ["asyncio"]
    assert seen[0]["where"].endswith("in settle_invoice")
    assert seen[0]["thread"] == "lensbook-loop"
    skill.close()
    assert loop.get_exception_handler() is not None
    loop.get_exception_handler()(loop, {"message": "after close"})  # type: ignore[misc]
    assert previous[-1] == "after close"


def test_asyncio_default_handler_logging_is_not_counted_twice(skill: ExceptionsSkill) -> None:
    loop = _loop.get_loop()
    loop.set_exception_handler(None)  # asyncio's default handler logs to "asyncio"
    skill.snapshot()

    async def fail() -> None:
        raise OSError("disk full")

    async def spawn() -> None:
        asyncio.get_running_loop().create_task(fail())
        await asyncio.sleep(0.05)

    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(logging.NullHandler())  # keep the test output quiet
    try:
        _loop.run_sync(spawn(), timeout=5)
        gc.collect()
        _loop.run_sync(asyncio.sleep(0.01), timeout=5)
    finally:
        asyncio_logger.handlers.clear()
    seen = rendered(skill.recent())["exceptions"]
    assert [s["type"] for s in seen] == ["OSError"]
    assert seen[0]["sources"] == ["asyncio", "logging"]


def test_tracebacks_are_bounded(skill: ExceptionsSkill) -> None:
    skill.snapshot()

    def recurse(n: int) -> int:
        return recurse(n + 1)

    try:
        recurse(0)
    except RecursionError:
        logging.getLogger("deep").exception("too deep")
    out = rendered(skill.recent(frames=4))["exceptions"][0]
    assert len(out["traceback"]) == 4
    assert out["frames_omitted"] == 8
    assert len(render_output(skill.recent(limit=50, frames=12))) < 6000


def test_cell_errors_are_seen(tmp_path: Path) -> None:
    sk = ExceptionsSkill()
    with ipython_shell(tmp_path, fresh=False) as shell:
        try:
            sk.snapshot()
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                shell.run_cell("prices = {}\nprices['EUR']", store_history=True)
            seen = rendered(sk.recent())["exceptions"][0]
            assert seen["type"] == "KeyError" and seen["sources"] == ["cell"]
            assert seen["line"] == "prices['EUR']"
        finally:
            sk.close()


def test_rule_names_a_thread_that_died(
    skill: ExceptionsSkill, previous_threadhook: list[str]
) -> None:
    ev = evidence_around(skill, lambda: die("billing-sync", KeyError("invoice 991")))
    findings = [f for rule in skill.rules() for f in rule.judge(ev)]
    assert [f.anomaly_type for f in findings] == ["thread_died"]
    assert findings[0].severity == "warning"
    text = findings[0].observation
    assert "KeyError" in text and "'billing-sync'" in text and "in body" in text


def test_rule_names_an_exception_burst(skill: ExceptionsSkill) -> None:
    log = logging.getLogger("importer")

    def burst() -> None:
        for row in range(40):
            try:
                int(f"row-{row}")
            except ValueError:
                log.exception("bad row")
        time.sleep(1.1)  # rates need a window of a second or more

    ev = evidence_around(skill, burst)
    findings = [f for rule in skill.rules() for f in rule.judge(ev)]
    assert [f.anomaly_type for f in findings] == ["exception_burst"]
    assert "ValueError" in findings[0].observation
    assert "test_exceptions.py" in findings[0].observation


def test_quiet_process_raises_no_finding(skill: ExceptionsSkill) -> None:
    ev = evidence_around(skill, lambda: time.sleep(0.1))
    assert ev.results == {}
    assert [f for rule in skill.rules() for f in rule.judge(ev)] == []


def test_default_outputs_fit_their_caps_with_long_exceptions(skill: ExceptionsSkill) -> None:
    skill.snapshot()
    log = logging.getLogger("long")

    def level(n: int, where: str) -> None:
        if n == 0:
            raise RuntimeError(where * 200)
        level(n - 1, where)

    for i in range(60):
        try:
            level(15, f"spot-{i}-")
        except RuntimeError:
            log.exception("failed")
    tools = {t.name: t for t in skill.probes()}
    for name in ("exceptions_recent", "exceptions_top", "exceptions_summary"):
        text = render_output(tools[name].fn(), tools[name].max_chars)
        assert "...[truncated " not in text, name  # not cut short
        assert undelimit(json.loads(text)), name  # whole JSON, and not empty
