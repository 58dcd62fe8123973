"""Which clients answer: the configured chain, read from a registry, described and checked.

    registry = load_registry(os.environ["LENSBOOK_CLIENT_REGISTRY"])   # JSON text or a file
    describe_chain(resolve_client("local", registry))   # local first, then the rest; no keys
    providers_report()          # a display object: each operator's chain and who answered last

The command line (``lensbook providers``, ``--client``, ``--client-registry``) and the scenario
runner use these, so every command reads a configuration the same way. Nothing here reaches a
network except `check_client`, which sends one tiny request. API keys are never shown.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lensbook._errors import ClientNotConfigured, LensbookError
from lensbook.clients.base import LLMClient, Message, ModelRequest, ToolSpec
from lensbook.clients.chain import ClientChain
from lensbook.clients.registry import clients_from_registry, get_provider, provider_names
from lensbook.clients.resolve import resolve_client
from lensbook.limits import MODEL_CALL_TIMEOUT

__all__ = [
    "REGISTRY_ENV",
    "ChainInfo",
    "CheckResult",
    "ClientInfo",
    "ProviderInfo",
    "ProvidersReport",
    "check_client",
    "check_clients",
    "describe_chain",
    "describe_client",
    "describe_providers",
    "load_registry",
    "providers_report",
]

#: where the command line finds a client registry when none is given: JSON text or a file path
REGISTRY_ENV = "LENSBOOK_CLIENT_REGISTRY"


# -- reading a configuration -------------------------------------------------------------------


def load_registry(value: str | None = None) -> dict[str, Any] | None:
    """A client registry from JSON text or a JSON file; `None` reads $LENSBOOK_CLIENT_REGISTRY.

    Returns None when nothing is configured. Raises `ClientNotConfigured` for a registry that
    cannot be read, naming where it came from.
    """
    source = "--client-registry"
    if value is None:
        value, source = os.environ.get(REGISTRY_ENV), f"${REGISTRY_ENV}"
    if value is None or not value.strip():
        return None
    text = value
    if not value.lstrip().startswith("{"):
        path = Path(value).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise ClientNotConfigured(f"{source}: cannot read {path}: {exc.strerror}") from None
        source = str(path)
    try:
        registry = json.loads(text)
    except ValueError as exc:
        raise ClientNotConfigured(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(registry, dict) or not isinstance(registry.get("clients"), list):
        raise ClientNotConfigured(f"{source}: a client registry is an object with a 'clients' list")
    return registry


# -- describing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientInfo:
    """One client as shown to a person: never its key."""

    name: str
    provider: str
    model: str
    base_url: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChainInfo:
    """A chain of clients, who uses it, and how it retries."""

    label: str
    clients: tuple[ClientInfo, ...]
    attempts: int = 1
    backoff: float = 0.0
    error: str | None = None

    @property
    def title(self) -> str:
        return f"client chain{f' of {self.label}' if self.label else ''}"

    def rows(self) -> list[tuple[str, ...]]:
        """(position, name, provider, model, base URL) of each client, primary first."""
        return [
            (str(i), c.name, c.provider, c.model or "-", c.base_url)
            for i, c in enumerate(self.clients, 1)
        ]

    @property
    def retries(self) -> str:
        """How it retries, or "" for one client tried once."""
        if len(self.clients) <= 1 and self.attempts <= 1:
            return ""
        return (
            f"{self.attempts} attempt(s) per client, backoff {self.backoff:g} s, "
            "then the next client"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "clients": [c.to_dict() for c in self.clients],
            "attempts": self.attempts,
            "backoff": self.backoff,
            "error": self.error,
        }


def describe_client(client: Any) -> ClientInfo:
    """What a client declares of itself: its `provider`, `model` and `base_url` (a client
    that runs in this process declares ``in_process``); a client declaring no provider shows
    its class name."""
    provider = str(getattr(client, "provider", "") or type(client).__name__)
    model = str(getattr(client, "model", "") or "")
    base_url = str(getattr(client, "base_url", "") or "")
    if not base_url:
        base_url = "in process" if getattr(client, "in_process", False) else "provider default"
    return ClientInfo(name=str(client.name), provider=provider, model=model, base_url=base_url)


def describe_chain(chain: ClientChain | LLMClient, label: str = "") -> ChainInfo:
    if not isinstance(chain, ClientChain):
        return ChainInfo(label=label, clients=(describe_client(chain),))
    return ChainInfo(
        label=label,
        clients=tuple(describe_client(c) for c in chain.clients),
        attempts=chain.attempts,
        backoff=chain.backoff,
    )


def registry_clients(registry: Mapping[str, Any]) -> list[ClientInfo]:
    """The registry's clients, primary first (building them reaches no network)."""
    return [describe_client(c) for c in clients_from_registry(registry)]


@dataclass(frozen=True)
class ProviderInfo:
    """A provider as it describes itself: what ``--client ID`` or ``"provider": ID`` builds.
    `key_set` says whether its key variable is set, never the key."""

    id: str
    description: str
    default_model: str = ""
    default_base_url: str = ""
    key_env: str = ""
    key_set: bool = False
    local: bool = False
    extra: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def row(self) -> tuple[str, ...]:
        """(id, description, what it needs: its server, its key, its extra)."""
        needs = [self.default_base_url]
        if self.key_env:
            needs.append(f"{self.key_env} {'set' if self.key_set else 'not set'}")
        if self.extra:
            needs.append(f'pip install "lensbook[{self.extra}]"')
        return (self.id, self.description, "; ".join(n for n in needs if n))


def describe_providers() -> list[ProviderInfo]:
    """Every known provider, read from its own metadata (loading its module, not its SDK's
    network); a provider that cannot be loaded says why."""
    infos: list[ProviderInfo] = []
    for name in provider_names():
        try:
            p = get_provider(name)
        except LensbookError as exc:
            infos.append(ProviderInfo(name, f"not usable: {exc}"))
            continue
        infos.append(
            ProviderInfo(
                id=name,
                description=p.description,
                default_model=p.default_model,
                default_base_url=p.default_base_url,
                key_env=p.key_env,
                key_set=bool(p.key_env and os.environ.get(p.key_env)),
                local=p.local,
                extra=p.extra,
            )
        )
    return infos


# -- checking ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckResult:
    """How one client answered a one-tool request."""

    name: str
    ok: bool
    tool_call: bool
    seconds: float
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_PING = ToolSpec(
    name="ping",
    description="Report that you can call tools.",
    input_schema={
        "type": "object",
        "properties": {"ok": {"type": "boolean", "description": "always true"}},
        "required": ["ok"],
    },
)


async def check_client(client: LLMClient, timeout: float = MODEL_CALL_TIMEOUT) -> CheckResult:
    """Send one small request offering one tool: does the client answer, and with a tool call?"""
    info = describe_client(client)
    if info.provider == "offline":
        return CheckResult(client.name, True, True, 0.0, detail="no model: the rules answer")
    request = ModelRequest(
        system="You check that tool calling works. Answer with a tool call only.",
        messages=(Message.user("Call the ping tool with ok set to true."),),
        tools=(_PING,),
        max_tokens=64,
    )
    started = time.perf_counter()
    try:
        turn = await asyncio.wait_for(client.complete(request), timeout)
    except asyncio.TimeoutError:
        return CheckResult(
            client.name,
            False,
            False,
            time.perf_counter() - started,
            detail=f"no answer in {timeout:g} s",
        )
    except LensbookError as exc:
        return CheckResult(
            client.name, False, False, time.perf_counter() - started, detail=str(exc)
        )
    finally:
        await _close(client)
    seconds = time.perf_counter() - started
    calls = turn.tool_calls
    if calls:
        detail = f"called {calls[0].name}"
    else:
        detail = "answered with text, no tool call: " + (turn.text[:80] or "(empty)")
    return CheckResult(
        client.name,
        True,
        bool(calls),
        seconds,
        input_tokens=turn.usage.input_tokens + turn.usage.cache_read_input_tokens,
        output_tokens=turn.usage.output_tokens,
        model=turn.model,
        detail=detail,
    )


async def check_clients(
    clients: Sequence[LLMClient], timeout: float = MODEL_CALL_TIMEOUT
) -> list[CheckResult]:
    """Every client checked at once (a slow one does not hold up the others)."""
    return list(await asyncio.gather(*(check_client(c, timeout) for c in clients)))


async def _close(client: LLMClient) -> None:
    aclose = getattr(client, "aclose", None)
    if aclose is not None:
        # closing is best effort; the answer is what matters
        with contextlib.suppress(Exception):
            await aclose()


# -- the report ----------------------------------------------------------------------------------


class ProvidersReport:
    """Chains, who answered last, and checks: a display object with text/plain and text/html."""

    def __init__(
        self,
        chains: Sequence[ChainInfo],
        answered: Mapping[str, str] | None = None,
        checks: Sequence[CheckResult] = (),
        note: str = "",
        providers: Sequence[ProviderInfo] | None = None,
    ) -> None:
        self.chains = list(chains)
        self.answered = dict(answered or {})
        self.checks = list(checks)
        self.note = note
        #: the providers a name could choose (None: every known one, read from its metadata)
        self.providers = list(describe_providers() if providers is None else providers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chains": [c.to_dict() for c in self.chains],
            "answered": self.answered,
            "checks": [c.to_dict() for c in self.checks],
            "note": self.note,
            "providers": [p.to_dict() for p in self.providers],
        }

    def text(self) -> str:
        lines: list[str] = []
        for chain in self.chains:
            lines.append(f"{chain.title}:")
            if chain.error:
                lines.append(f"  not usable: {chain.error}")
                continue
            rows = [(f"{row[0]}.", *row[1:]) for row in chain.rows()]
            lines.extend("  " + line for line in _columns(rows))
            if chain.retries:
                lines.append(f"  retries: {chain.retries}")
        if self.answered:
            lines.append("last answer:")
            rows = [(who, client) for who, client in self.answered.items()]
            lines.extend("  " + line for line in _columns(rows))
        if self.checks:
            lines.append("check (one request offering one tool):")
            rows = [_check_row(c) for c in self.checks]
            lines.extend("  " + line for line in _columns(rows))
            first = next((c.name for c in self.checks if c.ok and c.tool_call), None)
            lines.append(f"the chain would be answered by: {first or 'no client'}")
        if self.providers:
            lines.append(_PROVIDERS_TITLE + ":")
            lines.extend("  " + line for line in _columns([p.row() for p in self.providers]))
        if self.note:
            lines.append(self.note)
        return "\n".join(lines)

    def html(self) -> str:
        esc = html.escape
        parts: list[str] = ['<div class="lensbook-providers">']
        for chain in self.chains:
            parts.append(f"<div><b>{esc(chain.title)}</b></div>")
            if chain.error:
                parts.append(f"<div>not usable: {esc(chain.error)}</div>")
                continue
            head = ("#", "name", "provider", "model", "base URL")
            parts.append(_table(head, chain.rows()))
            if chain.retries:
                parts.append(f"<div><small>{esc(chain.retries)}</small></div>")
        if self.answered:
            parts.append("<div><b>last answer</b></div>")
            parts.append(_table(("operator", "answered by"), list(self.answered.items())))
        if self.checks:
            parts.append("<div><b>check</b> (one request offering one tool)</div>")
            parts.append(
                _table(
                    ("client", "result", "tool call", "seconds", "tokens in/out", "detail"),
                    [_check_row(c) for c in self.checks],
                )
            )
        if self.providers:
            parts.append(f"<div><b>{esc(_PROVIDERS_TITLE)}</b></div>")
            parts.append(
                _table(("provider", "what it is", "needs"), [p.row() for p in self.providers])
            )
        if self.note:
            parts.append(f"<div>{esc(self.note)}</div>")
        parts.append("</div>")
        return "".join(parts)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text(), "text/html": self.html()}

    def __repr__(self) -> str:
        return self.text()


_PROVIDERS_TITLE = 'providers (--client ID, or "provider": ID in a registry)'


def _check_row(check: CheckResult) -> tuple[str, ...]:
    return (
        check.name,
        "ok" if check.ok else "FAILED",
        "yes" if check.tool_call else "no",
        f"{check.seconds:.2f} s",
        f"{check.input_tokens}/{check.output_tokens}",
        check.detail,
    )


def _columns(rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = html.escape
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def providers_report(operators: Mapping[str, Any] | None = None) -> ProvidersReport:
    """Each started operator's client chain and the client that answered its last run.

    Operators with the same chain are shown together. With no operator started, the chain a
    run would use by default. It sends no request (``lensbook providers --check`` does).
    """
    if operators is None:
        from lensbook.operator.registry import operators as started

        operators = started()
    if not operators:
        try:
            chain = describe_chain(resolve_client())
        except LensbookError as exc:
            chain = ChainInfo(label="the default", clients=(), error=str(exc))
        return ProvidersReport(
            [ChainInfo("the default", chain.clients, chain.attempts, chain.backoff, chain.error)],
            note="no operator is started: this is the chain lensbook.start() would use",
        )
    groups: dict[tuple[Any, ...], list[str]] = {}
    infos: dict[tuple[Any, ...], ChainInfo] = {}
    answered: dict[str, str] = {}
    for name, op in operators.items():
        try:
            info = describe_chain(resolve_client(op.client, op.client_registry))
        except LensbookError as exc:
            info = ChainInfo(label="", clients=(), error=str(exc))
        key = (info.clients, info.attempts, info.backoff, info.error)
        groups.setdefault(key, []).append(name)
        infos[key] = info
        last = op.last_result
        answered[name] = (
            f"{last.client} (run {last.run_id}, {last.state}, {last.stop_reason})"
            if last is not None
            else "no run yet"
        )
    chains = [
        ChainInfo(
            ", ".join(names),
            infos[key].clients,
            infos[key].attempts,
            infos[key].backoff,
            infos[key].error,
        )
        for key, names in groups.items()
    ]
    return ProvidersReport(chains, answered)
