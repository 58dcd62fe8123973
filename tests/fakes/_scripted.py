"""What the scripted API servers share: the script, the lifecycle and the HTTP handler.

A subclass names its route, how it records a request, how its API spells errors and how a dict
script item becomes a reply; `messages_server` and `chat_server` are the two.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Generic, TypeVar

__all__ = ["Delay", "Raw", "RecordedBase", "Reply", "ScriptedServer", "pool", "undecodable"]


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, JSON body and extra headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Raw:
    """An HTTP answer sent byte for byte: a broken body a real provider or proxy can send.

    `length` is the content-length announced; when it is more than `body` holds, the server
    sends what it has and closes the connection (a 200 response cut short).
    """

    status: int
    body: bytes
    content_type: str = "application/json"
    length: int | None = None


def undecodable(good: bytes) -> dict[str, Raw]:
    """The 200 answers no client can decode, by name: `good` (a valid JSON body) cut short,
    an HTML page, invalid UTF-8, and a JSON body that is not an answer (a bare string)."""
    return {
        "cut-short": Raw(200, good[: len(good) // 2], length=len(good)),
        "html": Raw(
            200,
            b"<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>",
            content_type="text/html",
        ),
        "invalid-utf8": Raw(200, b'{"id": "\xff\xfe\xfa", ' + b"\xff" * 8 + b"}"),
        "not-json": Raw(200, b"this is not json {"),
    }


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` (longer than the client's timeout, to provoke one), then answer `reply`."""

    seconds: float
    reply: Any = None  # a script item of the server's kind, or None for a default answer


@dataclass(frozen=True)
class RecordedBase:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @staticmethod
    def _parsed(found: Any) -> Any:
        """A tool result's content, parsed when it is JSON (as lensbook renders them)."""
        if isinstance(found, str):
            try:
                return json.loads(found)
            except ValueError:
                return found
        return found


R = TypeVar("R", bound=RecordedBase)
S = TypeVar("S", bound="ScriptedServer[Any]")


class ScriptedServer(Generic[R]):
    """A local HTTP server answering POSTs from a script; records every request."""

    request_type: ClassVar[type[RecordedBase]]
    thread_name: ClassVar[str]

    def __init__(
        self,
        script: Iterable[Any] = (),
        *,
        then: Any = None,
        lifetime: float = 120.0,
        max_requests: int = 500,
    ) -> None:
        self.script: list[Any] = list(script)
        self.then = then
        self.lifetime = lifetime
        self.max_requests = max_requests
        self.requests: list[R] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Timer | None = None

    # -- what a subclass says -------------------------------------------------------------------

    def _routes(self, path: str) -> bool:
        """Whether `path` (without its query) is the API's route."""
        raise NotImplementedError

    def _not_found(self, path: str) -> Reply:
        raise NotImplementedError

    def _bad_request(self, text: str) -> Reply:
        raise NotImplementedError

    def _script_failed(self, exc: Exception) -> Reply:
        raise NotImplementedError

    def _late(self) -> Any:
        """What a `Delay` without a reply answers."""
        raise NotImplementedError

    def _ok(self, item: dict[str, Any], request: R) -> Reply:
        """The 200 answer of a dict script item."""
        raise NotImplementedError

    # -- the server -----------------------------------------------------------------------------

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

    def push(self, *items: Any) -> None:
        """Append items to the script."""
        with self._lock:
            self.script.extend(items)

    def start(self: S) -> S:
        handler = type("Handler", (_Handler,), {"fake": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=self.thread_name,
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

    def __enter__(self: S) -> S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- called by the handler threads --------------------------------------------------------

    def _handle(self, path: str, headers: dict[str, str], body: Any) -> Reply | Raw:
        request: Any = self.request_type("POST", path, headers, body)
        if not self._routes(path.split("?")[0]):
            return self._not_found(path)
        if not isinstance(body, dict):
            return self._bad_request("body is not a JSON object")
        try:
            return self._answer(request)
        except Exception as exc:  # a broken script item: tell the client, keep serving
            return self._script_failed(exc)

    def _answer(self, request: R) -> Reply | Raw:
        with self._lock:
            self.requests.append(request)
            count = len(self.requests)
            item: Any = self.script.pop(0) if self.script else self.then
        if count > self.max_requests:
            return self._bad_request(f"fake server: more than {self.max_requests} requests")
        if item is None:
            return self._bad_request(f"fake server: script exhausted at request {count}")
        return self._resolve(item, request)

    def _resolve(self, item: Any, request: R) -> Reply | Raw:
        for _ in range(10):  # a callable may return another callable; not forever
            if isinstance(item, Delay):
                self._stopping.wait(item.seconds)
                item = item.reply if item.reply is not None else self._late()
                continue
            if isinstance(item, (Reply, Raw)):
                return item
            if isinstance(item, dict):
                return self._ok(item, request)
            if callable(item):
                item = item(request, self)
                continue
            break
        raise TypeError(f"not a script item: {item!r}")


class _Handler(BaseHTTPRequestHandler):
    fake: ScriptedServer[Any]
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
        self._send(self.fake._handle(self.path, headers, body))

    def _send(self, reply: Reply | Raw) -> None:
        if isinstance(reply, Raw):
            self._send_raw(reply)
            return
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

    def _send_raw(self, reply: Raw) -> None:
        try:
            self.send_response(reply.status)
            self.send_header("content-type", reply.content_type)
            self.send_header("content-length", str(reply.length or len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
        # HTTP/1.0: the connection closes after this, so a short body arrives cut short
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: pytest shows the recorded requests when a test fails."""


@contextmanager
def pool(server_type: Callable[..., S]) -> Iterator[Callable[..., S]]:
    """A starter of `server_type` servers, `start(script, ...)`; every one is stopped on exit."""
    started: list[S] = []

    def start(script: Iterable[Any] = (), **options: Any) -> S:
        server = server_type(script, **options).start()
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
