"""A scripted OpenAI-compatible chat completions API on 127.0.0.1, for driving the real SDK.

    with ChatServer([completion(tool_call("take_snapshot")), rate_limited()]) as server:
        client = OpenAIClient(base_url=server.base_url, model="qwen2.5:7b")
        ...
        server.requests[0].body["tools"]   # every request, parsed, with its headers

It speaks the wire format Ollama, vLLM and OpenAI share. Each POST .../chat/completions takes the
next item of the script:

- a dict: a chat completion body (see `completion`), answered with 200;
- a `Reply`: any status and JSON body (see `error`, `rate_limited`, `server_error`, ...);
- a `Delay`: wait, then answer (for provoking client timeouts);
- a callable `(request, server) -> item`, called when the request arrives, so a reply can use
  what the client sent (a snapshot id from a tool result, say).

When the script is empty the server answers with `then` (for "fails forever"), or else with a 400
naming the exhausted script, so a test never hangs on it. The server is bounded: it shuts itself
down after `lifetime` seconds and answers at most `max_requests` requests; delays end early when
it stops. It listens on the loopback interface only and never makes a request of its own. It can
be driven from a child process too (a test's `lensbook eval`), since it is plain HTTP.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeAlias

from tests.fakes.messages_server import Delay, Reply

__all__ = [
    "ChatRequest",
    "ChatServer",
    "Delay",
    "Reply",
    "bad_request",
    "completion",
    "error",
    "rate_limited",
    "server_error",
    "server_pool",
    "text_reply",
    "tool_call",
]

_ids = itertools.count(1)

Item: TypeAlias = "dict[str, Any] | Reply | Delay | Callable[[ChatRequest, ChatServer], Any]"


@dataclass(frozen=True)
class ChatRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def messages(self) -> list[dict[str, Any]]:
        found = self.body.get("messages") if isinstance(self.body, dict) else None
        return list(found or [])

    @property
    def tool_messages(self) -> list[dict[str, Any]]:
        """The `tool` messages after the last assistant message (this turn's results)."""
        tail: list[dict[str, Any]] = []
        for msg in reversed(self.messages):
            if msg.get("role") == "assistant":
                break
            if msg.get("role") == "tool":
                tail.append(msg)
        return list(reversed(tail))

    def result_of(self, tool_name: str) -> Any:
        """The content of the latest tool message answering a call of `tool_name`, or None.

        Tool results that are JSON (as lensbook renders them) come back parsed.
        """
        names: dict[str, str] = {}
        found: Any = None
        for msg in self.messages:
            for call in msg.get("tool_calls") or []:
                names[call["id"]] = call["function"]["name"]
            if msg.get("role") == "tool" and names.get(msg.get("tool_call_id", "")) == tool_name:
                found = msg.get("content")
        if isinstance(found, str):
            try:
                return json.loads(found)
            except ValueError:
                return found
        return found


# -- script items --------------------------------------------------------------------------------


def tool_call(
    name: str, /, *, id: str | None = None, arguments: str | None = None, **kwargs: Any
) -> dict[str, Any]:
    """A function tool call; `arguments` is the raw string sent (malformed JSON, say)."""
    raw = arguments if arguments is not None else json.dumps(kwargs)
    return {
        "id": id if id is not None else f"call_fake_{next(_ids):04d}",
        "type": "function",
        "function": {"name": name, "arguments": raw},
    }


def completion(
    *calls: dict[str, Any],
    content: str | None = None,
    finish_reason: str | None = None,
    model: str | None = None,
    prompt_tokens: int = 100,
    completion_tokens: int = 20,
    cached_tokens: int | None = None,
) -> dict[str, Any]:
    """A chat completion body. `model` defaults to the model the request named."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = list(calls)
    usage: dict[str, Any] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    if cached_tokens is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached_tokens}
    body: dict[str, Any] = {
        "id": f"chatcmpl-fake-{next(_ids):04d}",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if calls else "stop"),
            }
        ],
        "usage": usage,
    }
    if model is not None:
        body["model"] = model
    return body


def text_reply(value: str, **usage: Any) -> dict[str, Any]:
    """A completion with text only, no tool call (what small local models often send)."""
    return completion(content=value, **usage)


def error(status: int, kind: str, text: str, code: str | None = None) -> Reply:
    """An error as the API sends it: `{"error": {"message": ..., "type": ..., "code": ...}}`."""
    return Reply(
        status,
        {"error": {"message": text, "type": kind, "param": None, "code": code}},
        {"x-request-id": f"req_fake_{next(_ids):04d}"},
    )


def rate_limited() -> Reply:
    return error(429, "requests", "Rate limit reached for requests", "rate_limit_exceeded")


def server_error() -> Reply:
    return error(500, "server_error", "The server had an error while processing your request")


def bad_request(text: str = "messages: field required") -> Reply:
    return error(400, "invalid_request_error", text)


# -- the server ----------------------------------------------------------------------------------


class ChatServer:
    """A local HTTP server answering POST /v1/chat/completions from a script."""

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
        self.requests: list[ChatRequest] = []
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
    def base_url(self) -> str:
        """What an OpenAI-compatible client is given (the SDK appends /chat/completions)."""
        return f"{self.url}/v1"

    @property
    def remaining(self) -> int:
        with self._lock:
            return len(self.script)

    def push(self, *items: Item) -> None:
        with self._lock:
            self.script.extend(items)

    def start(self) -> ChatServer:
        handler = type("Handler", (_Handler,), {"fake": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-chat-server",
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

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- called by the handler threads --------------------------------------------------------

    def _answer(self, request: ChatRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            count = len(self.requests)
            item: Any = self.script.pop(0) if self.script else self.then
        if count > self.max_requests:
            return bad_request(f"fake server: more than {self.max_requests} requests")
        if item is None:
            return bad_request(f"fake server: script exhausted at request {count}")
        return self._resolve(item, request)

    def _resolve(self, item: Any, request: ChatRequest) -> Reply:
        for _ in range(10):  # a callable may return another callable; not forever
            if isinstance(item, Delay):
                self._stopping.wait(item.seconds)
                item = item.reply if item.reply is not None else text_reply("late")
                continue
            if isinstance(item, Reply):
                return item
            if isinstance(item, dict):
                body = dict(item)
                body.setdefault("model", request.body.get("model", "fake-model"))
                return Reply(200, body, {"x-request-id": f"req_fake_{next(_ids):04d}"})
            if callable(item):
                item = item(request, self)
                continue
            break
        raise TypeError(f"not a script item: {item!r}")


class _Handler(BaseHTTPRequestHandler):
    fake: ChatServer
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
        request = ChatRequest("POST", self.path, headers, body)
        if not self.path.split("?")[0].endswith("/chat/completions"):
            self._send(error(404, "invalid_request_error", f"no route {self.path}"))
            return
        if not isinstance(body, dict):
            self._send(bad_request("body is not a JSON object"))
            return
        try:
            reply = self.fake._answer(request)
        except Exception as exc:  # a broken script item: tell the client, keep serving
            reply = error(500, "server_error", f"fake server script failed: {exc!r}")
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
def server_pool() -> Iterator[Callable[..., ChatServer]]:
    """A starter of servers, `start(script, then=..., ...)`; every one is stopped on exit."""
    started: list[ChatServer] = []

    def start(script: Iterable[Item] = (), **options: Any) -> ChatServer:
        server = ChatServer(script, **options).start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
