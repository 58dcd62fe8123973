"""What the adapters that wrap an async SDK share: the SDK client of the running event loop,
the time one call may take, how the SDK's errors become `ProviderError`, the one rule for
answers that cannot be decoded, and how a tool call is written where the wire takes only text.

The Anthropic and OpenAI SDKs raise the same family of errors under the same names (rate
limit, status, timeout, connection, and a base class), so one mapping serves both: rate limits,
5xx (Anthropic's 529 "overloaded" included), 408 and 409, timeouts and lost connections are
retryable; other statuses, malformed answers and missing credentials are not.

An SDK parses a 200 answer only after the call returned: a body cut short, an HTML page from a
proxy, invalid UTF-8 or JSON that is not an object escape as `ValueError` (`JSONDecodeError`,
`UnicodeDecodeError`), or come back as a bare `str` instead of the API's type. Such an answer
says nothing about the request, only about the path to the provider, so it is a *retryable*
`ProviderError`: the chain tries again and then falls back to its next client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any, Generic, Protocol, TypeVar

from typing_extensions import TypedDict, Unpack

from lensbook._errors import ProviderError
from lensbook.clients.base import ToolCall
from lensbook.limits import MODEL_CALL_TIMEOUT

__all__ = [
    "UNDECODABLE",
    "PerLoopClient",
    "SDKClient",
    "SDKOptions",
    "call_as_text",
    "call_timeout",
    "compact_json",
    "describe_status",
    "expect_answer",
    "no_answer",
    "sdk_errors",
    "undecodable",
    "wire_safe",
]

#: what an SDK raises while decoding a body it received (both are ValueError subclasses)
UNDECODABLE: tuple[type[Exception], ...] = (ValueError,)


class _Closable(Protocol):
    async def close(self) -> None: ...


T = TypeVar("T", bound=_Closable)


class PerLoopClient(Generic[T]):
    """An SDK client made by `factory` on first use, one per event loop.

    httpx's connection pool belongs to the loop that opened it, and the lens loop is replaced
    after `lensbook.stop()`; a client made on another loop is dropped, not reused.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._client: T | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> T:
        """The SDK client of the running loop, created on first use."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = self._factory()
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the SDK client's connections (call on the loop that used the client)."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.close()


class SDKOptions(TypedDict, total=False):
    """The options every SDK adapter takes, as `client_registry` passes them."""

    model: str
    #: default: the SDK reads its provider's key variable
    api_key: str | None
    base_url: str | None
    #: seconds per request (default: the run's model timeout, see `lensbook.limits`)
    timeout: float | None
    #: overrides the request's
    max_tokens: int | None
    name: str


class SDKClient:
    """What an adapter over an async SDK holds: its options, one SDK client per event loop,
    and closing it. A subclass makes the SDK client (`_new_sdk`) and asks it (`complete`)."""

    provider = ""
    #: the model and name a client of this kind has when none is given
    default_model = ""
    default_name = ""

    def __init__(self, **options: Unpack[SDKOptions]) -> None:
        # typed for callers; a registry's options are checked here, as a signature would
        unknown = set(options) - set(SDKOptions.__annotations__)
        if unknown:
            raise TypeError(f"unexpected option(s): {', '.join(sorted(unknown))}")
        self.name = options.get("name") or self.default_name
        self.model = options.get("model") or self.default_model
        self.api_key = options.get("api_key")
        self.base_url = options.get("base_url")
        self.timeout = options.get("timeout")
        self.max_tokens = options.get("max_tokens")
        self._sdk: PerLoopClient[Any] = PerLoopClient(self._new_sdk)

    def __repr__(self) -> str:
        where = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"{type(self).__name__}(name={self.name!r}, model={self.model!r}{where})"

    async def aclose(self) -> None:
        """Close the SDK client's connections (call on the loop that used the client)."""
        await self._sdk.aclose()

    def _new_sdk(self) -> Any:
        raise NotImplementedError

    def _sdk_options(self) -> dict[str, Any]:
        """The SDK client's constructor options every SDK shares."""
        return {
            "api_key": self.api_key,
            "base_url": self.base_url,
            "timeout": call_timeout(self.timeout, None),
            # lensbook's ClientChain retries with backoff and then falls back to the next
            # client; SDK retries underneath would multiply attempts and hide failures.
            "max_retries": 0,
        }


def call_timeout(own: float | None, request: Any) -> float:
    """Seconds one call may take: the client's own `timeout` option if it has one, else the
    request's (the run's model timeout), else `MODEL_CALL_TIMEOUT`."""
    if own is not None:
        return own
    asked = getattr(request, "timeout", None)
    return float(asked) if asked is not None else MODEL_CALL_TIMEOUT


def no_answer(client: str, seconds: float) -> ProviderError:
    """The retryable error of a call that got no answer within its time limit."""
    return ProviderError(
        f"{client}: no answer within {seconds:g} s", retryable=True, timed_out=True
    )


def undecodable(client: str, detail: object) -> ProviderError:
    """The retryable error of an answer that could not be decoded."""
    text = str(detail)
    return ProviderError(f"{client}: undecodable answer: {text[:200]}", retryable=True)


def expect_answer(client: str, response: Any, answer_type: type[Any]) -> None:
    """Raise `undecodable` unless the SDK gave back an object of the API's answer type."""
    if not isinstance(response, answer_type):
        shown = response[:80] if isinstance(response, str) else type(response).__name__
        raise undecodable(client, f"not a {answer_type.__name__}: {shown!r}")


@contextlib.contextmanager
def sdk_errors(
    sdk: Any, base_error: type[Exception], client: str, seconds: float, where: str
) -> Iterator[None]:
    """Every failure of one SDK call, raised as `ProviderError` (see the module).

    `sdk` is the SDK's module (`anthropic`, `openai`), `base_error` its root exception class,
    `seconds` the call's time limit and `where` the server, for a failed connection.
    """
    try:
        yield
    except sdk.RateLimitError as exc:
        raise ProviderError(describe_status(exc), retryable=True, status=exc.status_code) from exc
    except sdk.APIStatusError as exc:
        retryable = exc.status_code >= 500 or exc.status_code in (408, 409)
        raise ProviderError(
            describe_status(exc), retryable=retryable, status=exc.status_code
        ) from exc
    except sdk.APITimeoutError as exc:
        raise no_answer(client, seconds) from exc
    except sdk.APIConnectionError as exc:
        raise ProviderError(
            f"{client}: connection to {where} failed: {exc}", retryable=True
        ) from exc
    except base_error as exc:
        # malformed answers (APIResponseValidationError) and credential errors
        raise ProviderError(f"{client}: {type(exc).__name__}: {exc}") from exc
    except TypeError as exc:
        # an SDK raises TypeError when it finds no credentials at all
        raise ProviderError(f"{client}: {exc}") from exc
    except UNDECODABLE as exc:
        raise undecodable(client, exc) from exc


def describe_status(exc: Any) -> str:
    """`429 rate_limit_exceeded: Rate limit reached (request req_...)`, from the error body."""
    # read from the body, not from attributes that only recent SDK versions have
    body = exc.body
    error: Any = body.get("error", body) if isinstance(body, dict) else None
    if isinstance(error, str):
        error = {"message": error}
    if not isinstance(error, dict):
        error = {}
    kind = error.get("code") or error.get("type") or type(exc).__name__
    detail = error.get("message") or exc.message
    # the request id is what the provider's support asks for
    request_id = getattr(exc, "request_id", None)
    where = f" (request {request_id})" if request_id else ""
    return f"{exc.status_code} {kind}: {detail}{where}"


def compact_json(value: Any) -> str:
    """JSON without spaces, anything unknown as its str (tool arguments on the wire)."""
    return json.dumps(value, default=str, separators=(",", ":"))


def wire_safe(value: Any) -> Any:
    """`value` (a request's messages) with every string made encodable as UTF-8.

    A model's JSON may carry a lone surrogate escape (``"\\ud800"``, valid JSON), which
    decodes to a str that no UTF-8 request body can hold; echoed back in the history (the
    model's own tool call, or its text), it would make every later call of the run fail
    before it is sent. Such characters are replaced with "?"; the rest is returned as is.
    """
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")
        return value
    if isinstance(value, dict):
        return {wire_safe(k): wire_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [wire_safe(v) for v in value]
    return value


def call_as_text(call: ToolCall) -> str:
    """A tool call where the wire cannot carry one (in a user turn), kept as what it said."""
    return f"[tool call {call.name} {compact_json(call.arguments)}]"
