"""Request handling that subscribes a callback per request and never unsubscribes it.

The `callback_leak` fault: an event emitter at module level keeps every handler registered with
`on()`; each request registers a lambda that closes over its `RequestContext`, so every context
(and its buffers) stays alive for as long as the emitter does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lensbook.scenarios._harness import Workers, start_paced

__all__ = ["BUS", "EventEmitter", "RequestContext", "clear", "handle_request", "start_traffic"]


class EventEmitter:
    """A minimal publish/subscribe hub."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Callable[[Any], None]]] = {}

    def on(self, event: str, handler: Callable[[Any], None]) -> None:
        self._handlers.setdefault(event, []).append(handler)

    def off(self, event: str, handler: Callable[[Any], None]) -> None:
        self._handlers.get(event, []).remove(handler)

    def emit(self, event: str, payload: Any) -> None:
        for handler in list(self._handlers.get(event, [])):
            handler(payload)


BUS = EventEmitter()


class RequestContext:
    """Per-request state: headers and a scratch buffer."""

    def __init__(self, request_id: int) -> None:
        self.request_id = request_id
        self.headers = {"x-request-id": str(request_id), "accept": "application/json"}
        self.buffer = bytearray(256)
        self.settings: dict[str, Any] = {}

    def refresh(self, settings: Any) -> None:
        self.settings = dict(settings)


def handle_request(request_id: int) -> int:
    ctx = RequestContext(request_id)
    BUS.on("config_changed", lambda settings: ctx.refresh(settings))  # never removed
    return ctx.request_id


def start_traffic(per_second: int = 3000) -> Workers:
    """Handle requests from a thread until its `stop` is set (or its `cleanup()` runs)."""
    return start_paced("request-handler", handle_request, per_second)


def clear() -> None:
    BUS._handlers.clear()
