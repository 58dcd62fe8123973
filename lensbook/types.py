"""The values lensbook hands back: notifications, snapshots, results and statuses."""

from __future__ import annotations

import html
import secrets
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CompletionResult",
    "FrozenModel",
    "HealthState",
    "MessageResponse",
    "Notification",
    "NotificationList",
    "Severity",
    "Snapshot",
    "Status",
    "StopReason",
    "TokenUsage",
    "new_id",
    "utcnow",
]

HealthState = Literal["healthy", "observing", "warning", "critical"]
Severity = Literal["info", "warning", "critical"]
StopReason = Literal["done", "max_iterations", "timeout", "stopped", "interrupted", "error"]

_SEVERITY_COLOURS = {"info": "#2563eb", "warning": "#d97706", "critical": "#dc2626"}


def new_id() -> str:
    """A 16-hex-digit id, as snapshots and notifications carry."""
    return secrets.token_hex(8)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class FrozenModel(BaseModel):
    """The base of lensbook's result types: immutable, unknown fields refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (datetimes as ISO 8601 strings)."""
        return self.model_dump(mode="json")


class Snapshot(FrozenModel):
    """A skill's `snapshot()` taken during a run, kept so notifications can cite it."""

    id: str = Field(default_factory=new_id)
    captured_at: datetime = Field(default_factory=utcnow)
    data: dict[str, Any]


class Notification(FrozenModel):
    """A finding an operator reported, grounded in at least one snapshot."""

    id: str = Field(default_factory=new_id)
    operator: str
    anomaly_type: str
    severity: Severity
    context: str
    observation: str
    hypothesis: str | None = None
    snapshot_ids: tuple[str, ...]
    detected_at: datetime = Field(default_factory=utcnow)
    trace_id: str

    def __str__(self) -> str:
        lines = [f"[{self.severity.upper()}] {self.operator}: {self.anomaly_type}"]
        lines.append(f"  context:     {self.context}")
        lines.append(f"  observation: {self.observation}")
        if self.hypothesis:
            lines.append(f"  hypothesis:  {self.hypothesis}")
        lines.append(f"  evidence:    snapshots {', '.join(self.snapshot_ids)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = _SEVERITY_COLOURS[self.severity]
        esc = html.escape
        hyp = f"<div><b>hypothesis</b> {esc(self.hypothesis)}</div>" if self.hypothesis else ""
        return (
            f'<div style="border-left:4px solid {colour};padding:4px 8px;margin:4px 0">'
            f'<div><b style="color:{colour}">{esc(self.severity.upper())}</b> '
            f"<b>{esc(self.operator)}</b>: {esc(self.anomaly_type)}</div>"
            f"<div><b>context</b> {esc(self.context)}</div>"
            f"<div><b>observation</b> {esc(self.observation)}</div>{hyp}"
            f"<div><small>snapshots {esc(', '.join(self.snapshot_ids))}</small></div></div>"
        )


class TokenUsage(FrozenModel):
    """Tokens the provider reported (zero where the client has no such figures)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens + other.cache_read_input_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens
            + other.cache_creation_input_tokens,
        )


class CompletionResult(FrozenModel):
    """Everything one run produced, in chronological order."""

    operator: str
    run_id: str
    state: HealthState
    notifications: tuple[Notification, ...] = ()
    snapshots: tuple[Snapshot, ...] = ()
    iterations: int = 0
    max_iterations: int = 0
    stop_reason: StopReason = "done"
    summary: str | None = None
    error: str | None = None
    usage: TokenUsage = TokenUsage()
    client: str = ""
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime = Field(default_factory=utcnow)

    def __str__(self) -> str:
        head = (
            f"{self.operator}: {self.state} after {self.iterations} iteration(s), "
            f"stopped by {self.stop_reason}, {len(self.notifications)} notification(s) "
            f"[client: {self.client}]"
        )
        parts = [head, *(str(n) for n in self.notifications)]
        if self.summary:
            parts.append(f"summary: {self.summary}")
        if self.error:
            parts.append(f"error: {self.error}")
        return "\n".join(parts)


class Status(FrozenModel):
    """Where an operator is: its skill, health state, iteration and whether a run is active."""

    operator: str
    state: HealthState
    iteration: int
    running: bool
    queued: int = 0


class MessageResponse(FrozenModel):
    """An operator's answer to `message(prompt)`, from its own conversation."""

    skill: str
    state: HealthState
    iteration: int
    response: str


class NotificationList(list[Notification]):
    """The notifications of a run (a plain list), with the full `CompletionResult` as `.result`."""

    def __init__(self, result: CompletionResult) -> None:
        super().__init__(result.notifications)
        self.result = result

    def __repr__(self) -> str:
        return str(self.result)

    def _repr_html_(self) -> str:
        head = html.escape(str(self.result).splitlines()[0])
        return f"<div><b>{head}</b></div>" + "".join(n._repr_html_() for n in self)
