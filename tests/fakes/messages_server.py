"""A scripted Anthropic Messages API on 127.0.0.1, for driving the real SDK in tests.

    with MessagesServer([tool_uses(tool_use("take_snapshot")), overloaded()]) as server:
        client = AnthropicClient(base_url=server.url, api_key="test-key")
        ...
        server.requests[0].body["tools"]   # every request, parsed, with its headers

Each POST /v1/messages takes the next item of the script:

- a dict: a message body (see `message`), answered with 200;
- a `Reply`: any status and JSON body (see `error`, `rate_limited`, `overloaded`, ...);
- a `Delay`: wait, then answer (for provoking client timeouts);
- a callable `(request, server) -> item`, called when the request arrives, so a reply can use
  what the client sent (a snapshot id from a tool result, say).

When the script is empty the server answers with `then` (for "fails forever"), or else with a 400
naming the exhausted script, so a test never hangs on it. The server is bounded: it shuts itself
down after `lifetime` seconds and answers at most `max_requests` requests; delays end early when
it stops. It listens on the loopback interface only and never makes a request of its own.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeAlias

__all__ = [
    "Delay",
    "MessagesServer",
    "RecordedRequest",
    "Reply",
    "api_error",
    "bad_request",
    "error",
    "message",
    "overloaded",
    "rate_limited",
    "server_pool",
    "text",
    "tool_use",
    "tool_uses",
]

_ids = itertools.count(1)


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, JSON body and extra headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` (longer than the client's timeout, to provoke one), then answer `reply`."""

    seconds: float
    reply: Item | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        """The tool_result blocks of the last (user) message."""
        last = (self.body.get("messages") or [{}])[-1]
        content = last.get("content")
        if not isinstance(content, list):
            return []
        return [b for b in content if b.get("type") == "tool_result"]

    def result_of(self, tool_name: str) -> Any:
        """The content of the latest tool_result answering a tool_use of `tool_name`, or None.

        Tool results that are JSON (as lensbook renders them) come back parsed.
        """
        names: dict[str, str] = {}
        found: Any = None
        for msg in self.body.get("messages") or []:
            content = msg.get("content")
            if not isinstance(content, list):
                continue
            for block in content:
                if block.get("type") == "tool_use":
                    names[block["id"]] = block["name"]
                elif (
                    block.get("type") == "tool_result"
                    and names.get(block.get("tool_use_id")) == tool_name
                ):
                    found = block.get("content")
        if isinstance(found, str):
            try:
                return json.loads(found)
            except ValueError:
                return found
        return found


Item: TypeAlias = (
    "dict[str, Any] | Reply | Delay | Callable[[RecordedRequest, MessagesServer], Any]"
)


# -- script items --------------------------------------------------------------------------------


def text(value: str) -> dict[str, Any]:
    """A text content block."""
    return {"type": "text", "text": value}


def tool_use(name: str, /, *, id: str | None = None, **arguments: Any) -> dict[str, Any]:
    """A tool_use content block with a fresh `toolu_...` id."""
    return {
        "type": "tool_use",
        "id": id or f"toolu_fake_{next(_ids):04d}",
        "name": name,
        "input": arguments,
    }


def tool_uses(*blocks: dict[str, Any], **usage: Any) -> dict[str, Any]:
    """A message whose content is the given blocks, stopping for tool use (usage: see `message`)."""
    return message(*blocks, stop_reason="tool_use", **usage)


def message(
    *blocks: dict[str, Any],
    stop_reason: str | None = None,
    model: str | None = None,
    input_tokens: int = 100,
    output_tokens: int = 20,
    cache_read_input_tokens: int | None = 0,
    cache_creation_input_tokens: int | None = 0,
) -> dict[str, Any]:
    """A Messages API message body. `model` defaults to the model the request named."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    body: dict[str, Any] = {
        "id": f"msg_fake_{next(_ids):04d}",
        "type": "message",
        "role": "assistant",
        "content": list(blocks),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read_input_tokens,
            "cache_creation_input_tokens": cache_creation_input_tokens,
        },
    }
    if model is not None:
        body["model"] = model
    return body


def error(status: int, kind: str, text: str) -> Reply:
    """An error as the API sends it: `{"type": "error", "error": {"type": kind, ...}}`."""
    return Reply(
        status,
        {"type": "error", "error": {"type": kind, "message": text}},
        {"request-id": f"req_fake_{next(_ids):04d}"},
    )


def rate_limited() -> Reply:
    return error(429, "rate_limit_error", "Number of request tokens has exceeded your rate limit")


def api_error() -> Reply:
    return error(500, "api_error", "Internal server error")


def overloaded() -> Reply:
    return error(529, "overloaded_error", "Overloaded")


def bad_request(text: str = "messages: field required") -> Reply:
    return error(400, "invalid_request_error", text)


# -- the server ----------------------------------------------------------------------------------


class MessagesServer:
    """A local HTTP server answering POST /v1/messages from a script; records every request."""

    def __init__(
        self,
        script: Iterable[Item] = (),
        *,
        then: Item | None = None,
        lifetime: float = 120.0,
        max_requests: int = 500,
    ) -> None:
        self.script: list[Item] = list(script)
        self.then = then
        self.lifetime = lifetime
        self.max_requests = max_requests
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Timer | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def remaining(self) -> int:
        """Script items not yet used."""
        with self._lock:
            return len(self.script)

    def push(self, *items: Item) -> None:
        """Append items to the script."""
        with self._lock:
            self.script.extend(items)

    def bodies(self) -> list[Any]:
        """The parsed JSON bodies of the requests so far."""
        with self._lock:
            return [r.body for r in self.requests]

    def start(self) -> MessagesServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-messages-server",
            daemon=True,
        )
        self._thread.start()
        # bounded: a server a test forgot to stop goes away by itself
        self._watchdog = threading.Timer(self.lifetime, self.stop)
        self._watchdog.daemon = True
        self._watchdog.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.cancel()
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def __enter__(self) -> MessagesServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- called by the handler threads --------------------------------------------------------

    def _answer(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            count = len(self.requests)
            item: Any = self.script.pop(0) if self.script else self.then
        if count > self.max_requests:
            return bad_request(f"fake server: more than {self.max_requests} requests")
        if item is None:
            return bad_request(f"fake server: script exhausted at request {count}")
        return self._resolve(item, request)

    def _resolve(self, item: Any, request: RecordedRequest) -> Reply:
        for _ in range(10):  # a callable may return another callable; not forever
            if isinstance(item, Delay):
                self._stopping.wait(item.seconds)
                item = item.reply if item.reply is not None else message(text("late"))
                continue
            if isinstance(item, Reply):
                return item
            if isinstance(item, dict):
                body = dict(item)
                body.setdefault("model", request.body.get("model", "claude-fake"))
                return Reply(200, body, {"request-id": f"req_fake_{next(_ids):04d}"})
            if callable(item):
                item = item(request, self)
                continue
            break
        raise TypeError(f"not a script item: {item!r}")


class _Handler(BaseHTTPRequestHandler):
    fake: MessagesServer
    # HTTP/1.0: one request per connection, so no idle keep-alive sockets outlive a test
    protocol_version = "HTTP/1.0"

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body: Any = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in self.headers.items()}
        request = RecordedRequest("POST", self.path, headers, body)
        if self.path.split("?")[0] != "/v1/messages":
            self._send(error(404, "not_found_error", f"no route {self.path}"))
            return
        if not isinstance(body, dict):
            self._send(bad_request("body is not a JSON object"))
            return
        try:
            reply = self.fake._answer(request)
        except Exception as exc:  # a broken script item: tell the client, keep serving
            reply = error(500, "api_error", f"fake server script failed: {exc!r}")
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        payload = json.dumps(reply.body).encode()
        try:
            self.send_response(reply.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a provoked timeout); nothing to tell it

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows the recorded requests when a test fails."""


@contextmanager
def server_pool() -> Iterator[Callable[..., MessagesServer]]:
    """A starter of servers, `start(script, then=..., ...)`; every one is stopped on exit.

    A test module turns it into its fixture::

        @pytest.fixture
        def servers() -> Iterator[Callable[..., MessagesServer]]:
            with server_pool() as start:
                yield start
    """
    started: list[MessagesServer] = []

    def start(script: Iterable[Item] = (), **options: Any) -> MessagesServer:
        server = MessagesServer(script, **options).start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
