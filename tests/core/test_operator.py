"""The operator lifecycle through the public API, with ScriptedClient (no mocks, no network)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

import lensbook
from lensbook import Skill, events, probe
from lensbook.clients import ModelRequest, ScriptedClient, call

from ._skill import Toy


def snapshot_id(request: ModelRequest) -> str:
    """The id of the newest snapshot in the conversation the client was given."""
    for message in reversed(request.messages):
        for result in message.tool_results:
            try:
                value = json.loads(result.content)
            except ValueError:
                continue
            if isinstance(value, dict) and "captured_at" in value:
                return str(value["id"])
    raise AssertionError("no snapshot in the conversation")


def notify(request: ModelRequest, **extra: Any) -> list[Any]:
    args = {
        "anomaly_type": "toy_anomaly",
        "severity": "warning",
        "context": "ctx",
        "observation": "obs",
        "snapshot_ids": [snapshot_id(request)],
        **extra,
    }
    return [call("send_notification", **args)]


def full_script() -> list[Any]:
    return [
        call("take_snapshot"),
        notify,
        [call("set_state", state="warning", reason="toy is odd"), call("done", summary="odd")],
    ]


def collect(kinds: list[str] | None = None) -> tuple[list[events.Event], int]:
    seen: list[events.Event] = []
    return seen, events.subscribe(seen.append, kinds)


def test_run_returns_notifications_and_full_result() -> None:
    client = ScriptedClient(full_script())
    lensbook.start([Toy], client=client)
    notes = lensbook.run("toy", reason="check the toy")
    assert [n.anomaly_type for n in notes] == ["toy_anomaly"]
    result = notes.result
    assert result.state == "warning"
    assert result.stop_reason == "done"
    assert result.iterations == 3
    assert result.summary == "odd"
    assert notes[0].snapshot_ids == (result.snapshots[0].id,)
    assert notes[0].trace_id == result.run_id
    # the reason shortcut became the context, and reached the model
    assert '"reason": "check the toy"' in client.requests[0].messages[0].text
    # the snapshot was redacted before the model saw it
    assert "sk-ant-api03" not in client.requests[1].messages[-1].content[0].content  # type: ignore[union-attr]
    assert lensbook.get_operator("toy").status().state == "warning"


def test_run_without_started_operator_raises_lookup_error() -> None:
    with pytest.raises(lensbook.OperatorNotStarted) as info:
        lensbook.run("toy", reason="x")
    assert isinstance(info.value, LookupError)
    with pytest.raises(lensbook.OperatorNotStarted, match="no skill 'nope'"):
        lensbook.run("nope")


def test_run_accepts_skill_class_instance_and_operator() -> None:
    client = ScriptedClient([call("done")] * 3)
    (op,) = lensbook.start([Toy], client=client)
    assert lensbook.run(Toy).result.stop_reason == "done"
    assert lensbook.run(op.skill).result.stop_reason == "done"
    assert lensbook.run(op).result.stop_reason == "done"


def test_start_is_idempotent() -> None:
    first = lensbook.start([Toy], client=ScriptedClient([]))
    second = lensbook.start([Toy], client=ScriptedClient([]))
    assert first[0] is second[0]


def test_run_in_background_callbacks_and_wait() -> None:
    op = lensbook.Operator.start(skill=Toy, client=ScriptedClient(full_script()))
    got: list[Any] = []
    completed = threading.Event()
    threads: set[str] = set()

    def on_notification(n: lensbook.Notification) -> None:
        threads.add(threading.current_thread().name)
        got.append(n)

    def on_complete(r: lensbook.CompletionResult) -> None:
        got.append(r)
        completed.set()

    future = op.run_in_background(
        {"reason": "async"}, on_notification=on_notification, on_complete=on_complete
    )
    result = op.wait(timeout=10)
    assert future.result(timeout=10) == result
    assert completed.wait(5)
    assert isinstance(got[0], lensbook.Notification)
    assert got[-1] == result
    assert threads == {"lensbook-loop"}
    assert result.notifications == (got[0],)
    op.stop()


class Gated(Skill):
    """A skill whose probe holds its run until the test opens the gate."""

    id = "gated"
    title = "Gated skill"
    description = "A skill for tests"
    system_prompt = "You wait at a gate."

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.gate = threading.Event()

    def snapshot(self) -> dict[str, Any]:
        return {}

    @probe(budget=120)
    def hold(self) -> str:
        """Waits until the test opens the gate. Cost: up to 60 s of waiting."""
        self.entered.set()
        return "opened" if self.gate.wait(60) else "timed out"


def test_last_waits_for_a_script_run_in_the_background_and_outlives_stop() -> None:
    """`lensbook.last` sees a run however it was started (here a script's background run), as
    `%lens run --background` has it, with nothing but the operator reporting it."""
    skill = Gated()
    client = ScriptedClient([call("gated_hold"), call("done", summary="through the gate")])
    (op,) = lensbook.start([skill], client=client, sample_interval=None, history=False)
    future = op.run_in_background(reason="wait for me")
    assert skill.entered.wait(60)
    assert lensbook.last("gated") is None  # nothing finished yet
    with pytest.raises(TimeoutError):
        lensbook.last("gated", wait=True, timeout=0.2)  # it waits for the held run
    skill.gate.set()
    notes = lensbook.last("gated", wait=True, timeout=60)
    assert notes is not None and notes.result.summary == "through the gate"
    assert notes.result.run_id == future.result(timeout=10).run_id
    lensbook.stop()
    after = lensbook.last("gated")
    assert after is not None and after.result.run_id == notes.result.run_id


def test_last_wait_does_not_raise_another_operators_old_failure() -> None:
    """A run that failed long ago (a queued run stopped with its operator) is not this call's
    to raise: `last(wait=True)` waits only for runs still going or queued."""
    skill = Gated()
    client = ScriptedClient([call("gated_hold"), call("done", summary="x")] * 2)
    (op,) = lensbook.start([skill], client=client, sample_interval=None, history=False)
    op.run_in_background(reason="first")
    assert skill.entered.wait(60)
    op.run_in_background(reason="second, queued")
    op.stop()  # the queued run fails with OperatorStopped and no result
    skill.gate.set()
    lensbook.start([Toy], client=ScriptedClient(full_script()), sample_interval=None, history=False)
    try:
        done = lensbook.run("toy", reason="later, fine")
        notes = lensbook.last(wait=True, timeout=30)
        assert notes is not None and notes.result.run_id == done.result.run_id
    finally:
        lensbook.stop()


def test_run_async_is_a_deprecated_alias_of_run_in_background() -> None:
    op = lensbook.Operator.start(skill=Toy, client=ScriptedClient(full_script()))
    with pytest.warns(DeprecationWarning, match="run_in_background"):
        assert op.run_async({"reason": "old name"}) is None
    assert op.wait(timeout=10).state == "warning"
    op.stop()


def test_operator_level_callbacks_and_start_run() -> None:
    seen: list[Any] = []
    done = threading.Event()
    op = lensbook.Operator.start(
        skill=Toy,
        client=ScriptedClient(full_script()),
        start_run=True,
        context={"reason": "at start"},
        on_notification=seen.append,
        on_complete=lambda r: (seen.append(r), done.set()),
    )
    assert done.wait(10)
    assert isinstance(seen[0], lensbook.Notification)
    assert seen[1].state == "warning"
    op.stop()


def test_concurrent_runs_queue_fifo_with_own_results() -> None:
    order: list[str] = []

    def script_for(tag: str) -> list[Any]:
        return [lambda r, t=tag: (order.append(t), call("done", summary=t))[1]]

    client = ScriptedClient(script_for("first") + script_for("second") + script_for("third"))
    op = lensbook.Operator.start(skill=Toy, client=client)
    results: dict[int, lensbook.CompletionResult] = {}

    def worker(i: int) -> None:
        results[i] = op.run({"n": i}).result

    queued = threading.Semaphore(0)
    token = events.subscribe(lambda _event: queued.release(), kinds=("run_queued",))
    threads = []
    try:
        for i in range(3):
            t = threading.Thread(target=worker, args=(i,))
            t.start()
            threads.append(t)
            assert queued.acquire(timeout=10)  # queued before the next one asks: a fixed order
    finally:
        events.unsubscribe(token)
    for t in threads:
        t.join(10)
    assert order == ["first", "second", "third"]
    assert [results[i].summary for i in range(3)] == ["first", "second", "third"]
    assert len({r.run_id for r in results.values()}) == 3
    op.stop()


def test_status_while_running_then_stop_mid_run_keeps_findings() -> None:
    client = ScriptedClient([call("take_snapshot"), notify, call("wait", seconds=30)])
    op = lensbook.Operator.start(skill=Toy, client=client, max_wait_seconds=60)
    op.run_in_background({"reason": "long"})
    deadline = time.monotonic() + 10
    while not op.current_action.startswith("waiting 30") and time.monotonic() < deadline:
        time.sleep(0.01)
    status = op.status()
    assert status.running and status.iteration == 3 and status.state == "healthy"
    assert op.current_action == "waiting 30 s"
    started = time.monotonic()
    op.stop()
    assert time.monotonic() - started < 10  # stop does not wait out the 30 s wait
    result = op.last_result
    assert result is not None and result.stop_reason == "stopped"
    assert len(result.notifications) == 1
    assert not op.status().running


def test_stop_fails_queued_runs_clearly() -> None:
    client = ScriptedClient([call("wait", seconds=30)])
    op = lensbook.Operator.start(skill=Toy, client=client, max_wait_seconds=60)
    op.run_in_background({"n": 1})
    errors: list[BaseException] = []

    def second() -> None:
        try:
            op.run({"n": 2})
        except lensbook.OperatorStopped as exc:
            errors.append(exc)

    t = threading.Thread(target=second)
    t.start()
    deadline = time.monotonic() + 5
    while op.status().queued < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    op.stop()
    t.join(5)
    assert not t.is_alive()
    assert len(errors) == 1


def test_per_call_options_are_honoured() -> None:
    default_client = ScriptedClient([call("done", summary="default")])
    other = ScriptedClient([call("take_snapshot")] * 5, name="other")
    op = lensbook.Operator.start(skill=Toy, client=default_client, max_iterations=25)
    result = op.run({"reason": "x"}, client=other, max_iterations=2).result
    assert result.client == "other"
    assert result.stop_reason == "max_iterations"
    assert result.iterations == 2
    assert default_client.requests == []  # the operator's own client was not used
    # timeout: the run stops and returns what it has
    slow = ScriptedClient([call("take_snapshot"), call("wait", seconds=20)])
    timed = op.run({"reason": "x"}, client=slow, timeout=0.5).result
    assert timed.stop_reason == "timeout"
    assert len(timed.snapshots) == 1
    with pytest.raises(TypeError, match="unknown run option"):
        op.run({}, max_iteration=3)
    op.stop()


def test_max_iterations_ends_with_a_summary_turn_without_tools() -> None:
    client = ScriptedClient(
        [call("take_snapshot"), call("think", thought="hmm"), "I looked twice; nothing conclusive."]
    )
    op = lensbook.Operator.start(skill=Toy, client=client, max_iterations=2)
    result = op.run({"reason": "limit"}).result
    assert result.stop_reason == "max_iterations"
    assert result.summary == "I looked twice; nothing conclusive."
    last = client.requests[-1]
    assert last.purpose == "summarize" and last.tools == ()
    assert "iteration limit (2)" in last.messages[-1].text
    op.stop()


def test_tool_errors_go_back_to_the_model_and_the_run_continues() -> None:
    client = ScriptedClient(
        [
            [call("no_such_tool"), call("toy_echo", text=5), call("toy_echo", text="hi", bogus=1)],
            [call("toy_explode"), call("toy_slow"), call("toy_big")],
            [
                call(
                    "send_notification",
                    anomaly_type="x",
                    severity="info",
                    context="c",
                    observation="o",
                    snapshot_ids=["deadbeefdeadbeef"],
                )
            ],
            call("toy_echo", arguments_are="ignored"),
            call("done"),
        ]
    )
    op = lensbook.Operator.start(skill=Toy, client=client)
    result = op.run({"reason": "errors"}).result
    assert result.stop_reason == "done"
    first = client.requests[1].messages[-1].tool_results
    assert all(r.is_error for r in first)
    assert "unknown tool 'no_such_tool'" in first[0].content
    assert "text: Input should be a valid string" in first[1].content
    assert "bogus: Extra inputs are not permitted" in first[2].content
    second = client.requests[2].messages[-1].tool_results
    # the exception's message is the process's text: delimited as data
    assert second[0].is_error and "RuntimeError: ⟦probe exploded on purpose⟧" in second[0].content
    assert second[1].is_error and "time budget of 0.2 s" in second[1].content
    assert not second[2].is_error and second[2].content.endswith("chars]")
    assert len(second[2].content) < 200
    third = client.requests[3].messages[-1].tool_results[0]
    assert third.is_error and "must cite at least one snapshot" in third.content
    assert result.notifications == ()
    op.stop()


def test_repetition_guard_nudges_on_the_third_identical_call() -> None:
    client = ScriptedClient([call("toy_echo", text="a")] * 3 + [call("done")])
    op = lensbook.Operator.start(skill=Toy, client=client)
    seen, token = collect(["tool_result"])
    op.run({})
    events.unsubscribe(token)
    results = [e.data for e in seen if e.data["name"] == "toy_echo"]
    assert [r["is_error"] for r in results] == [False, False, True]
    assert "same arguments 3 times" in results[2]["content"]
    op.stop()


def test_text_only_turns_get_a_nudge_not_a_crash() -> None:
    client = ScriptedClient(["I think all is fine.", call("done")])
    op = lensbook.Operator.start(skill=Toy, client=client)
    assert op.run({}).result.stop_reason == "done"
    assert "Reply with tool calls" in client.requests[1].messages[-1].text
    op.stop()


def test_message_answers_from_the_conversation_without_changing_it() -> None:
    client = ScriptedClient([*full_script(), "The toy looked odd in snapshot 1."])
    op = lensbook.Operator.start(skill=Toy, client=client)
    op.run({"reason": "x"})
    before = list(op._conversation)
    answer = op.message("what did you see?")
    assert answer.response == "The toy looked odd in snapshot 1."
    assert answer.skill == "toy" and answer.state == "warning" and answer.iteration == 3
    request = client.requests[-1]
    assert request.purpose == "message" and request.tools == ()
    assert "what did you see?" in request.messages[-1].text
    assert op._conversation == before
    op.stop()


def test_message_with_no_run_yet_uses_a_fresh_snapshot() -> None:
    client = ScriptedClient(["nothing yet"])
    op = lensbook.Operator.start(skill=Toy, client=client)
    assert op.message("hello").response == "nothing yet"
    assert "Current snapshot" in client.requests[0].messages[-1].text
    op.stop()


def test_the_offline_investigator_answers_a_message_before_any_run_from_a_fresh_snapshot() -> None:
    from lensbook.clients.offline import OfflineInvestigator

    op = lensbook.Operator.start(skill=Toy, client=OfflineInvestigator())
    try:
        answer = op.message("how is it?").response
    finally:
        op.stop()
    assert "rules engine" in answer
    figures = answer.split("Latest snapshot: ", 1)[1]
    assert figures.startswith("counter=1")  # the snapshot the question carried


def test_compaction_keeps_snapshot_ids_and_resets_the_count() -> None:
    ids: list[str] = []

    def remember(request: ModelRequest) -> Any:
        ids.append(snapshot_id(request))
        return call("toy_echo", text="first look")

    def notify_remembered(request: ModelRequest) -> Any:
        return call(
            "send_notification",
            anomaly_type="toy_anomaly",
            severity="warning",
            context="ctx",
            observation="obs",
            snapshot_ids=ids,
        )

    script: list[Any] = [call("take_snapshot"), remember]
    script += [call("toy_echo", text=f"filler {i}", times=50) for i in range(4)]
    script += ["SUMMARY: looked at the toy", notify_remembered, call("done")]
    client = ScriptedClient(script)
    op = lensbook.Operator.start(
        skill=Toy, client=client, compaction_max_tokens=1800, compaction_keep_last=2
    )
    seen, token = collect(["compaction"])
    result = op.run({}).result
    events.unsubscribe(token)
    assert seen, "no compaction happened"
    assert seen[0].data["tokens_after"] < seen[0].data["tokens_before"]
    compact = [r for r in client.requests if r.purpose == "compact"]
    assert len(compact) >= 1
    after = client.requests[client.requests.index(compact[0]) + 1]
    first = after.messages[0].text
    assert "SUMMARY: looked at the toy" in first
    assert result.snapshots[0].id in first  # ids survive verbatim
    # tool pairs never split: every result's call is in the same conversation
    ids = {c.id for m in after.messages for c in m.tool_calls}
    assert all(r.tool_call_id in ids for m in after.messages for r in m.tool_results)
    assert result.notifications[0].snapshot_ids == (result.snapshots[0].id,)
    op.stop()


def test_crashed_operator_is_restarted_and_reports_the_crash() -> None:
    client = ScriptedClient(
        [
            call("take_snapshot"),
            notify,
            KeyError("a bug in a client"),
            call("done", summary="after restart"),
        ]
    )
    op = lensbook.Operator.start(skill=Toy, client=client)
    seen, token = collect(["operator_crashed", "operator_restarted"])
    with pytest.raises(lensbook.OperatorCrashed) as info:
        op.run({})
    assert len(info.value.notifications) == 1
    # what the crashed run found is the operator's last result (and `lensbook.last()`'s)
    assert info.value.result is not None and op.last_result is info.value.result
    assert [e.kind for e in seen] == ["operator_crashed", "operator_restarted"]
    assert "KeyError" in seen[0].data["error"]
    # the restarted operator serves the next run
    assert op.run({}).result.summary == "after restart"
    assert op.crashes == 1
    events.unsubscribe(token)
    op.stop()


def test_llm_error_carries_notifications_and_operator_survives() -> None:
    client = ScriptedClient(
        [
            call("take_snapshot"),
            notify,
            lensbook.ProviderError("bad request", retryable=False),
            call("done", summary="next run works"),
        ]
    )
    op = lensbook.Operator.start(skill=Toy, client=client)
    with pytest.raises(lensbook.LLMError) as info:
        op.run({})
    assert len(info.value.notifications) == 1
    assert info.value.result is not None and info.value.result.stop_reason == "error"
    assert op.run({}).result.summary == "next run works"
    op.stop()


def test_retryable_errors_are_retried_with_backoff() -> None:
    flaky = lensbook.ProviderError("overloaded", retryable=True, status=529)
    client = ScriptedClient([flaky, flaky, call("done")])
    registry = {"clients": [client], "retry": {"backoff": 0.01}}
    op = lensbook.Operator.start(skill=Toy, client_registry=registry)
    seen, token = collect(["model_retry"])
    assert op.run({}).result.stop_reason == "done"
    events.unsubscribe(token)
    assert [e.data["attempt"] for e in seen] == [1, 2]
    op.stop()


def test_fallback_to_the_next_client_of_the_registry() -> None:
    down = ScriptedClient([lensbook.ProviderError("down", retryable=False)], name="primary")
    backup = ScriptedClient([call("done")], name="backup")
    op = lensbook.Operator.start(
        skill=Toy, client_registry={"primary": "primary", "clients": [backup, down]}
    )
    result = op.run({}).result
    assert result.client == "backup"
    assert len(down.requests) == 1
    op.stop()


def test_sync_api_from_the_lens_loop_raises_instead_of_deadlocking() -> None:
    caught: list[BaseException] = []
    op = lensbook.Operator.start(skill=Toy, client=ScriptedClient(full_script()))

    def on_notification(n: lensbook.Notification) -> None:
        try:
            op.status()  # fine: no loop round trip
            op.run({})
        except lensbook.WrongThread as exc:
            caught.append(exc)

    op.run_in_background({}, on_notification=on_notification)
    op.wait(timeout=10)
    assert len(caught) == 1 and isinstance(caught[0], RuntimeError)
    op.stop()


def test_async_twins_work_from_another_event_loop() -> None:
    client = ScriptedClient([*full_script(), "answer"])
    lensbook.start([Toy], client=client)

    async def main() -> tuple[int, str]:
        notes = await lensbook.arun("toy", reason="async caller")
        reply = await lensbook.get_operator("toy").amessage("and?")
        return len(notes), reply.response

    assert asyncio.run(main()) == (1, "answer")


def test_events_trace_a_run_in_order() -> None:
    seen, token = collect()
    lensbook.start([Toy], client=ScriptedClient(full_script()))
    notes = lensbook.run("toy")
    events.unsubscribe(token)
    kinds = [e.kind for e in seen if e.run_id == notes.result.run_id]
    for kind in (
        "run_queued",
        "run_started",
        "iteration",
        "model_request",
        "model_response",
        "tool_call",
        "tool_result",
        "snapshot",
        "notification",
        "state_changed",
        "run_completed",
    ):
        assert kind in kinds
    assert kinds.index("run_started") < kinds.index("notification") < kinds.index("run_completed")
    assert [e.seq for e in seen] == sorted(e.seq for e in seen)


def test_a_subscriber_that_raises_does_not_break_the_run() -> None:
    def bad(event: events.Event) -> None:
        raise ValueError("bad subscriber")

    token = events.subscribe(bad)
    try:
        lensbook.start([Toy], client=ScriptedClient(full_script()))
        assert len(lensbook.run("toy")) == 1
    finally:
        events.unsubscribe(token)


def test_lens_loop_is_lazy_and_stops() -> None:
    from lensbook import _loop

    lensbook.stop()
    assert not _loop.is_running()
    lensbook.start([Toy], client=ScriptedClient([]))
    assert _loop.is_running()
    assert any(t.name == "lensbook-loop" and t.daemon for t in threading.enumerate())
    lensbook.stop()
    assert not _loop.is_running()
    assert not any(t.name == "lensbook-loop" for t in threading.enumerate())


def test_cancel_run_ends_the_active_run_only() -> None:
    client = ScriptedClient(
        [call("take_snapshot"), call("wait", seconds=30), call("done", summary="second run")]
    )
    op = lensbook.Operator.start(skill=Toy, client=client, max_wait_seconds=60)
    op.run_in_background({"n": 1})
    deadline = time.monotonic() + 10
    while not op.current_action.startswith("waiting") and time.monotonic() < deadline:
        time.sleep(0.01)
    op.cancel_run()
    first = op.wait(timeout=10)
    assert first.stop_reason == "stopped" and len(first.snapshots) == 1
    assert first.max_iterations == 25
    assert op.started
    assert op.run({"n": 2}).result.summary == "second run"
    op.stop()


def test_offline_by_name_is_the_offline_investigator_even_with_a_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lensbook.clients.resolve import resolve_client

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-not-used")
    assert resolve_client("offline").clients[0].name == "offline investigator"
