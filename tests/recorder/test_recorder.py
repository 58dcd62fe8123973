"""The flight recorder: the history contract, each observer with real threads, loops and loggers,
hooks put back exactly, caps under a flood."""

from __future__ import annotations

import _thread
import asyncio
import contextlib
import dataclasses
import gc
import io
import json
import logging
import sys
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import lensbook
from lensbook import recorder
from lensbook.recorder import HistoryEvent, history_events, is_recording
from lensbook.recorder.frames import exception_detail
from lensbook.recorder.ring import HistoryRing
from lensbook.recorder.threads import ThreadObserver
from lensbook.skills import _observers
from lensbook.skills.aio import register_loop, unregister_loop
from tests._storms import log_exceptions


@pytest.fixture
def recording() -> Iterator[None]:
    recorder.clear()
    lensbook.start(["exceptions"], sample_interval=None)
    yield
    lensbook.stop()
    recorder.clear()


def wait_for(find: Callable[[], Any], deadline: float = 20.0) -> Any:
    """Poll `find` until it returns something truthy (generous deadline for busy machines)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        found = find()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"nothing found within {deadline} s")


def die(name: str) -> None:
    def consume() -> None:
        raise KeyError("order-17")

    worker = threading.Thread(target=consume, name=name)
    worker.start()
    worker.join(10)


def hooks() -> tuple[Any, ...]:
    return (
        sys.excepthook,
        threading.excepthook,
        _thread.start_new_thread,
        threading.Thread.start,
        threading.Thread._bootstrap_inner,  # type: ignore[attr-defined]
        logging.Logger.callHandlers,
        tuple(logging.root.handlers),
    )


def test_contract_shape(previous_threadhook: list[str], recording: None) -> None:
    t0 = time.time()
    die("worker-a")
    logging.getLogger("shop.api").warning("slow answer for user=%s", "ann")
    events = history_events()
    assert is_recording()
    assert events == sorted(events, key=lambda e: e.time)
    ids = [e.id for e in events]
    assert len(set(ids)) == len(ids)
    for e in events:
        assert isinstance(e, HistoryEvent)
        assert e.id.startswith("h-") and len(e.id) == 14 and int(e.id[2:], 16) >= 0
        assert recorder.is_history_id(e.id)
        assert e.time >= t0 - 1 and isinstance(e.kind, str) and isinstance(e.source, str)
        json.dumps(e.detail)  # JSON-safe
    with pytest.raises(dataclasses.FrozenInstanceError):
        events[0].kind = "x"  # type: ignore[misc]
    kinds = {e.kind for e in events}
    assert {"exception", "thread_started", "thread_died", "thread_ended", "log"} <= kinds
    only = history_events(kinds=["log"])
    assert [e.kind for e in only] == ["log"] and only[0].source == "shop.api"
    assert history_events(kinds="log") == only  # a lone kind is not read as its letters
    assert history_events(limit=2) == history_events()[-2:]
    assert history_events(since=time.time() + 60) == []
    frame = lensbook.history()
    assert list(frame.columns) == ["id", "time", "kind", "source", "summary", "detail"]
    assert set(frame["kind"]) >= {"thread_died", "log"}
    assert str(frame["time"].dtype).startswith("datetime64")


def test_thread_death_before_any_run(previous_threadhook: list[str], recording: None) -> None:
    die("consumer-1")
    died = history_events(kinds=["thread_died"])
    assert len(died) == 1
    d = died[0].detail
    assert died[0].source == "consumer-1" and d["thread"] == "consumer-1"
    assert d["type"] == "KeyError" and "order-17" in d["message"]
    assert d["where"].endswith(f"test_recorder.py:{die.__code__.co_firstlineno + 2}")
    assert d["function"] == "die.<locals>.consume"
    assert d["target"].endswith("die.<locals>.consume")
    uncaught = history_events(kinds=["exception"])
    assert uncaught[0].detail["uncaught"] is True and uncaught[0].detail["route"] == "thread"
    assert previous_threadhook == ["KeyError in consumer-1"]  # chained to what was there before


def test_executor_per_request_shows_as_growth_by_kind(recording: None) -> None:
    executors: list[ThreadPoolExecutor] = []

    def handle_request() -> None:
        pool = ThreadPoolExecutor(max_workers=1)  # the bug: one per request, never shut down
        pool.submit(time.sleep, 0)
        executors.append(pool)

    try:
        for _ in range(8):
            handle_request()
        growth = [
            e
            for e in history_events(kinds=["thread_growth"])
            if e.detail["target"] == "concurrent.futures.thread._worker"
        ]
        d = growth[-1].detail
        assert d["kind"] == "ThreadPoolExecutor-N_N"
        assert d["function"].endswith("handle_request") and "test_recorder.py:" in d["started_from"]
        assert sum(e.detail["started"] for e in growth) == 8 and d["alive"] == 8
    finally:
        for pool in executors:
            pool.shutdown()


def test_blocking_call_in_a_coroutine_is_named() -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, name="api-loop", daemon=True)
    runner.start()
    register_loop(loop)
    stop = threading.Event()

    def lookup_prices() -> None:
        time.sleep(0.4)  # a blocking call on the loop's thread

    async def handle_order() -> None:
        while not stop.is_set():
            lookup_prices()
            await asyncio.sleep(0.05)

    recorder.clear()
    lensbook.start(["exceptions"], sample_interval=None)
    try:
        asyncio.run_coroutine_threadsafe(handle_order(), loop)
        lag = wait_for(
            lambda: [e for e in history_events(kinds=["loop_lag"]) if e.detail["sampled"]]
        )[0]
        d = lag.detail
        assert d["thread"] == "api-loop" and d["lag_ms"] >= 100
        assert d["coroutine"].endswith("handle_order")
        assert d["function"].endswith("lookup_prices")
        assert d["blocking_call"] == "time.sleep(0.4)  # a blocking call on the loop's thread"
    finally:
        stop.set()
        lensbook.stop()
        unregister_loop(loop)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.close()


def test_error_burst_keeps_its_count_rate_and_time(recording: None) -> None:
    log = logging.getLogger("shop.payments")
    log.propagate, previous = True, log.propagate
    start = time.time()
    log_exceptions(log, 300, TimeoutError, "gateway timeout #{i}", "charge failed")
    end = time.time()
    # the periodic flush may cut the burst in two windows: together they hold all of it
    rates = [e.detail for e in history_events(kinds=["exception_rate"])]
    assert {d["type"] for d in rates} == {"TimeoutError"}
    assert sum(d["count"] for d in rates) == 300 and rates[-1]["total"] == 300
    assert all(d["uncaught"] is False and d["rate_per_s"] > 0 for d in rates)
    assert start <= rates[0]["first"] <= rates[-1]["last"] <= end
    # each occurrence was counted, the first few kept whole: a storm is not 300 events
    assert 1 <= len(history_events(kinds=["logged_exception"])) <= 5
    log_rates = [e for e in history_events(kinds=["log_rate"]) if e.source == "shop.payments"]
    assert sum(e.detail["count"] for e in log_rates) == 300
    assert {e.detail["level"] for e in log_rates} == {"ERROR"}
    log.propagate = previous


def test_history_is_redacted(recording: None) -> None:
    logging.getLogger("shop.db").error(
        "cannot connect to postgres://app:hunter2secret@db:5432/shop "
        "with api_key=sk-ant-abcdefghijklmnopqrstu"
    )
    text = json.dumps([e.to_dict() for e in history_events()])
    assert "hunter2secret" not in text and "sk-ant-abcdefghijklmnopqrstu" not in text
    assert "[REDACTED]" in text


def test_history_redacts_before_it_cuts(recording: None) -> None:
    aws = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    # the key straddles the cut of a message: cut first, what is left is no key any more
    logging.getLogger("shop.sync").error("%s aws_secret_access_key=%s", "y" * 270, aws)
    try:
        raise RuntimeError("x" * 270 + " aws_secret_access_key=" + aws)
    except RuntimeError as exc:
        detail = exception_detail(exc)
    text = json.dumps([e.to_dict() for e in history_events()]) + json.dumps(detail)
    assert aws[:12] not in text and "[REDACTED]" in text


def test_hooks_restored_exactly_after_stop_and_chained_meanwhile() -> None:
    seen: list[str] = []
    original = sys.excepthook

    def mine(tp: Any, value: BaseException, tb: Any) -> None:
        seen.append(tp.__name__)

    sys.excepthook = mine
    try:
        before = hooks()
        lensbook.start(["exceptions"], sample_interval=None)
        assert hooks() != before and is_recording()
        try:
            raise ValueError("boom")
        except ValueError as exc:
            sys.excepthook(type(exc), exc, exc.__traceback__)
        assert seen == ["ValueError"]
        assert history_events(kinds=["exception"])[-1].detail["route"] == "main"
        lensbook.stop()
        assert hooks() == before and not is_recording()
        assert history_events(kinds=["exception"])  # the history outlives the hooks
    finally:
        sys.excepthook = original


def test_owners_hooks_go_with_the_last_one() -> None:
    before = hooks()
    recorder.start("api", sample_interval=None)
    recorder.start("watch", sample_interval=None)
    recorder.stop("api")
    assert is_recording() and hooks() != before
    recorder.stop("watch")
    assert not is_recording() and hooks() == before


def test_watch_starts_the_recorder_and_stopping_it_puts_the_hooks_back() -> None:
    from lensbook.coordinator.watcher import stop_watching, watch

    before = hooks()
    watch(["runtime"], interval=3600, auto_trigger=False)
    try:
        assert is_recording() and recorder.recorder.owners == {"watch"}
    finally:
        stop_watching()
    assert not is_recording() and hooks() == before


def test_hooks_restored_exactly_after_unload_ext() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    before = hooks()
    callbacks = list(shell.events.callbacks["post_run_cell"])
    shell.run_line_magic("load_ext", "lensbook")
    try:
        assert is_recording()
        shell.run_cell("raise LookupError('cell failed')")
        cell = [e for e in history_events(kinds=["exception"]) if e.detail["route"] == "cell"]
        assert cell and cell[-1].detail["type"] == "LookupError"
    finally:
        shell.run_line_magic("unload_ext", "lensbook")
    assert hooks() == before and not is_recording()
    assert list(shell.events.callbacks["post_run_cell"]) == callbacks


def test_ring_caps_hold_under_a_flood(recording: None) -> None:
    flood = logging.getLogger("flood")
    flood.propagate = False
    sink = logging.NullHandler()  # (no handler at all: logging's last resort prints each)
    flood.addHandler(sink)
    flood.setLevel(logging.DEBUG)
    try:
        for i in range(100_000):
            flood.warning("record %d", i)
        for i in range(2_000):
            flood.warning(f"distinct message {i}")  # defeats the per-message gate
    finally:
        flood.removeHandler(sink)
    threads = [threading.Thread(target=int) for _ in range(3_000)]
    for t in threads:
        t.start()
        t.join()
    recorder.flush()
    counts = recorder.recorder.ring.counts()
    for kind, n in counts.items():
        assert n <= recorder.CAPS.get(kind, 100), kind
    assert counts["log"] == recorder.CAPS["log"]  # full, the oldest gone
    rate = [e for e in history_events(kinds=["log_rate"]) if e.source == "flood"]
    assert sum(e.detail["count"] for e in rate) == 102_000  # every record counted
    growth = [e for e in history_events(kinds=["thread_growth"]) if e.detail["target"] == "int"]
    assert sum(e.detail["started"] for e in growth) == 3_000 and growth[-1].detail["alive"] == 0


def test_lens_history_magic_shows_a_chart_and_a_text_timeline(
    previous_threadhook: list[str],
) -> None:
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "lensbook")
    try:
        recorder.clear()
        die("ingest-2")
        report = shell.run_line_magic("lens", "history")
        data, _ = shell.display_formatter.format(report)
        died = history_events(kinds=["thread_died"])[-1]
        assert died.id in data["text/plain"] and "thread_died" in data["text/plain"]
        assert "KeyError(\"'order-17'\") ended thread 'ingest-2'" in data["text/plain"]
        assert '<img alt="history timeline" src="data:image/png;base64,' in data["text/html"]
        text_only = shell.run_line_magic("lens", "history --kinds thread_died --text")
        data, _ = shell.display_formatter.format(text_only)
        assert "<img" not in data["text/html"] and died.id in data["text/html"]
        assert data["text/plain"].count(" thread_died ") == 1
        with pytest.raises(UsageError, match="unknown kind"):
            shell.run_line_magic("lens", "history --kinds threads")
    finally:
        shell.run_line_magic("unload_ext", "lensbook")


def test_asyncio_callback_and_task_failures_on_a_known_loop() -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, name="jobs-loop", daemon=True)
    runner.start()
    register_loop(loop)
    seen: list[str] = []

    def theirs(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append(str(context.get("message")))

    loop.set_exception_handler(theirs)
    recorder.clear()
    lensbook.start(["exceptions"], sample_interval=None)
    try:

        def refresh_cache() -> None:
            raise OSError("cache backend unreachable")

        def fail_and_look() -> list[HistoryEvent]:
            # the loop is hooked by the recorder's first tick: fail until it is seen
            loop.call_soon_threadsafe(refresh_cache)
            time.sleep(0.05)
            return [e for e in history_events(kinds=["exception"]) if e.source.startswith("loop@")]

        event = wait_for(fail_and_look)[0]
        assert event.detail["route"] == "callback" and event.detail["type"] == "OSError"
        assert event.detail["function"].endswith("refresh_cache")
        assert wait_for(lambda: seen)  # the handler that was there before still runs

        async def sync_orders() -> None:
            raise ValueError("bad order payload")

        # a task nobody awaits: its exception is reported when the task is collected
        loop.call_soon_threadsafe(lambda: loop.create_task(sync_orders()) and None)
        task_event = wait_for(
            lambda: [e for e in history_events(kinds=["exception"]) if e.detail["route"] == "task"]
        )[0]
        assert task_event.detail["type"] == "ValueError"
        assert task_event.detail["function"].endswith("sync_orders")
        assert "never retrieved" in task_event.detail["asyncio_message"]
    finally:
        lensbook.stop()
        assert loop.get_exception_handler() is theirs  # put back exactly
        unregister_loop(loop)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.close()


def test_an_asyncio_failure_logged_by_the_default_handler_counts_once() -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, name="feed-loop", daemon=True)
    runner.start()
    register_loop(loop)
    recorder.clear()
    lensbook.start(["exceptions"], sample_interval=None)
    try:

        def poll_feed() -> None:
            raise TimeoutError("feed timed out")

        def fail_and_look() -> list[HistoryEvent]:
            loop.call_soon_threadsafe(poll_feed)
            time.sleep(0.05)
            return [e for e in history_events(kinds=["exception"]) if e.source.startswith("loop@")]

        wait_for(fail_and_look)  # the loop is hooked (failures before that were only logged)
        recorder.clear()
        wait_for(fail_and_look)
        # asyncio's default handler logged each failure with its traceback: not a second count
        logged = history_events(kinds=["logged_exception"])
        assert all(e.detail["type"] != "TimeoutError" for e in logged), logged
        rates = [e.detail for e in history_events(kinds=["exception_rate"])]
        assert {r["type"] for r in rates} == {"TimeoutError"}
        assert all(set(r["routes"]) == {"callback"} for r in rates)
    finally:
        lensbook.stop()
        unregister_loop(loop)
        loop.call_soon_threadsafe(loop.stop)
        runner.join(10)
        loop.close()


def test_a_restart_over_a_hook_that_wrapped_ours_neither_loops_nor_counts_twice() -> None:
    original = sys.excepthook
    calls: list[str] = []
    try:
        recorder.start("api", sample_interval=None)
        ours = sys.excepthook

        def theirs(tp: Any, value: BaseException, tb: Any) -> None:  # wraps ours, stays
            calls.append("theirs")
            ours(tp, value, tb)

        sys.excepthook = theirs
        recorder.stop()  # ours cannot be taken out: it stays in their chain, quiet
        recorder.clear()
        recorder.start("api", sample_interval=None)  # new hook on top of theirs
        try:
            raise ValueError("once")
        except ValueError as exc:
            with contextlib.redirect_stderr(io.StringIO()):
                sys.excepthook(type(exc), exc, exc.__traceback__)
        assert calls == ["theirs"]
        assert [e.detail["message"] for e in history_events(kinds=["exception"])] == ["once"]
    finally:
        recorder.stop()
        sys.excepthook = original


def test_a_start_wrapper_left_in_a_chain_counts_no_start_twice() -> None:
    original = threading.Thread.start
    try:
        recorder.start("api", sample_interval=None)
        ours = threading.Thread.start

        def theirs(thread: threading.Thread) -> None:  # wraps ours, stays
            ours(thread)

        threading.Thread.start = theirs  # type: ignore[method-assign]
        recorder.stop()  # ours cannot be taken out: it stays in their chain, passing through
        recorder.clear()
        recorder.start("api", sample_interval=None)  # a new one on top of theirs
        for _ in range(12):  # past the gate's five: the shortcut's starts too
            t = threading.Thread(target=_one_kind_of_thread)
            t.start()
            t.join()
        observer = recorder.recorder.threads
        [kind] = [k for k in observer._kinds.values() if k.target.endswith("_one_kind_of_thread")]
        assert kind.started == 12
        assert list(observer._direct.values()) == [kind]
    finally:
        recorder.stop()
        threading.Thread.start = original  # type: ignore[method-assign]


def test_threads_started_by_the_thread_module_are_seen_with_their_deaths(
    recording: None,
) -> None:
    """`_thread.start_new_thread` never goes through `threading.Thread`: its starts, ends and
    deaths are still recorded, and what the user saw before is unchanged (the unraisable hook
    names the same function, no dummy Thread appears in threading.enumerate())."""
    done = threading.Event()
    unraisable: list[Any] = []
    original = sys.unraisablehook

    def poll_sensor() -> None:
        done.set()

    def unplugged() -> None:
        raise OSError("sensor unplugged")

    def start_sensors() -> None:
        _thread.start_new_thread(poll_sensor, ())
        _thread.start_new_thread(unplugged, ())

    def named(kind: str, target: str) -> list[HistoryEvent]:
        return [e for e in history_events(kinds=[kind]) if e.detail["target"].endswith(target)]

    sys.unraisablehook = unraisable.append
    dummies = {t.ident for t in threading.enumerate()}
    try:
        start_sensors()
        assert done.wait(10)
        died = wait_for(lambda: named("thread_died", "unplugged"))
        wait_for(lambda: unraisable)
        ended = wait_for(lambda: named("thread_ended", "poll_sensor"))
    finally:
        sys.unraisablehook = original
    started = named("thread_started", "poll_sensor")[-1].detail
    assert started["kind"] == "_thread" and started["function"].endswith("start_sensors")
    assert "test_recorder.py:" in started["started_from"]
    assert ended[-1].detail["died"] is False
    d = died[-1].detail
    assert d["type"] == "OSError" and d["message"] == "sensor unplugged"
    assert d["function"].endswith("unplugged") and d["kind"] == "_thread"
    assert repr(unraisable[0].object) == repr(unplugged)  # the message names the user's code
    assert {t.ident for t in threading.enumerate()} <= dummies | {threading.get_ident()}


def test_records_of_loggers_that_do_not_propagate_are_counted_once(recording: None) -> None:
    log = logging.getLogger("billing.audit")
    own = logging.NullHandler()
    log.addHandler(own)
    log.propagate, propagated = False, log.propagate
    try:
        for i in range(50):
            log.warning("ledger mismatch %d", i)
        rates = [e for e in history_events(kinds=["log_rate"]) if e.source == "billing.audit"]
        assert sum(e.detail["count"] for e in rates) == 50
        assert [e for e in history_events(kinds=["log"]) if e.source == "billing.audit"]
        log.propagate = True  # propagating again: still once each
        recorder.flush()
        mark = time.time()  # (the recorder's own flush may split what follows in two events)
        for i in range(5):
            log.warning("ledger mismatch %d", i)
        rates = [
            e for e in history_events(kinds=["log_rate"], since=mark) if e.source == "billing.audit"
        ]
        assert sum(e.detail["count"] for e in rates) == 5
        assert log.handlers == [own]  # nothing was ever added to the program's loggers
        lensbook.stop()
        assert log.handlers == [own]
    finally:
        log.removeHandler(own)
        log.propagate = propagated


def test_the_users_logging_stays_the_users_while_recording(
    recording: None, capsys: pytest.CaptureFixture[str]
) -> None:
    # no handler of lensbook's anywhere: a logger with nothing configured still has no
    # handlers, and logging's last resort still prints its error (once)
    root_handlers = list(logging.root.handlers)
    lone = logging.getLogger("lone.service")
    lone.propagate, propagated = False, lone.propagate
    try:
        assert not lone.hasHandlers()
        assert logging.root.handlers == root_handlers
        mark = time.time()
        lone.error("an error only logging's last resort prints")
        errors = [
            e
            for e in history_events(kinds=["log_rate"], since=mark)
            if e.source == "lone.service" and e.detail["level"] == "ERROR"
        ]
        assert sum(e.detail["count"] for e in errors) == 1
        printed = capsys.readouterr().err.splitlines()
        assert printed.count("an error only logging's last resort prints") == 1
    finally:
        lone.propagate = propagated


def _one_kind_of_thread() -> None:
    """A target of its own, so the kind below is this test's alone."""


def test_thread_event_gate_and_growth_windows_move_with_the_flush() -> None:
    # an observer of its own: no background flush of the recorder's can split its windows
    ring = HistoryRing()
    observer = ThreadObserver(ring)

    def start_some(n: int) -> None:
        for _ in range(n):
            t = threading.Thread(target=_one_kind_of_thread)
            t.start()
            t.join()

    def ours(events: list[HistoryEvent]) -> list[dict[str, Any]]:
        return [e.detail for e in events if e.detail["target"].endswith("_one_kind_of_thread")]

    def counted(kind: str) -> int:
        return len(ours(ring.events(kinds=[kind])))

    observer.install()
    try:
        start_some(8)
        [row] = ours(observer.flush(time.time()))  # the window: the 8 started and ended
        assert (row["started"], row["ended"], row["alive"], row["started_total"]) == (8, 8, 0, 8)
        assert counted("thread_started") == 5 and counted("thread_ended") == 5
        start_some(3)  # within the same minute: counted, no more events
        assert counted("thread_started") == 5
        [row] = ours(observer.flush(time.time() + 61))  # the gate's minute is over: it opens
        assert (row["started"], row["ended"], row["started_total"]) == (3, 3, 11)
        start_some(6)
        observer.settle()  # ends are noticed off the ending thread (each flush settles them)
        assert counted("thread_started") == 10 and counted("thread_ended") == 10
        # past the reopened gate's five, starts take the shortcut again
        assert [k.target for k in observer._direct.values()] == [f"{__name__}._one_kind_of_thread"]
        [row] = ours(observer.flush(time.time() + 62))
        assert (row["started"], row["started_total"]) == (6, 17)
        assert not ours(observer.flush(time.time() + 63))  # nothing since: no row
    finally:
        observer.remove()


def test_log_counts_keep_every_record_within_their_caps() -> None:
    # a tap of its own, fed directly (nothing else logged in the process can join its window)
    tap = _observers._Tap()
    tap.wire = wire = _observers._Wire({})
    passed: list[logging.LogRecord] = []
    wrapper = _observers._tap_wrapper(tap, wire, lambda logger, record: passed.append(record))
    factory = logging.getLogger("lensbook-test-caps")

    def log(name: str, level: int) -> None:
        wrapper(factory, factory.makeRecord(name, level, __file__, 1, "m", (), None))

    for level in range(1, 21):  # custom levels of one logger past the 16th fold to a standard
        log("caps.levels", 20 + level)
    for i in range(600):  # loggers past the 500th (with the one above) count together
        for _ in range(2):
            log(f"caps.l{i}", logging.INFO)
    counts = tap.counts
    assert len(passed) == 1_220  # every record went on to the handlers
    assert sum(n for per in counts.values() for n in per.values()) == 1_220  # nothing lost
    assert counts[_observers.OTHER_LOGGERS] == {logging.INFO: 2 * 101}
    assert len(counts) == 500 + 1
    assert len(counts["caps.levels"]) <= 16 + 6 and sum(counts["caps.levels"].values()) == 20


def test_a_tap_left_in_a_chain_passes_through_and_the_class_is_restored() -> None:
    assert _observers._TAP.wrapper is None  # (every test leaves lensbook stopped)
    original = logging.Logger.callHandlers
    seen: list[str] = []
    _observers.observe(seen_record := lambda record: seen.append(record.getMessage()))
    ours = logging.Logger.callHandlers
    assert ours is not original and ours.__wrapped__ is original  # type: ignore[attr-defined]

    def theirs(logger: logging.Logger, record: logging.LogRecord) -> None:
        ours(logger, record)

    logging.Logger.callHandlers = theirs  # type: ignore[method-assign,assignment]
    try:
        log = logging.getLogger("chain.test")
        log.addHandler(sink := logging.NullHandler())
        log.warning("seen once")
        _observers.stop_observing(seen_record)
        assert logging.Logger.callHandlers is theirs  # someone else's: left in place
        log.warning("not seen: ours passes through")
        assert seen == ["seen once"]
        log.removeHandler(sink)
    finally:
        logging.Logger.callHandlers = original  # type: ignore[method-assign]
    _observers.observe(seen_record)
    _observers.stop_observing(seen_record)
    assert logging.Logger.callHandlers is original


def test_a_window_s_counts_go_on_over_a_reinstalled_tap_and_a_cut_one_counts_nothing() -> None:
    original = logging.Logger.callHandlers
    log = logging.getLogger("chain.counts")
    log.propagate = False
    log.addHandler(sink := logging.NullHandler())
    _observers.observe(seen_record := lambda record: None)
    old = logging.Logger.callHandlers
    try:
        log.warning("one")
        logging.Logger.callHandlers = original  # type: ignore[method-assign]  # someone cut us
        assert not _observers.observing(seen_record)
        _observers.observe(seen_record)  # a new tap on top, over the cut chain
        assert logging.Logger.callHandlers is not old
        log.warning("two")
        old(log, log.makeRecord("chain.counts", logging.WARNING, __file__, 1, "x", (), None))
        # (the old wrapper, reached again through someone's chain, passes it through uncounted)
        assert _observers.take_counts()["chain.counts"] == {logging.WARNING: 2}
    finally:
        _observers.stop_observing(seen_record)
        log.removeHandler(sink)
        log.propagate = True
    assert logging.Logger.callHandlers is original
    assert _observers.take_counts() == {}


def test_a_record_the_tap_cannot_read_goes_on_to_the_handlers() -> None:
    tap = _observers._Tap()
    tap.wire = wire = _observers._Wire({})
    passed: list[logging.LogRecord] = []
    wrapper = _observers._tap_wrapper(tap, wire, lambda logger, record: passed.append(record))
    log = logging.getLogger("strange.records")
    for levelno in ("INFO", None, [20]):  # unorderable, or unhashable
        record = log.makeRecord("strange.records", logging.INFO, __file__, 1, "x", (), None)
        record.levelno = levelno  # type: ignore[assignment]
        wrapper(log, record)
    unhashable = log.makeRecord("strange.records", logging.INFO, __file__, 1, "x", (), None)
    unhashable.name = ["a"]  # type: ignore[assignment]
    wrapper(log, unhashable)
    assert len(passed) == 4  # each went on, once, and nothing raised


def test_the_programs_threads_stay_as_compact_as_the_recorder_found_them() -> None:
    # reading a thread's __dict__ would make it keep a dict, and every later attribute access
    # on it slower (for the main thread: every log record's thread name): see
    # lensbook.skills._static. Neither a thread alive at start nor one started after is
    def materialised(thread: threading.Thread) -> bool:
        return any(type(r) is dict and "_name" in r for r in gc.get_referents(thread))

    release = threading.Event()
    before = threading.Thread(target=release.wait, name="alive-before", daemon=True)
    before.start()
    after = threading.Thread(target=release.wait, name="started-after", daemon=True)
    try:
        recorder.start("test", sample_interval=None)
        after.start()
        recorder.recorder.threads.settle()
        recorder.recorder.flush()
        assert recorder.recorder.threads.creator(before) is not None
    finally:
        recorder.stop("test")
        release.set()
        before.join(5)
        after.join(5)
    assert not materialised(before) and not materialised(after)


class _Worker:
    def work(self) -> None:
        pass


class _RunThread(threading.Thread):
    def run(self) -> None:
        pass


def test_repeated_starts_from_one_site_keep_their_kind_whatever_the_target() -> None:
    """The second and later starts from a site take the shortcut past the frame walk; they must
    land in the kind the walk found, for every shape of target, and the executor's threads
    (started by the library for the user's call) in theirs."""
    ring = HistoryRing()
    observer = ThreadObserver(ring)
    worker = _Worker()

    def start_each(make: Callable[[], threading.Thread]) -> None:
        for _ in range(4):
            t = make()
            t.start()
            t.join()

    def submit_each() -> None:
        for _ in range(3):
            with ThreadPoolExecutor(1) as pool:
                pool.submit(int).result()

    observer.install()
    try:
        start_each(lambda: threading.Thread(target=_one_kind_of_thread))
        start_each(lambda: threading.Thread(target=worker.work))
        start_each(_RunThread)
        start_each(lambda: threading.Thread(target=int))
        submit_each()
        rows = observer.flush(time.time())
    finally:
        observer.remove()
    found = {r.detail["target"].rsplit(".", 1)[-1]: r.detail for r in rows}
    for target in ("_one_kind_of_thread", "work", "run", "int"):
        row = found[target]
        assert (row["started"], row["ended"]) == (4, 4), (target, row)
        assert row["function"].endswith("start_each") and row["via"] == ""
    pooled = found["_worker"]  # started inside concurrent.futures, blamed on the user's call
    assert pooled["started"] == 3 and pooled["function"].endswith("submit_each")
    assert "test_recorder.py:" in pooled["started_from"]
    # two sites (start_each's, submit_each's), five kinds: the target tells those of one site
    ours = ("_one_kind_of_thread", "work", "run", "int", "_worker")
    assert len({found[t]["started_from"] for t in ours}) == 2


def _made_anew() -> Callable[[], None]:
    def run() -> None:  # no closure: a function object of its own per call, one code
        pass

    return run


class _OtherRunThread(threading.Thread):
    def run(self) -> None:
        pass


def test_the_start_shortcut_puts_every_start_in_its_own_kind_when_one_site_starts_many() -> None:
    """Past its first starts (the event gate's), a kind's starts from one call site take a
    shortcut that compares the target by identity: interleaved targets of every shape started
    from that one site, each many times, must each keep their own count."""
    ring = HistoryRing()
    observer = ThreadObserver(ring)
    worker = _Worker()

    def closure() -> Callable[[], None]:
        held = worker

        def run() -> None:
            held.work()

        return run

    makers: list[Callable[[], threading.Thread]] = [
        lambda: threading.Thread(target=_one_kind_of_thread),
        lambda: threading.Thread(target=worker.work),
        lambda: threading.Thread(target=_Worker().work),
        _RunThread,
        _OtherRunThread,
        lambda: threading.Thread(target=int),
        lambda: threading.Thread(target=closure()),
        lambda: threading.Thread(target=_made_anew()),
    ]
    observer.install()
    try:
        for _ in range(12):
            for make in makers:
                t = make()
                t.start()  # the one site
                t.join()
        shortcuts = list(observer._direct.values())
        # the shortcut holds no function (a closure's globals could keep an exec namespace
        # alive): code ids, whose code the kind holds, and classes
        assert all(
            type(key) is type or any(key == id(k.held) for k in shortcuts)
            for key in observer._direct
        ), observer._direct
        assert not any(type(key) is types.FunctionType for key in observer._direct)
        rows = [r.detail for r in observer.flush(time.time())]
    finally:
        observer.remove()
    mine = [r for r in rows if ".test_recorder." in r["target"] or r["target"] == "int"]
    counts = {".".join(r["target"].split(".")[-3:]): (r["started"], r["ended"]) for r in mine}
    where = {r["target"]: r["started_from"] for r in mine}
    assert counts == {
        "recorder.test_recorder._one_kind_of_thread": (12, 12),
        "test_recorder._Worker.work": (
            24,
            24,
        ),  # two instances' bound methods: one function, one kind
        "test_recorder._RunThread.run": (12, 12),
        "test_recorder._OtherRunThread.run": (12, 12),
        "int": (12, 12),
        "closure.<locals>.run": (12, 12),  # a closure: by its code's id
        "_made_anew.<locals>.run": (12, 12),  # a new function each time, its code the same
    }, counts
    assert len(mine) == 7 and len(set(where.values())) == 1, where
    # the shortcut was taken, with one entry per kind, closures and functions made anew too
    assert shortcuts and len(shortcuts) == len({id(k) for k in shortcuts}), shortcuts
    assert {"closure.<locals>.run", "_made_anew.<locals>.run"} <= {
        ".".join(k.target.split(".")[-3:]) for k in shortcuts
    }, [k.target for k in shortcuts]


def _two_sites_target() -> None:
    """A target of its own, started from two sites below."""


def test_a_target_started_from_two_sites_is_counted_whole_and_each_site_found() -> None:
    """The shortcut compares the call site on every start: each site keeps its own count, in
    bursts, in a pattern, and when one site is rare (a retry path that leaks threads must be
    named, not counted in the busy site's kind)."""
    ring = HistoryRing()
    observer = ThreadObserver(ring)

    def start_from(site: str) -> None:
        t = threading.Thread(target=_two_sites_target)
        if site == "a":
            t.start()
        else:
            t.start()
        t.join()

    def rows() -> dict[str, tuple[int, int]]:
        found = [r.detail for r in observer.flush(time.time())]
        mine = [r for r in found if r["target"].endswith("_two_sites_target")]
        return {r["started_from"]: (r["started"], r["ended"]) for r in mine}

    observer.install()
    try:
        for site in ("a", "b", "a"):  # bursts: two changes of site
            for _ in range(150):
                start_from(site)
        bursts = rows()
        for _ in range(100):  # a pattern: three from one site, one from the other
            for site in ("a", "a", "a", "b"):
                start_from(site)
        pattern = rows()
        for i in range(300):  # a rare site: one start in 60
            start_from("b" if i % 60 == 59 else "a")
        rare = rows()
    finally:
        observer.remove()
    assert len(bursts) == 2 and len(pattern) == 2, (bursts, pattern)
    assert all(started == ended for started, ended in [*bursts.values(), *pattern.values()])
    assert sorted(started for started, _ in bursts.values()) == [150, 300], bursts
    assert sorted(started for started, _ in pattern.values()) == [100, 300], pattern
    assert sorted(started for started, _ in rare.values()) == [5, 295], rare


class _Singleton:
    __slots__ = ()

    def run(self) -> None:
        pass


_Singleton = _Singleton()  # type: ignore[misc]  # a name on the path has no __dict__


def test_starts_of_targets_the_shortcut_cannot_hold_are_all_counted() -> None:
    # a method reached through an instance without a __dict__, and C methods bound to objects
    # (a new object per access, holding the object): each start counted in one kind, and no
    # object of the program kept alive by a kind
    ring = HistoryRing()
    observer = ThreadObserver(ring)

    class Box(list):  # (a list subclass: weak references allowed)
        pass

    boxes = [Box() for _ in range(30)]
    alive = [weakref.ref(b) for b in boxes]
    observer.install()
    try:
        for _ in range(20):
            t = threading.Thread(target=type(_Singleton).run, args=(_Singleton,))
            t.start()
            t.join()
        for box in boxes:
            t = threading.Thread(target=box.append, args=(1,))
            t.start()
            t.join()
        rows = [r.detail for r in observer.flush(time.time())]
    finally:
        observer.remove()
    del boxes, box, t
    gc.collect()
    counts = {r["target"].rsplit(".", 2)[-2:][-1]: (r["started"], r["ended"]) for r in rows}
    assert counts.get("run") == (20, 20), rows
    assert counts.get("append") == (30, 30), rows
    assert [r() for r in alive] == [None] * 30


class _Holder(threading.Thread):
    """A thread subclass holding a payload until it is let go."""

    def __init__(self, name: str, go: threading.Event) -> None:
        super().__init__(name=name)
        self.payload = bytearray(1000)
        self.go = go

    def run(self) -> None:
        self.go.wait(20)


def test_thread_ends_are_settled_off_the_ending_thread_and_keep_no_thread_alive() -> None:
    """Nothing runs in the ending thread: ends are counted by the next settle (each flush, so
    each read), whether the user still holds the `Thread` or dropped it; the observer itself
    keeps no `Thread` (nor what it holds) alive."""
    ring = HistoryRing()
    observer = ThreadObserver(ring)
    go = threading.Event()

    def ended() -> dict[str, dict[str, Any]]:
        found = [e.detail for e in ring.events(kinds=["thread_ended"])]
        return {d["thread"]: d for d in found if d["target"].endswith("_Holder.run")}

    observer.install()
    try:
        kept = [_Holder("holder-kept-1", go), _Holder("holder-kept-2", go)]
        dropped = _Holder("holder-dropped", go)
        for t in [*kept, dropped]:
            t.start()
        observer.settle()  # all alive: nothing ended
        assert ended() == {}
        go.set()
        for t in [*kept, dropped]:
            t.join(20)
        gone = weakref.ref(dropped)
        del dropped, t
        gc.collect()
        assert gone() is None  # the observer held no reference to it
        assert ended() == {}  # not noticed by the ending threads themselves
        [row] = [
            r.detail
            for r in observer.flush(time.time())
            if r.detail["target"].endswith("_Holder.run")
        ]
        assert (row["started"], row["ended"], row["alive"]) == (3, 3, 0)
        found = ended()
        assert set(found) == {"holder-kept-1", "holder-kept-2", "holder-dropped"}
        assert all(d["died"] is False and d["lived_s"] >= 0 for d in found.values())
        observer.settle()  # settled once: a second pass counts nothing again
        assert len(ring.events(kinds=["thread_ended"])) == 3
    finally:
        observer.remove()


def test_a_reader_sees_a_thread_that_just_ended(recording: None) -> None:
    t = threading.Thread(target=int, name="short-lived-7")
    t.start()
    t.join(20)
    # no waiting: every read flushes, and each flush settles the ends until then
    [end] = [e for e in history_events(kinds=["thread_ended"]) if e.source == "short-lived-7"]
    assert end.detail["died"] is False and end.detail["target"].endswith("int")
