"""ClientChain with the real SDK: retries, timeouts and fallback against local Messages servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import lensbook
from lensbook import LLMError
from lensbook.events import Event
from lensbook.types import CompletionResult
from tests.fakes.messages_server import (
    Delay,
    MessagesServer,
    RecordedRequest,
    Reply,
    api_error,
    bad_request,
    error,
    overloaded,
    rate_limited,
    server_pool,
    tool_use,
    tool_uses,
)

Servers = Callable[..., MessagesServer]


@pytest.fixture
def servers() -> Iterator[Servers]:
    """Starts scripted Messages API servers on 127.0.0.1; all are stopped after the test."""
    with server_pool() as start:
        yield start


DONE = tool_uses(tool_use("done", summary="all quiet"))


def _registry(
    *named: tuple[str, MessagesServer], attempts: int = 3, timeout: float = 5.0
) -> dict[str, Any]:
    return {
        "primary": named[0][0],
        "clients": [
            {
                "name": name,
                "provider": "anthropic",
                "options": {
                    "base_url": server.url,
                    "api_key": f"{name}-key",
                    "model": "claude-haiku-4-5",
                    "timeout": timeout,
                },
            }
            for name, server in named
        ],
        "retry": {"attempts": attempts, "backoff": 0.01},
    }


def _run(registry: dict[str, Any]) -> CompletionResult:
    op = lensbook.Operator.start(skill="runtime", client_registry=registry)
    return op.run(reason="memory keeps growing").result


def _kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


@pytest.mark.parametrize(
    "failure", [rate_limited(), api_error(), overloaded()], ids=lambda r: str(r.status)
)
def test_retryable_error_is_retried_on_the_same_client(
    servers: Servers, chain_events: list[Event], failure: Reply
) -> None:
    server = servers([failure, DONE])

    result = _run(_registry(("claude", server)))

    assert result.stop_reason == "done"
    assert result.summary == "all quiet"
    assert result.client == "claude"
    assert len(server.requests) == 2
    assert server.requests[0].body == server.requests[1].body  # the same request, resent
    assert _kinds(chain_events) == ["model_retry"]
    retry = chain_events[0].data
    assert retry["client"] == "claude"
    assert retry["attempt"] == 1
    assert retry["delay"] == pytest.approx(0.01)
    assert str(failure.status) in retry["error"]


def test_timeout_is_retried_then_falls_back(servers: Servers, chain_events: list[Event]) -> None:
    slow = servers([Delay(5.0), Delay(5.0)])
    backup = servers([DONE])

    result = _run(_registry(("claude", slow), ("backup", backup), attempts=2, timeout=0.3))

    assert result.stop_reason == "done"
    assert result.client == "backup"
    assert len(slow.requests) == 2
    assert len(backup.requests) == 1
    assert _kinds(chain_events) == ["model_retry", "client_fallback"]
    assert "no answer within 0.3 s" in chain_events[0].data["error"]
    assert chain_events[1].data["client"] == "backup"


def test_overloaded_primary_falls_back_to_the_secondary(
    servers: Servers, chain_events: list[Event]
) -> None:
    primary = servers(then=overloaded())
    secondary = servers([DONE])

    result = _run(_registry(("claude", primary), ("secondary", secondary), attempts=3))

    assert result.stop_reason == "done"
    assert result.client == "secondary"
    assert len(primary.requests) == 3
    assert len(secondary.requests) == 1
    # the secondary got the very request the primary could not answer
    assert secondary.requests[0].body == primary.requests[-1].body
    assert _kinds(chain_events) == ["model_retry", "model_retry", "client_fallback"]
    fallback = chain_events[-1]
    assert fallback.data["client"] == "secondary"
    assert "claude attempt 3" in fallback.data["after"]
    assert "529" in fallback.data["after"]
    assert fallback.run_id == result.run_id


def _notify(request: RecordedRequest, _server: MessagesServer) -> dict[str, Any]:
    snapshot = request.result_of("take_snapshot")
    return tool_uses(
        tool_use(
            "send_notification",
            anomaly_type="rss_growth",
            severity="critical",
            context="asked about memory",
            observation=f"RSS {snapshot['data']['rss_mb']} MB",
            snapshot_ids=[snapshot["id"]],
        )
    )


def test_exhausting_every_client_raises_llm_error_with_the_notifications(
    servers: Servers, chain_events: list[Event]
) -> None:
    primary = servers([tool_uses(tool_use("take_snapshot")), _notify], then=overloaded())
    backup = servers(then=api_error())
    registry = _registry(("claude", primary), ("backup", backup), attempts=2)
    op = lensbook.Operator.start(skill="runtime", client_registry=registry)

    with pytest.raises(LLMError) as caught:
        op.run(reason="memory keeps growing")

    failure = caught.value
    assert "claude attempt 2" in str(failure)
    assert "backup attempt 2" in str(failure)
    assert len(failure.notifications) == 1
    assert failure.notifications[0].severity == "critical"
    assert failure.result is not None
    assert failure.result.stop_reason == "error"
    assert failure.result.notifications == tuple(failure.notifications)
    (snapshot,) = failure.result.snapshots
    assert failure.notifications[0].snapshot_ids == (snapshot.id,)
    assert len(primary.requests) == 2 + 2
    assert len(backup.requests) == 2
    assert _kinds(chain_events) == ["model_retry", "client_fallback", "model_retry"]


@pytest.mark.parametrize(
    "refusal",
    [
        bad_request("messages.0.content: field required"),
        error(401, "authentication_error", "invalid x-api-key"),
        error(404, "not_found_error", "model: claude-haiku-4-5"),
    ],
    ids=lambda r: str(r.status),
)
def test_client_error_is_not_retried_and_moves_to_the_next_client(
    servers: Servers, chain_events: list[Event], refusal: Reply
) -> None:
    primary = servers(then=refusal)
    backup = servers([DONE])

    result = _run(_registry(("claude", primary), ("backup", backup), attempts=3))

    assert result.stop_reason == "done"
    assert result.client == "backup"
    assert len(primary.requests) == 1
    assert len(backup.requests) == 1
    assert _kinds(chain_events) == ["client_fallback"]
    assert refusal.body["error"]["type"] in chain_events[0].data["after"]
