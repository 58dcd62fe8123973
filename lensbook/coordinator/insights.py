"""What a coordinator hands back: insights, tracked notifications, its result and status."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import Field

from lensbook.types import (
    CompletionResult,
    FrozenModel,
    Notification,
    TokenUsage,
    new_id,
    utcnow,
)

__all__ = [
    "Confidence",
    "CoordinatorResult",
    "CoordinatorStatus",
    "CoordinatorStopReason",
    "CorrelationType",
    "Insight",
    "NotificationStatus",
    "TrackedNotification",
]

CorrelationType = Literal["temporal", "causal", "symptomatic"]
Confidence = Literal["high", "medium", "low"]
NotificationStatus = Literal["unread", "acknowledged", "resolved"]
CoordinatorStopReason = Literal["done", "max_iterations", "deadline", "cancelled", "error"]

_CONFIDENCE_COLOURS = {"high": "#dc2626", "medium": "#d97706", "low": "#6b7280"}


class Insight(FrozenModel):
    """Notifications of several operators linked by one explanation.

    `correlation_type` says how they are linked: *temporal* (they happened together),
    *causal* (one explains the other by a known mechanism) or *symptomatic* (the same problem
    seen from two domains). `hypothesis_grounded` says whether the root-cause hypothesis rests on
    the evidence in the notifications, not only on their coincidence.
    """

    id: str = Field(default_factory=new_id)
    notification_ids: tuple[str, ...]
    #: the skills whose operators sent the linked notifications
    skills: tuple[str, ...] = ()
    correlation_type: CorrelationType
    summary: str
    matched_observations: tuple[str, ...] = ()
    hypothesis_grounded: bool = False
    root_cause_hypothesis: str | None = None
    confidence: Confidence
    created_at: datetime = Field(default_factory=utcnow)

    def __str__(self) -> str:
        lines = [
            f"[{self.confidence.upper()} confidence, {self.correlation_type}] {self.summary}",
            f"  links:       {', '.join(self.skills)} ({len(self.notification_ids)} notifications)",
        ]
        for obs in self.matched_observations:
            lines.append(f"  - {obs}")
        if self.root_cause_hypothesis:
            grounded = "grounded in the evidence" if self.hypothesis_grounded else "not grounded"
            lines.append(f"  root cause:  {self.root_cause_hypothesis} ({grounded})")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        esc = html.escape
        colour = _CONFIDENCE_COLOURS[self.confidence]
        items = "".join(f"<li>{esc(o)}</li>" for o in self.matched_observations)
        root = ""
        if self.root_cause_hypothesis:
            grounded = "grounded" if self.hypothesis_grounded else "not grounded in evidence"
            root = (
                f"<div><b>root cause</b> {esc(self.root_cause_hypothesis)} "
                f"<small>({grounded})</small></div>"
            )
        return (
            f'<div style="border-left:4px solid {colour};padding:4px 8px;margin:4px 0">'
            f'<div><b style="color:{colour}">{esc(self.confidence.upper())}</b> '
            f"<b>{esc(self.correlation_type)}</b>: {esc(self.summary)}</div>"
            f"<div><small>links {esc(', '.join(self.skills))}</small></div>"
            f'<ul style="margin:2px 0">{items}</ul>{root}</div>'
        )


class TrackedNotification(FrozenModel):
    """An operator's notification as the coordinator tracks it: its skill and its status."""

    notification: Notification
    skill: str
    status: NotificationStatus = "unread"
    reason: str = ""

    @property
    def id(self) -> str:
        return self.notification.id


class CoordinatorStatus(NamedTuple):
    """Where a coordinator is: running, notifications received, unread ones, iteration."""

    running: bool
    notification_count: int
    unread_count: int
    iteration: int


class CoordinatorResult(FrozenModel):
    """Everything one coordinator run produced: insights and each operator's result."""

    run_id: str
    context: dict[str, Any] = Field(default_factory=dict)
    strategy: Literal["agent", "pipeline"] = "agent"
    insights: tuple[Insight, ...] = ()
    #: skill id -> the result of its operator's (last) run
    operator_results: dict[str, CompletionResult] = Field(default_factory=dict)
    notifications: tuple[TrackedNotification, ...] = ()
    stop_reason: CoordinatorStopReason = "done"
    summary: str | None = None
    error: str | None = None
    iterations: int = 0
    usage: TokenUsage = TokenUsage()
    client: str = ""
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime = Field(default_factory=utcnow)

    @property
    def seconds(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()

    def __str__(self) -> str:
        ops = ", ".join(
            f"{skill}: {r.state} ({r.stop_reason}, {len(r.notifications)} notif.)"
            for skill, r in self.operator_results.items()
        )
        head = (
            f"coordinator ({self.strategy}): stopped by {self.stop_reason} after "
            f"{self.iterations} iteration(s), {self.seconds:.1f} s, {len(self.insights)} "
            f"insight(s), {len(self.notifications)} notification(s) [client: {self.client}]"
        )
        parts = [head, f"operators: {ops or 'none'}", *(str(i) for i in self.insights)]
        if self.summary:
            parts.append(f"summary: {self.summary}")
        if self.error:
            parts.append(f"error: {self.error}")
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        head = html.escape(str(self).splitlines()[0])
        body = "".join(i._repr_html_() for i in self.insights)
        extra = f"<div><i>{html.escape(self.summary)}</i></div>" if self.summary else ""
        if self.error:
            extra += f'<div style="color:#dc2626">error: {html.escape(self.error)}</div>'
        return f"<div><b>{head}</b></div>{body}{extra}"
