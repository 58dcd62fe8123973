"""The logs skill: a ring buffer on the root logger, its counts, rates, groups and rules."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator

import pytest

from lensbook.skills import _observers
from lensbook.skills.base import render_output
from lensbook.skills.logs import LogsSkill, parse_level
from lensbook.skills.rules import Evidence
from tests.skills._probes import evidence_around, rendered


@pytest.fixture
def skill() -> Iterator[LogsSkill]:
    sk = LogsSkill()
    yield sk
    sk.close()


def test_installed_on_first_use_once_and_removable() -> None:
    before, tap = list(logging.root.handlers), logging.Logger.callHandlers
    sk = LogsSkill()
    assert not sk.installed  # nothing at construction
    sk.snapshot()
    sk.summary()
    sk.snapshot()
    assert sk.installed and logging.root.handlers == before  # no handler: the tap
    ring = sk._ring
    sk.close()
    assert not sk.installed and logging.Logger.callHandlers is tap
    sk.recent()  # a probe installs it again, with a new ring
    assert sk.installed and sk._ring is not ring
    sk.close()
    assert logging.root.handlers == before and logging.Logger.callHandlers is tap


def test_the_users_logging_configuration_applies_while_observed() -> None:
    # a handler of lensbook's on the root logger made the user's basicConfig() a silent no-op
    # (pyroute2#601, gremlinclient#5: libraries that add one are reported for it); in a child,
    # since basicConfig changes the process's logging for good
    code = textwrap.dedent(
        """
        import logging, sys
        import lensbook
        from lensbook.skills.logs import LogsSkill
        lensbook.start(["logs", "exceptions"])  # the flight recorder, and the skills' operators
        logs = LogsSkill()
        logs.snapshot()
        assert not logging.root.hasHandlers()
        logging.basicConfig(level=logging.INFO, format="USER %(name)s %(message)s",
                            stream=sys.stdout)
        logging.getLogger("app").info("configured after start")
        quiet = logging.getLogger("quiet"); quiet.propagate = False
        quiet.addHandler(logging.StreamHandler(sys.stdout))
        quiet.warning("a logger that does not propagate")
        print("LOGGERS", sorted({name for name, _ in logs._ring.counts()[2]}))
        logs.close()
        lensbook.stop()
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    lines = proc.stdout.splitlines()
    assert "USER app configured after start" in lines, proc.stdout
    assert "a logger that does not propagate" in lines
    assert any(
        line.startswith("LOGGERS") and "'quiet'" in line and "'app'" in line for line in lines
    )


def test_an_argument_that_logs_while_formatted_does_not_hang_logging(skill: LogsSkill) -> None:
    # formatting a record runs the program's __str__, which may log in turn: the ring must not
    # hold its lock meanwhile (a plain lock would deadlock the logging thread for good)
    skill.snapshot()
    inner = logging.getLogger("app.inner")

    class Chatty:
        def __str__(self) -> str:
            inner.warning("formatting a Chatty")
            return "chatty"

    done = threading.Event()

    def log() -> None:
        logging.getLogger("app.outer").warning("value %s", Chatty())
        done.set()

    worker = threading.Thread(target=log, daemon=True)
    worker.start()
    assert done.wait(10), "logging hung while lensbook observed it"
    _, _, by_logger = skill._ring.counts()  # type: ignore[union-attr]
    assert by_logger[("app.outer", logging.WARNING)] == 1
    assert by_logger[("app.inner", logging.WARNING)] >= 1  # (once per handler formatting it)


def test_logging_again_while_the_ring_is_updated_does_not_hang(skill: LogsSkill) -> None:
    # a signal handler, a __del__ or a weakref callback may log in the very thread that holds
    # the ring's lock mid-update: the lock is re-entrant (a plain one hung the thread for good)
    skill.snapshot()
    ring = skill._ring
    assert ring is not None
    done = threading.Event()

    def nested() -> None:
        with ring.lock:  # as if interrupted inside the ring's update
            logging.getLogger("app.signal").warning("shutting down")
        done.set()

    threading.Thread(target=nested, daemon=True).start()
    assert done.wait(10), "logging hung while the ring's lock was held by the same thread"


def test_the_ring_sees_a_record_after_the_programs_handler_filters_scrubbed_it(
    skill: LogsSkill,
) -> None:
    # a handler filter that redacts in place (a common pattern) ran before lensbook's root
    # handler did; the tap hands records on after the handlers, so it still does
    skill.snapshot()

    def scrub(record: logging.LogRecord) -> bool:
        record.msg, record.args = "login <redacted>", ()
        return True

    log = logging.getLogger("app.auth")
    sink = logging.StreamHandler(io.StringIO())  # (a NullHandler runs no filter)
    sink.addFilter(scrub)
    log.addHandler(sink)
    try:
        log.warning("login user=%s password=%s", "bob", "hunter2")
    finally:
        log.removeHandler(sink)
    assert skill._ring is not None
    messages = [e.message for e in skill._ring.entries() if e.logger == "app.auth"]
    assert messages == ["login <redacted>"]


def test_a_tap_cut_out_of_the_chain_is_noticed_and_put_back() -> None:
    # someone wraps callHandlers after us; we stop and start again; they then put back what
    # they saw, our old wrapper: the new one is out of the chain, which must not go unnoticed
    sk = LogsSkill()
    original = logging.Logger.callHandlers
    try:
        sk.snapshot()
        ours = logging.Logger.callHandlers

        def theirs(logger: logging.Logger, record: logging.LogRecord) -> None:
            ours(logger, record)

        theirs.__wrapped__ = ours  # type: ignore[attr-defined]
        logging.Logger.callHandlers = theirs  # type: ignore[method-assign,assignment]
        sk.close()
        sk.snapshot()
        logging.Logger.callHandlers = ours  # type: ignore[method-assign]  # theirs undone
        assert not sk.installed
        sk.snapshot()  # a use puts the tap back on top
        assert sk.installed
        logging.getLogger("app.chain").warning("seen again")
        assert sk._ring is not None
        assert [e.message for e in sk._ring.entries() if e.logger == "app.chain"] == ["seen again"]
    finally:
        sk.close()
        if logging.Logger.callHandlers is not original:
            logging.Logger.callHandlers = original  # type: ignore[method-assign]
    assert _observers._TAP.wrapper is None  # the cut-out ring's observer went too: no tap left


def test_counts_by_level_and_logger(skill: LogsSkill) -> None:
    skill.snapshot()
    log = logging.getLogger("shop.cart")
    log.setLevel(logging.DEBUG)
    try:
        log.info("cart opened")
        log.warning("cart is getting large")
        for i in range(3):
            log.error("cart %d lost", i)
        logging.getLogger("shop.pay").critical("payment provider down")
    finally:
        log.setLevel(logging.NOTSET)
    summary = rendered(skill.summary())
    assert summary["by_level"] == {"INFO": 1, "WARNING": 1, "ERROR": 3, "CRITICAL": 1}
    loggers = {row["logger"]: row for row in summary["loggers"]}
    assert loggers["shop.cart"]["total"] == 5
    assert loggers["shop.cart"]["by_level"]["ERROR"] == 3
    assert loggers["shop.pay"]["by_level"] == {"CRITICAL": 1}
    assert summary["last_60s"]["errors"] == 4
    snap = skill.snapshot()
    assert snap["errors_total"] == 4 and snap["warnings_total"] == 1 and snap["records_total"] == 6


def test_top_messages_group_by_template_across_arguments(skill: LogsSkill) -> None:
    skill.snapshot()
    log = logging.getLogger("crawler")
    for url in ("https://a.example/1", "https://b.example/2", "https://c.example/3"):
        log.warning("failed to fetch %s", url)
    for n in (17, 18):
        log.warning(f"queue depth {n} above limit")  # pre-formatted: numbers are masked
    log.warning("something else")
    top = rendered(skill.top_messages(min_level="WARNING"))
    groups = {g["template"]: g for g in top["groups"]}
    assert groups["failed to fetch %s"]["count"] == 3
    assert groups["failed to fetch %s"]["logger"] == "crawler"
    assert groups["failed to fetch %s"]["example"] == "failed to fetch https://c.example/3"
    assert groups["failed to fetch %s"]["location"].startswith("test_logs.py:")
    assert groups["queue depth <n> above limit"]["count"] == 2
    assert top["groups"][0]["template"] == "failed to fetch %s"


def test_ring_is_bounded_in_count_and_age_while_counts_stay_exact() -> None:
    sk = LogsSkill(max_records=50, max_age=60.0)
    try:
        sk.snapshot()
        log = logging.getLogger("bounded")
        for i in range(200):
            log.warning("record %d", i)
        recent = sk.recent(limit=100)
        assert recent["matched"] == 50
        assert recent["records"][0]["message"] == "record 199"
        assert sk.snapshot()["records_total"] == 200
        assert sk.top_messages()["groups"][0]["count"] == 200

        old = logging.makeLogRecord(
            {
                "name": "bounded",
                "msg": "from long ago",
                "levelno": logging.WARNING,
                "levelname": "WARNING",
                "created": time.time() - 3600,
            }
        )
        logging.getLogger("bounded").handle(old)
        assert all(r["message"] != "from long ago" for r in sk.recent(limit=100)["records"])
    finally:
        sk.close()


def test_recent_filters_by_level_and_logger(skill: LogsSkill) -> None:
    skill.snapshot()
    logging.getLogger("svc.db").error("db down")
    logging.getLogger("svc.dbx").error("not a child of svc.db")
    logging.getLogger("svc.db.pool").warning("pool low")
    logging.getLogger("svc.web").error("web down")
    out = skill.recent(logger="svc.db", min_level="warning")
    assert [r["message"] for r in out["records"]] == ["pool low", "db down"]
    out = skill.recent(logger="svc.db", min_level="ERROR")
    assert [r["logger"] for r in out["records"]] == ["svc.db"]
    with pytest.raises(ValueError, match="unknown logging level"):
        skill.recent(min_level="LOUD")
    assert parse_level("40") == logging.ERROR


def test_search_by_regex_on_redacted_text(skill: LogsSkill) -> None:
    skill.snapshot()
    log = logging.getLogger("net")
    log.error("connection refused by 10.0.0.7")
    log.error("read timeout after 30 s")
    log.warning("using key sk-ant-api03-%s", "Q" * 40)
    found = skill.search("refused|timeout")
    assert found["matched"] == 2
    # a search can not be used to test guesses of a credential
    assert skill.search("sk-ant")["matched"] == 0
    assert skill.search("REDACTED")["matched"] == 1
    with pytest.raises(ValueError, match="invalid regular expression"):
        skill.search("(unclosed")


def test_exceptions_logged_are_noted(skill: LogsSkill) -> None:
    skill.snapshot()
    try:
        {}["missing"]
    except KeyError:
        logging.getLogger("jobs").exception("job %s failed", "nightly")
    rec = skill.recent()["records"][0]
    assert rec["exception"] == "KeyError"
    assert skill.top_messages()["groups"][0]["exceptions"] == ["KeyError"]


def storm(stop: threading.Event, per_burst: int = 20) -> None:
    log = logging.getLogger("payments.gateway")
    n = 0
    while not stop.is_set():
        for _ in range(per_burst):
            n += 1
            log.error("failed to charge card %s: gateway timeout", n)
        stop.wait(0.05)


def evidence_after(skill: LogsSkill, seconds: float) -> Evidence:
    """Evidence as the offline investigator builds it, over a window of `seconds`."""
    return evidence_around(skill, lambda: time.sleep(seconds))  # the window the rates span


def test_error_storm_rule_names_logger_template_rate_and_thread(skill: LogsSkill) -> None:
    stop = threading.Event()
    worker = threading.Thread(target=storm, args=(stop,), name="payments-retry", daemon=True)
    skill.snapshot()
    worker.start()
    try:
        ev = evidence_after(skill, 1.5)
    finally:
        stop.set()
        worker.join(5)
    findings = [f for rule in skill.rules() for f in rule.judge(ev)]
    assert [f.anomaly_type for f in findings] == ["error_storm"]
    text = findings[0].observation
    assert "'payments.gateway'" in text
    assert "'failed to charge card %s: gateway timeout'" in text
    assert "/s" in text and "payments-retry" in text and "test_logs.py:" in text


def test_quiet_logging_raises_no_finding(skill: LogsSkill) -> None:
    logging.getLogger("quiet").warning("one warning, as healthy processes have")
    ev = evidence_after(skill, 0.2)
    logging.getLogger("quiet").error("a single error is not a storm")
    assert [f for rule in skill.rules() for f in rule.judge(ev)] == []


def test_stderr_output_unchanged_for_a_process_without_handlers() -> None:
    # in a process that configured no logging, records reach stderr through logging's last
    # resort; the observers (logs and exceptions skills together) must not change that
    code = textwrap.dedent(
        """
        import logging
        from lensbook.skills.exceptions import ExceptionsSkill
        from lensbook.skills.logs import LogsSkill
        logs, exc = LogsSkill(), ExceptionsSkill()
        # (the module-level logging.warning() would call basicConfig: use a logger)
        logging.getLogger("a").warning("before install")
        logs.snapshot(); exc.snapshot()
        logging.getLogger("a.b").warning("while observed")
        logging.getLogger("a.b").info("info is below the last resort's level")
        app = logging.getLogger("app"); app.addHandler(logging.NullHandler())
        app.error("handled by the app's own handler")
        logs.close(); exc.close()
        logging.getLogger("a").warning("after close")
        assert logging.root.handlers == []
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stderr.splitlines() == ["before install", "while observed", "after close"]


def test_default_outputs_fit_their_caps_with_long_records(skill: LogsSkill) -> None:
    skill.snapshot()
    for i in range(200):
        name = f"very.long.logger.name.for.a.deeply.nested.module.number{i % 7}"
        logging.getLogger(name).error("x" * 500 + " %s", i)
    tools = {t.name: t for t in skill.probes()}
    for name, args in (
        ("logs_recent", {}),
        ("logs_search", {"pattern": "x"}),
        ("logs_top_messages", {}),
        ("logs_summary", {}),
    ):
        text = render_output(tools[name].fn(**args), tools[name].max_chars)
        assert "...[truncated " not in text, name  # not cut short
        assert json.loads(text), name  # whole JSON, and not empty
