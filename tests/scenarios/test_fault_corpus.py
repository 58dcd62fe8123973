"""End to end: the real-world fault corpus and the busy-but-healthy workloads.

Each scenario runs in a child process of its own (``python -m lensbook.scenarios NAME --json``)
with the default offline investigator, as `lensbook eval` runs them. The children start
together (four at a time) when the first test of this module needs them, so the module costs
about as long as its slowest few scenarios; each test then checks one outcome: the culprit
named (user function, file:line, the blocking call or what holds it), or no alarm on a healthy
workload from any built-in skill that judges the process (all but `system`, which judges the
shared host).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from lensbook.scenarios import get_scenario, process_skills
from lensbook.skills import builtin_ids
from tests.scenarios._children import notes_text, run_children

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc"),
]

FAULTS = (
    "blocking_coroutine",
    "lock_after_cancel",
    "task_exception_lost",
    "dead_consumers",
    "socket_leak",
    "zombie_children",
    "blocked_log_handler",
    "exception_cycles",
    "last_error_retention",
    "duplicate_handlers",
    "executor_per_request",
    "task_pileup",
    "past_retry_storm",
    "native_leak",
)
HEALTHY = ("healthy_etl", "healthy_server", "healthy_pool", "healthy_native")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    home = tmp_path_factory.mktemp("corpus")
    # the healthy workloads run every skill in turn: start them first, they take longest
    names = (*HEALTHY, *FAULTS)
    yield run_children(names, lambda _name: home)


def test_the_corpus_is_registered_and_cites_its_sources() -> None:
    for name in FAULTS:
        scenario = get_scenario(name)
        assert not scenario.healthy and scenario.expect, name
        doc = sys.modules[scenario.induce.__module__].__doc__ or ""
        # a public report: owner/repo#number
        assert re.search(r"[\w.-]+/[\w.-]+#\d+", doc), f"{name} cites no source"
    for name in HEALTHY:
        scenario = get_scenario(name)
        assert scenario.healthy and scenario.skills == process_skills()
        # every built-in skill but the host's own (other processes load a shared host)
        assert set(builtin_ids()) - set(scenario.skills) == {"system"}


@pytest.mark.parametrize("name", FAULTS)
def test_fault_is_diagnosed_by_the_offline_investigator(
    name: str, outcomes: dict[str, dict[str, Any]]
) -> None:
    outcome = outcomes[name]
    assert "no_outcome" not in outcome, outcome.get("no_outcome")
    assert outcome["client"] == "offline investigator"
    assert outcome["diagnosed"] is True, (outcome["missing"], notes_text(outcome))
    assert outcome["state"] in ("warning", "critical")
    assert outcome["error"] is None


def test_the_culprits_are_named_in_the_users_terms(outcomes: dict[str, dict[str, Any]]) -> None:
    named = {
        name: notes_text(outcomes[name]) for name in FAULTS if "no_outcome" not in outcomes[name]
    }
    # the user function and its line, and the blocking call
    assert re.search(
        r"blocking_coroutine\.py:\d+ in wait_for_confirmation: time\.sleep",
        named["blocking_coroutine"],
    )
    assert "SessionCache.get_session `async with self.lock:`" in named["lock_after_cancel"]
    # the asyncio rule's words, or the flight recorder's count of the same unhandled exceptions
    assert (
        "Task exception was never retrieved" in named["task_exception_lost"]
        or "unhandled exception(s)" in named["task_exception_lost"]
    )
    assert "in send_receipt" in named["task_exception_lost"]
    assert "consume_events" in named["dead_consumers"]
    # the holder's own blocking call, and the user line every waiter comes from
    assert "stream.write" in named["blocked_log_handler"]
    assert re.search(
        r"called from .*blocked_log_handler\.py:\d+ in process_order", named["blocked_log_handler"]
    )
    # the frame that stores the exception, with the local that closes the cycle
    assert "validate_record" in named["exception_cycles"]
    assert "'errors'" in named["exception_cycles"]
    assert "load_orders" in named["last_error_retention"]
    assert "pandas.DataFrame 2000000x10" in named["last_error_retention"]
    assert "frames.log" in named["duplicate_handlers"]
    assert "attribute 'pool' of ReportHandler instances" in named["executor_per_request"]
    # the request handler that starts the pools' threads (the flight recorder saw them start)
    assert re.search(
        r"started by ReportHandler\.handle at \S*executor_per_request\.py:\d+",
        named["executor_per_request"],
    )
    assert re.search(r"\d+ tasks of coroutine process_job .* Semaphore", named["task_pileup"])
    assert "CLOSE_WAIT" in named["socket_leak"]
    # the user function that keeps creating the leaked handles, from a short tracemalloc window
    assert re.search(r"created at \S*socket_leak\.py:\d+ in fetch_page", named["socket_leak"])
    assert re.search(
        r"created at \S*zombie_children\.py:\d+ in make_thumbnail", named["zombie_children"]
    )
    assert re.search(
        r"created at \S*duplicate_handlers\.py:\d+ in frame_logger", named["duplicate_handlers"]
    )
    assert "--thumbnail photo-*.jpg" in named["zombie_children"]
    # memory that Python never allocated: said so, and no Python line blamed for it
    assert "outside Python's allocators" in named["native_leak"]
    assert "allocation site" not in named["native_leak"]
    # over before the run: diagnosed from the flight recorder's history, with when it ended
    assert re.search(
        r"ConnectionError .*past_retry_storm\.py:\d+ in fetch_stock.* \(ended \d+ s ago\)",
        named["past_retry_storm"],
    )


@pytest.mark.parametrize(
    "name",
    [
        "healthy_etl",
        "healthy_server",
        "healthy_pool",
        "healthy_native",
    ],
)
def test_busy_healthy_workload_raises_no_alarm_in_any_skill(
    name: str, outcomes: dict[str, dict[str, Any]]
) -> None:
    outcome = outcomes[name]
    assert "no_outcome" not in outcome, outcome.get("no_outcome")
    assert outcome["skill"] == "+".join(process_skills())  # every skill that judges the process
    alarms = [n for n in outcome["notifications"] if n["severity"] in ("warning", "critical")]
    assert not alarms, notes_text(outcome)
    assert outcome["false_alarm"] is False
    assert outcome["diagnosed"] is True
    assert outcome["error"] is None
