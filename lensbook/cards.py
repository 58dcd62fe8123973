"""An operator as a card shows it, folded from its events: the notebook's widgets and the
terminal's live status lines both render this one model.

`CardModel.apply` folds one event of the operator in (`CARD_EVENTS` are the kinds that change a
card; a card that waits for a queued run ignores every other run's events), `finish` sets the
exact final state from a run's result, and `text`/`html` render it. It imports neither IPython,
ipywidgets nor rich, so every front end can use it and it is testable on its own.
"""

from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING

from lensbook.events import Event, EventKind
from lensbook.limits import MAX_ITERATIONS
from lensbook.types import CompletionResult

if TYPE_CHECKING:
    from lensbook import Operator

__all__ = [
    "BAR_STYLES",
    "CARD_EVENTS",
    "SEVERITY_COLOURS",
    "STATE_COLOURS",
    "STATE_STYLES",
    "CardModel",
    "RunProgress",
    "badge",
    "elapsed",
    "seconds_text",
]

#: the one palette of cards, views and coordinator models (Tailwind's 600 shades)
GREEN, BLUE, AMBER, RED, GREY = "#16a34a", "#2563eb", "#d97706", "#dc2626", "#6b7280"

STATE_COLOURS = {
    "healthy": GREEN,
    "observing": BLUE,
    "warning": AMBER,
    "critical": RED,
}
#: the same states on a terminal (rich styles, `lensbook.terminal`)
STATE_STYLES = {
    "healthy": "green",
    "observing": "blue",
    "warning": "yellow",
    "critical": "bold red",
}
SEVERITY_COLOURS = {"info": BLUE, "warning": AMBER, "critical": RED}

#: progress bar style by how the run ended
BAR_STYLES = {
    "done": "success",
    "max_iterations": "success",
    "stopped": "warning",
    "interrupted": "warning",
    "timeout": "warning",
    "error": "danger",
    "crashed": "danger",
}

#: what changes an operator card (and a terminal status line)
CARD_EVENTS: frozenset[EventKind] = frozenset(
    {
        "run_queued",
        "run_started",
        "iteration",
        "tool_call",
        "tool_result",
        "state_changed",
        "notification",
        "error",
        "run_completed",
        "operator_started",
        "operator_stopped",
        "operator_crashed",
    }
)
_esc = html.escape


def elapsed(
    started: float | None, finished: float | None, now: float | None = None
) -> float | None:
    """Seconds from `started` to `finished` (or to now while running); None before a start."""
    if started is None:
        return None
    end = finished if finished is not None else (now or time.time())
    return max(0.0, end - started)


def badge(text: str, colour: str) -> str:
    return (
        f'<span style="background:{colour};color:#fff;border-radius:9px;padding:1px 8px;'
        f'font-size:0.85em;font-weight:600">{_esc(text)}</span>'
    )


def seconds_text(value: float) -> str:
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes} min {seconds:02d} s"


class RunProgress:
    """What a view shows of any run, an operator's or the coordinator's: which run, whether it
    is going, how far (iteration), what it does now, its client, when it started and ended (and
    how long it took or has been going), and how it ended."""

    def __init__(self, max_iterations: int, action: str) -> None:
        self.run_id = ""
        self.running = False
        self.iteration = 0
        self.max_iterations = max_iterations
        self.action = action
        self.client = ""
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.stop_reason: str | None = None
        self.error: str | None = None
        self.summary: str | None = None

    def elapsed(self, now: float | None = None) -> float | None:
        return elapsed(self.started_at, self.finished_at, now)

    def ending_html(self) -> str:
        """The run's error, and its summary once it ended, as HTML lines (empty: neither)."""
        extra = ""
        if self.error:
            extra += f'<div style="color:#dc2626">error: {_esc(self.error)}</div>'
        if self.summary and not self.running:
            extra += f'<div style="color:#374151"><i>{_esc(self.summary)}</i></div>'
        return extra


class CardModel(RunProgress):
    """One operator as a card shows it: health, running or idle, iteration, action, elapsed."""

    def __init__(
        self, operator: str, title: str = "", max_iterations: int = MAX_ITERATIONS
    ) -> None:
        super().__init__(max_iterations, action="idle")
        self.operator = operator
        self.title = title or operator
        self.state = "healthy"
        self.started = True
        self.queued = 0
        self.notifications = 0
        #: the run this card waits for (set by `queue`): until it starts the card shows it as
        #: queued, and it never shows another run's events
        self.awaiting: str | None = None
        self.waiting = False

    @classmethod
    def of(cls, op: Operator) -> CardModel:
        """The card of an operator as it is now (its last result, or its live status)."""
        model = cls(op.name, op.skill.title or op.skill.id, int(op.defaults["max_iterations"]))
        model.started = op.started
        if op.last_result is not None:
            model.finish(op.last_result)
        status = op.status()
        model.state, model.queued = status.state, status.queued
        if status.running:
            model.running, model.iteration = True, status.iteration
            model.stop_reason, model.action = None, op.current_action
            model.started_at = time.time()
        return model

    # -- events ---------------------------------------------------------------------------

    def apply(self, event: Event) -> bool:
        """Fold one event of this operator in; True when it ends a run (flush it exactly)."""
        kind, data = event.kind, event.data
        if self.awaiting is not None and event.run_id and event.run_id != self.awaiting:
            return False  # another run of the operator: the one in progress, or queued later
        if kind == "run_queued":
            self.queued = int(data.get("queued", self.queued + 1))
        elif kind == "run_started":
            self.waiting = False
            self.running, self.started = True, True
            self.run_id = event.run_id
            self.queued = max(0, self.queued - 1)
            self.iteration = 0
            self.max_iterations = int(data.get("max_iterations", self.max_iterations))
            self.state = str(data.get("state", self.state))
            self.client = str(data.get("client", ""))
            self.started_at, self.finished_at = event.at, None
            self.stop_reason = self.error = self.summary = None
            self.notifications = 0
            self.action = "starting"
        elif kind == "iteration":
            self.iteration = int(data.get("iteration", self.iteration))
            self.max_iterations = int(data.get("max_iterations", self.max_iterations))
            self.action = "waiting for the model"
        elif kind == "tool_call":
            self.action = f"calling {data.get('name', '?')}"
        elif kind == "tool_result" and data.get("is_error"):
            self.action = f"{data.get('name', '?')} failed"
        elif kind == "state_changed":
            self.state = str(data.get("state", self.state))
        elif kind == "notification":
            self.notifications += 1
        elif kind in ("error", "operator_crashed"):
            self.error = str(data.get("error", "error"))
        elif kind == "run_completed":
            self.running = False
            self.state = str(data.get("state", self.state))
            self.stop_reason = str(data.get("stop_reason", "done"))
            self.iteration = int(data.get("iterations", self.iteration))
            self.notifications = int(data.get("notifications", self.notifications))
            self.error = data.get("error") or None
            self.client = str(data.get("client") or self.client)
            self.finished_at = event.at
            self.action = f"finished ({self.stop_reason})"
            return True
        elif kind == "operator_stopped":
            self.started = False
            if self.running:
                self.running, self.stop_reason = False, "stopped"
                self.finished_at = event.at
            self.action = "operator stopped"
            return True
        elif kind == "operator_started":
            self.started = True
        return False

    def queue(self, max_iterations: int, run_id: str | None = None) -> None:
        """A run was just asked for: show it as queued until it starts (with `run_id`, the
        card follows that run only, whatever else the operator runs meanwhile)."""
        self.awaiting = run_id
        self.waiting = run_id is not None
        if run_id is not None:
            self.run_id = run_id
        self.running = False
        self.iteration = 0
        self.max_iterations = max_iterations
        self.stop_reason = self.error = self.summary = None
        self.started_at = self.finished_at = None
        self.notifications = 0
        self.action = "queued"

    def finish(self, result: CompletionResult) -> None:
        """Set the exact final state from a run's result."""
        self.running = self.waiting = False
        self.run_id = result.run_id
        self.state = result.state
        self.iteration = result.iterations
        if result.stop_reason == "max_iterations":  # the limit of that run, whatever the default
            self.max_iterations = result.iterations
        self.stop_reason = result.stop_reason
        self.error = result.error
        self.notifications = len(result.notifications)
        self.client = result.client
        self.summary = result.summary
        self.started_at = result.started_at.timestamp()
        self.finished_at = result.finished_at.timestamp()
        self.action = f"finished ({result.stop_reason})"

    def fail(self, message: str) -> None:
        """A run that ended without any result (it never started, or the operator crashed)."""
        self.running = self.waiting = False
        self.stop_reason = "error"
        self.error = message
        self.finished_at = time.time()
        self.action = "failed"

    # -- rendering ------------------------------------------------------------------------

    @property
    def activity(self) -> str:
        if self.running:
            return "running"
        if self.waiting:
            return "queued"
        if not self.started:
            return "stopped"
        return f"idle, {self.queued} queued" if self.queued else "idle"

    @property
    def bar_style(self) -> str:
        if self.running or self.stop_reason is None:
            return "info" if self.running else ""
        return BAR_STYLES.get(self.stop_reason, "danger" if self.error else "success")

    @property
    def bar_value(self) -> int:
        # a run that ended well fills the bar: "done at iteration 3 of 25" is complete, not 12%
        if self.bar_style == "success":
            return self.max_iterations
        return min(self.iteration, self.max_iterations)

    @property
    def progress_text(self) -> str:
        return f"{self.iteration}/{self.max_iterations}"

    def text(self, now: float | None = None) -> str:
        elapsed = self.elapsed(now)
        parts = [
            f"{self.title} [{self.operator}]",
            self.state.upper(),
            self.activity,
            f"iteration {self.progress_text}",
            self.action,
        ]
        if elapsed is not None:
            parts.append(seconds_text(elapsed))
        parts.append(f"{self.notifications} notification(s)")
        line = " | ".join(parts)
        if self.error:
            line += f"\n  error: {self.error}"
        if self.summary and not self.running:
            line += f"\n  summary: {self.summary}"
        return line

    def html(self, now: float | None = None) -> str:
        elapsed = self.elapsed(now)
        colour = STATE_COLOURS.get(self.state, GREY)
        activity_colour = BLUE if self.running else GREY
        bits = [
            f'<b style="font-size:1.1em">{_esc(self.title)}</b>',
            f"<code>{_esc(self.operator)}</code>",
            badge(self.state, colour),
            f'<span style="color:{activity_colour}">{_esc(self.activity)}</span>',
        ]
        detail = [_esc(self.action)]
        if elapsed is not None:
            detail.append(seconds_text(elapsed))
        detail.append(f"{self.notifications} notification(s)")
        if self.client:
            detail.append(f"client: {_esc(self.client)}")
        return (
            '<div class="lensbook-card" style="line-height:1.6">'
            f'<div style="display:flex;gap:8px;align-items:center">{" ".join(bits)}</div>'
            f'<div style="color:#374151;font-size:0.9em">{" · ".join(detail)}</div>'
            f"{self.ending_html()}</div>"
        )
