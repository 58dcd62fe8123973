"""The coordinator driven by ScriptedClient: every tool, refusals, and every way a run can end.

Each run uses real operators on small test skills (their own ScriptedClients); a gate held by a
probe keeps an operator running for as long as a test needs. No caller may hang.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import lensbook
from lensbook import events
from lensbook.clients import ModelRequest, ScriptedClient, call
from lensbook.clients.base import ToolCall
from lensbook.clients.offline import OfflineInvestigator
from lensbook.coordinator import Coordinator, CoordinatorResult, coordinator_chain
from lensbook.coordinator.offline import OfflineCoordinator
from lensbook.coordinator.session import SHUTDOWN_SECONDS

from ._scripts import (
    GATE,
    Alpha,
    Beta,
    last_result,
    operator_script,
    tool_results,
    wait_until_idle,
)


@pytest.fixture(autouse=True)
def _gate_closed() -> Iterator[None]:
    GATE.clear()
    yield
    GATE.set()  # frees any probe thread still waiting


def ids(request: ModelRequest, status: str = "unread") -> list[str]:
    found = last_result(request, "get_notifications")
    return [n["id"] for n in found["notifications"] if n["status"] == status]


def test_every_tool_and_the_refusal_of_done_while_operators_run() -> None:
    def open_gate(request: ModelRequest) -> ToolCall:
        GATE.set()
        return call("get_operator_statuses")

    def insight(request: ModelRequest) -> list[Any]:
        alpha, beta = ids(request)
        return [
            call("update_notification_statuses", ids=[beta], status="acknowledged", reason="seen"),
            call(
                "produce_insight",
                notification_ids=[alpha, beta],
                correlation_type="causal",
                summary="alpha's backlog slows beta",
                matched_observations=["alpha grew by 40 in 2 s", "beta grew by 40 in 2 s"],
                hypothesis_grounded=True,
                root_cause_hypothesis="alpha is overloaded",
                confidence="medium",
            ),
        ]

    client = ScriptedClient(
        [
            [
                call("think", thought="alpha and beta matter"),
                call("invoke_operators", skills=["alpha", "beta", "nope"], context="look"),
            ],
            call("done", summary="too early"),
            open_gate,
            *[wait_until_idle] * 12,
            call("get_notifications", status="unread"),
            insight,
            call("message_operator", skill="alpha", message="what did you see?"),
            call("get_notifications", status="resolved"),
            call("done", summary="alpha's backlog explains beta"),
        ]
    )
    clients = {
        "alpha": operator_script("alpha", extra=["alpha saw a backlog of 42"]),
        "beta": operator_script("beta"),
    }
    seen: list[events.Event] = []
    token = events.subscribe(seen.append)
    coordinator = Coordinator(skills=[Alpha, Beta], client=client, operator_client=clients)
    result = coordinator.run("alpha backs up and beta slows down", deadline=60)
    events.unsubscribe(token)

    assert result.stop_reason == "done", result
    assert result.summary == "alpha's backlog explains beta"
    assert result.context == {"reason": "alpha backs up and beta slows down"}
    # done was refused while the operators ran, and said why
    outcomes = tool_results(client.requests[-1])
    refused = [c for name, c, err in outcomes if name == "done" and err]
    assert len(refused) == 1 and "still running" in refused[0]
    invoked = json.loads(next(c for name, c, _ in outcomes if name == "invoke_operators"))
    assert invoked["started"] == ["alpha", "beta"] and invoked["unknown"] == ["nope"]
    # the insight links both operators' notifications, which are now resolved
    (insight_,) = result.insights
    assert sorted(insight_.skills) == ["alpha", "beta"]  # in the order they reported
    assert insight_.correlation_type == "causal" and insight_.confidence == "medium"
    assert {n.status for n in result.notifications} == {"resolved"}
    assert set(insight_.notification_ids) == {n.id for n in result.notifications}
    resolved = last_result(client.requests[-1], "get_notifications")
    assert resolved["count"] == 2
    answer = last_result(client.requests[-1], "message_operator")
    assert answer["skill"] == "alpha" and "backlog of 42" in answer["response"]
    # each operator's result, and the operators are stopped
    assert set(result.operator_results) == {"alpha", "beta"}
    assert all(r.stop_reason == "done" for r in result.operator_results.values())
    assert result.operator_results["alpha"].notifications[0].anomaly_type == "alpha_anomaly"
    assert coordinator.status() == (False, 2, 0, result.iterations)
    kinds = [e.kind for e in seen if e.operator == "coordinator"]
    assert kinds[0] == "coordinator_started" and kinds[-1] == "coordinator_completed"
    assert kinds.count("coordinator_notification") == 2 and kinds.count("insight") == 1
    stopped = {e.operator for e in seen if e.kind == "operator_stopped"}
    assert stopped == {"coordinator.alpha", "coordinator.beta"}
    # every request is the coordinator's: purpose investigate, skill id coordinator
    assert {(r.purpose, r.skill_id) for r in client.requests} == {("investigate", "coordinator")}
    assert {t.name for t in client.requests[0].tools} >= {
        "invoke_operators",
        "wait",
        "get_operator_statuses",
        "get_notifications",
        "update_notification_statuses",
        "produce_insight",
        "message_operator",
        "think",
        "done",
    }


def test_tool_errors_are_results_the_model_reads() -> None:
    client = ScriptedClient(
        [
            [
                call("no_such_tool"),
                call("invoke_operators", skills="alpha"),
                call("invoke_operators", skills=["nope"], context="x"),
                call(
                    "produce_insight",
                    notification_ids=["missing"],
                    correlation_type="temporal",
                    summary="s",
                    matched_observations=[],
                    hypothesis_grounded=False,
                    confidence="low",
                ),
                call("update_notification_statuses", ids=["missing"], status="resolved"),
                call("message_operator", skill="nope", message="hi"),
                call("get_notifications", status="bogus"),
            ],
            call("done"),
        ]
    )
    result = Coordinator(skills=[Alpha], client=client).run({"reason": "x"})
    assert result.stop_reason == "done"
    outcomes = tool_results(client.requests[-1])
    assert [err for _, _, err in outcomes] == [True] * 7
    texts = [c for _, c, _ in outcomes]
    assert "unknown tool 'no_such_tool'" in texts[0]
    assert "invalid arguments" in texts[1]
    assert "no known skill" in texts[2]
    assert "unknown ids: missing" in texts[3]
    assert "no known notification id" in texts[4]
    assert "no skill 'nope'" in texts[5]
    assert "invalid arguments" in texts[6]
    assert result.operator_results == {}


def test_deadline_stops_the_operators_and_returns_what_was_found() -> None:
    client = ScriptedClient(
        [call("invoke_operators", skills=["alpha"], context="look"), *[wait_until_idle] * 100]
    )
    coordinator = Coordinator(
        skills=[Alpha],
        client=client,
        operator_client=operator_script("alpha"),
        max_wait_seconds=0.2,
    )
    result = coordinator.run({"reason": "x"}, deadline=1.5)
    assert result.stop_reason == "deadline"
    assert result.error is not None and "deadline of 1.5 s" in result.error
    assert result.operator_results["alpha"].stop_reason == "stopped"
    assert not coordinator.running and coordinator.status().running is False
    assert coordinator.last_result == result


def test_run_async_is_a_deprecated_alias_of_run_in_background() -> None:
    coordinator = Coordinator(skills=[Alpha], client=ScriptedClient([call("done")]))
    with pytest.warns(DeprecationWarning, match="run_in_background") as warned:
        assert coordinator.run_async({"reason": "old name"}) is coordinator
    assert warned[0].filename == __file__  # the warning names the caller's line
    assert coordinator.wait(timeout=30).stop_reason == "done"


def test_cancel_from_another_thread_ends_the_run() -> None:
    invoked = threading.Event()

    def then_wait(request: ModelRequest) -> ToolCall:
        invoked.set()
        return call("wait", seconds=30)

    client = ScriptedClient(
        [call("invoke_operators", skills=["alpha"], context="look"), *[then_wait] * 50]
    )
    coordinator = Coordinator(
        skills=[Alpha], client=client, operator_client=operator_script("alpha")
    )
    assert coordinator.run_in_background({"reason": "x"}) is coordinator
    assert invoked.wait(30)
    assert coordinator.status().running
    with pytest.raises(lensbook.LensbookError, match="already running"):
        coordinator.run_in_background({"reason": "again"})
    coordinator.cancel()
    result = coordinator.wait(timeout=30)
    assert result.stop_reason == "cancelled"
    assert result.operator_results["alpha"].stop_reason == "stopped"
    assert not coordinator.running


def test_an_operator_crash_is_reported_and_does_not_block_done() -> None:
    crashing = ScriptedClient([call("take_snapshot"), KeyError("a bug in a client")])
    client = ScriptedClient(
        [
            call("invoke_operators", skills=["alpha", "beta"], context="look"),
            lambda r: (GATE.set(), call("wait", seconds=5))[1],
            *[wait_until_idle] * 12,
            call("done", summary="alpha crashed; beta found its anomaly"),
        ]
    )
    clients = {"alpha": crashing, "beta": operator_script("beta")}
    result = Coordinator(skills=[Alpha, Beta], client=client, operator_client=clients).run("x")
    assert result.stop_reason == "done"
    alpha = result.operator_results["alpha"]
    assert alpha.stop_reason == "error" and "KeyError" in (alpha.error or "")
    assert result.operator_results["beta"].stop_reason == "done"
    statuses = last_result(client.requests[-1], "get_operator_statuses")["operators"]
    crashed = next(o for o in statuses if o["skill"] == "alpha")
    assert crashed["crashed"] is True and "KeyError" in crashed["error"]


def test_an_operator_timeout_ends_its_run_and_the_coordination_goes_on() -> None:
    client = ScriptedClient(
        [
            call("invoke_operators", skills=["alpha"], context="look"),
            *[wait_until_idle] * 12,
            call("done", summary="alpha timed out"),
        ]
    )
    result = Coordinator(
        skills=[Alpha],
        client=client,
        operator_client=operator_script("alpha"),
        operator_timeout=1.0,
    ).run("x")
    assert result.stop_reason == "done"
    alpha = result.operator_results["alpha"]
    assert alpha.stop_reason == "timeout" and alpha.error == "stopped after 1.0 s"


def test_a_model_error_ends_the_run_and_stops_the_operators() -> None:
    client = ScriptedClient(
        [
            call("invoke_operators", skills=["alpha"], context="look"),
            call("wait", seconds=0.5),  # alpha is now held at its gate
            lensbook.ProviderError("bad request", retryable=False),
        ]
    )
    coordinator = Coordinator(
        skills=[Alpha], client=client, operator_client=operator_script("alpha")
    )
    result = coordinator.run("x")
    assert result.stop_reason == "error"
    assert result.error is not None
    assert "model failed" in result.error and "bad request" in result.error
    assert result.operator_results["alpha"].stop_reason == "stopped"
    assert not coordinator.running


@pytest.mark.slow
def test_an_operator_that_ignores_its_stop_does_not_keep_the_caller() -> None:
    # Stopped the instant its run starts, the operator's run may go on: on Python 3.11 the
    # cancellation is swallowed by asyncio.wait_for when the scripted model has just answered.
    # It then sits at its gate for 20 s; the coordinator leaves it behind after its grace.
    client = ScriptedClient(
        [
            call("invoke_operators", skills=["alpha"], context="look"),
            lensbook.ProviderError("bad request", retryable=False),
        ]
    )
    coordinator = Coordinator(
        skills=[Alpha], client=client, operator_client=operator_script("alpha")
    )
    result = coordinator.run("x")
    assert result.stop_reason == "error"
    assert not coordinator.running
    assert result.seconds < SHUTDOWN_SECONDS + 5  # the grace, not the operator's 20 s
    assert result.operator_results["alpha"].stop_reason == "stopped"


def test_a_client_that_raises_anything_ends_the_run_with_an_error() -> None:
    client = ScriptedClient([RuntimeError("a bug in the client")])
    result = Coordinator(skills=[Alpha], client=client).run("x")
    assert result.stop_reason == "error" and result.error == "RuntimeError: a bug in the client"


def test_iteration_limit_ends_an_endless_model() -> None:
    client = ScriptedClient([call("think", thought=f"step {i}") for i in range(10)])
    result = Coordinator(skills=[Alpha], client=client, max_iterations=4).run("x")
    assert result.stop_reason == "max_iterations" and result.iterations == 4


def test_text_only_turns_get_a_nudge() -> None:
    client = ScriptedClient(["I would look at alpha.", call("done")])
    result = Coordinator(skills=[Alpha], client=client).run("x")
    assert result.stop_reason == "done" and result.iterations == 2
    assert "Reply with tool calls" in client.requests[1].messages[-1].text


def test_pipeline_classifies_runs_once_and_synthesises() -> None:
    def synthesise(request: ModelRequest) -> list[Any]:
        # the operators' findings come as the results of reading calls, not as user text
        calls = {c.id: c.name for m in request.messages for c in m.tool_calls}
        results = {calls[r.tool_call_id]: r for m in request.messages for r in m.tool_results}
        assert set(results) == {"get_operator_statuses", "get_notifications"}
        assert all(not m.text or "beta is slow" not in m.text for m in request.messages)
        notes = json.loads(results["get_notifications"].content)["notifications"]
        return [
            call(
                "produce_insight",
                notification_ids=[n["id"] for n in notes],
                correlation_type="symptomatic",
                summary="beta is slow",
                matched_observations=[notes[0]["observation"]],
                hypothesis_grounded=False,
                confidence="low",
            ),
            call("done", summary="beta alone is slow"),
        ]

    client = ScriptedClient([call("select_skills", skills=["beta", "nope"]), synthesise])
    result = Coordinator(
        skills=[Alpha, Beta],
        client=client,
        operator_client=operator_script("beta", gated=False),
        strategy="pipeline",
    ).run("why is beta slow?")
    assert result.strategy == "pipeline" and result.stop_reason == "done"
    assert result.iterations == 2 and result.summary == "beta alone is slow"
    assert list(result.operator_results) == ["beta"]
    assert result.insights[0].skills == ("beta",)
    assert [r.context["stage"] for r in client.requests] == ["classify", "synthesise"]


def test_run_on_the_class_and_the_async_twin_from_another_loop() -> None:
    client = ScriptedClient([call("done", summary="one")])
    assert Coordinator.run("x", skills=[Alpha], client=client).summary == "one"

    async def main() -> CoordinatorResult:
        other = ScriptedClient([call("done", summary="two")])
        return await Coordinator(skills=[Alpha]).arun("x", client=other)

    assert asyncio.run(main()).summary == "two"


def test_bad_options_are_refused_up_front() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        Coordinator(strategy="magic")
    with pytest.raises(TypeError, match="unknown coordinator option"):
        Coordinator(skills=[Alpha], client=ScriptedClient([])).run("x", colour="red")
    with pytest.raises(ValueError, match="deadline"):
        Coordinator(deadline=0)
    with pytest.raises(lensbook.LensbookError, match="has not been asked"):
        Coordinator().wait(timeout=1)


def test_without_a_key_the_coordinator_is_offline_and_its_operators_investigate_offline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    chain = coordinator_chain()
    assert [type(c) for c in chain.clients] == [OfflineCoordinator]
    assert [type(c) for c in coordinator_chain("offline").clients] == [OfflineCoordinator]
    result = Coordinator(skills=["runtime"]).run("routine check", deadline=60)
    assert result.client == "offline coordinator"
    assert result.operator_results["runtime"].client == OfflineInvestigator().name
    assert result.stop_reason == "done"


def test_offline_asked_for_stays_offline_for_the_operators_even_with_a_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-not-a-real-key")
    assert [type(c) for c in coordinator_chain("offline").clients] == [OfflineCoordinator]
    result = Coordinator(skills=["runtime"], client="offline").run("routine check", deadline=60)
    assert result.client == "offline coordinator" and result.stop_reason == "done"
    assert result.operator_results["runtime"].client == OfflineInvestigator().name
