"""What the coordinator and watcher views show, kept apart from any widget.

`CoordinatorModel` folds one coordinator run's events (its own, and its operators' as cards) into
its question, progress, notifications with their status, and insights; `WatchModel` reads the
watcher's status. Like `lensbook.notebook._models`, they render plain text and HTML and import
neither IPython nor ipywidgets.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from lensbook.cards import (
    AMBER,
    BLUE,
    CARD_EVENTS,
    GREEN,
    GREY,
    RED,
    SEVERITY_COLOURS,
    CardModel,
    RunProgress,
    badge,
    seconds_text,
)
from lensbook.events import COORDINATOR_KINDS, WATCH_KINDS, Event, EventKind
from lensbook.notebook._models import FeedModel

if TYPE_CHECKING:
    from lensbook.coordinator import CoordinatorResult, Watcher

__all__ = ["COORDINATOR_EVENTS", "WATCH_EVENTS", "CoordinatorModel", "WatchModel"]

_esc = html.escape

#: what a coordinator view follows: the coordinator's own events (its operators' are cards)
COORDINATOR_EVENTS: frozenset[EventKind] = frozenset(COORDINATOR_KINDS)
WATCH_EVENTS: frozenset[EventKind] = frozenset(WATCH_KINDS)
_CONFIDENCE_COLOURS = {"high": RED, "medium": AMBER, "low": GREY}
_STATUS_COLOURS = {"unread": BLUE, "acknowledged": GREY, "resolved": GREEN}
_WATCH_COLOURS = {
    "learning": BLUE,
    "active": GREEN,
    "cooldown": AMBER,
    "stopped": GREY,
}


class CoordinatorModel(RunProgress):
    """One coordinator run as the view shows it, folded from events."""

    def __init__(self, name: str, reason: str = "", strategy: str = "agent") -> None:
        super().__init__(max_iterations=0, action="starting")
        self.name = name
        self.reason = reason
        self.strategy = strategy
        self.deadline: float | None = None
        self.cards: dict[str, CardModel] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self.insights: list[dict[str, Any]] = []
        #: the operators' snapshots and probe results, for what each notification rests on
        self.evidence = FeedModel()

    def wants(self, event: Event) -> bool:
        if event.operator == self.name:
            return not self.run_id or event.run_id == self.run_id or not event.run_id
        return event.operator.startswith(self.name + ".") and (
            event.kind in CARD_EVENTS or event.kind == "snapshot"
        )

    def apply(self, event: Event) -> bool:
        """Fold one event in; True when it ends the run (flush it exactly)."""
        kind, data = event.kind, event.data
        if event.operator != self.name:
            if kind in ("snapshot", "tool_result"):
                self.evidence.apply(event)
                if kind == "snapshot":
                    return False
            skill = event.operator[len(self.name) + 1 :]
            card = self.cards.get(skill)
            if card is None:
                card = self.cards[skill] = CardModel(event.operator, skill)
            card.apply(event)
            return False
        if kind == "coordinator_started":
            self.run_id = event.run_id
            self.running, self.started_at = True, event.at
            self.strategy = str(data.get("strategy", self.strategy))
            self.client = str(data.get("client", ""))
            self.deadline = data.get("deadline")
            self.max_iterations = int(data.get("max_iterations") or 0)
            self.reason = self.reason or str((data.get("context") or {}).get("reason", ""))
        elif kind == "coordinator_iteration":
            self.iteration = int(data.get("iteration", self.iteration))
            self.action = "waiting for the model"
        elif kind == "coordinator_tool_call":
            self.action = f"calling {data.get('name', '?')}"
        elif kind == "coordinator_operators_invoked":
            for skill, operator in dict(data.get("operators") or {}).items():
                card = self.cards.get(skill)
                if card is None:
                    card = self.cards[skill] = CardModel(str(operator), skill)
                card.queue(card.max_iterations)
        elif kind == "coordinator_notification":
            note = dict(data.get("notification") or {})
            note["skill"] = data.get("skill", note.get("operator"))
            note["status"] = "unread"
            self.notes[str(note.get("id"))] = note
        elif kind == "coordinator_notification_status":
            for nid in data.get("ids") or []:
                if nid in self.notes:
                    self.notes[nid]["status"] = data.get("status", "acknowledged")
        elif kind == "insight":
            insight = dict(data.get("insight") or {})
            self.insights.append(insight)
            for nid in insight.get("notification_ids") or []:
                if nid in self.notes:
                    self.notes[nid]["status"] = "resolved"
        elif kind == "coordinator_completed":
            self.running = False
            self.finished_at = event.at
            self.stop_reason = str(data.get("stop_reason", "done"))
            self.error = data.get("error") or None
            self.summary = data.get("summary") or None
            self.iteration = int(data.get("iterations", self.iteration))
            self.action = f"finished ({self.stop_reason})"
            return True
        return False

    def finish(self, result: CoordinatorResult) -> None:
        """Set the exact final state from the run's result."""
        self.running = False
        self.run_id = result.run_id
        self.stop_reason, self.error, self.summary = (
            result.stop_reason,
            result.error,
            result.summary,
        )
        self.iteration = result.iterations
        self.client = result.client
        self.started_at = result.started_at.timestamp()
        self.finished_at = result.finished_at.timestamp()
        self.action = f"finished ({result.stop_reason})"
        for tracked in result.notifications:
            note = tracked.notification.to_dict()
            note.update(skill=tracked.skill, status=tracked.status)
            self.notes[tracked.id] = note
        self.insights = [i.to_dict() for i in result.insights]
        for skill, op_result in result.operator_results.items():
            card = self.cards.get(skill)
            if card is None:
                card = self.cards[skill] = CardModel(op_result.operator, skill)
            card.finish(op_result)

    # -- rendering ------------------------------------------------------------------------

    @property
    def activity(self) -> str:
        if self.running:
            return "running"
        return f"stopped by {self.stop_reason}" if self.stop_reason else "starting"

    def head_text(self, now: float | None = None) -> str:
        parts = [f"coordinator ({self.strategy})", self.activity]
        if self.max_iterations:
            parts.append(f"iteration {self.iteration}/{self.max_iterations}")
        parts.append(self.action)
        elapsed = self.elapsed(now)
        if elapsed is not None:
            parts.append(seconds_text(elapsed))
        if self.deadline:
            parts.append(f"deadline {self.deadline:g} s")
        unread = sum(1 for n in self.notes.values() if n.get("status") == "unread")
        parts.append(f"{len(self.notes)} notification(s), {unread} unread")
        parts.append(f"{len(self.insights)} insight(s)")
        return " | ".join(parts)

    def text(self, now: float | None = None) -> str:
        lines = [f"Investigate: {self.reason}" if self.reason else "Investigate", self.head_text()]
        if self.error:
            lines.append(f"  error: {self.error}")
        for card in self.cards.values():
            lines.append("  " + card.text(now).replace("\n", "\n  "))
        for note in self.notes.values():
            lines.append(
                f"  [{str(note.get('severity', '?')).upper()}] {note.get('skill')}: "
                f"{note.get('anomaly_type')} ({note.get('status')}) - {note.get('observation', '')}"
            )
        for insight in self.insights:
            lines.append(
                f"  insight [{insight.get('confidence')} {insight.get('correlation_type')}] "
                f"{', '.join(insight.get('skills') or [])}: {insight.get('summary')}"
            )
        if self.summary and not self.running:
            lines.append(f"  summary: {self.summary}")
        return "\n".join(lines)

    def head_html(self, now: float | None = None) -> str:
        colour = BLUE if self.running else (RED if self.error else GREEN)
        question = f"<div><b>Investigate:</b> {_esc(self.reason)}</div>" if self.reason else ""
        return (
            f"{question}<div>{badge(self.activity, colour)} "
            f'<span style="color:#374151;font-size:0.9em">{_esc(self.head_text(now))}</span>'
            f"</div>{self.ending_html()}"
        )

    def cards_html(self, now: float | None = None) -> str:
        if not self.cards:
            return '<div style="color:#6b7280"><i>No operator invoked yet.</i></div>'
        return "".join(
            '<div style="border:1px solid #e5e7eb;border-radius:6px;padding:4px 8px;'
            f'margin:4px 0">{card.html(now)}</div>'
            for card in self.cards.values()
        )

    def notes_html(self) -> str:
        if not self.notes:
            return '<div style="color:#6b7280"><i>No notifications yet.</i></div>'
        rows = []
        for note in reversed(list(self.notes.values())):
            severity = str(note.get("severity", "info"))
            colour = SEVERITY_COLOURS.get(severity, GREY)
            status = str(note.get("status", "unread"))
            rows.append(
                f'<div style="border-left:4px solid {colour};padding:2px 8px;margin:3px 0">'
                f'<b style="color:{colour}">{_esc(severity.upper())}</b> '
                f"<b>{_esc(str(note.get('skill', '')))}</b>: "
                f"{_esc(str(note.get('anomaly_type', '')))} "
                f"{badge(status, _STATUS_COLOURS.get(status, '#6b7280'))}"
                f'<div style="font-size:0.9em">{_esc(str(note.get("observation", "")))}</div>'
                f"{self._moved_html(note)}</div>"
            )
        return "".join(rows)

    def _moved_html(self, note: dict[str, Any]) -> str:
        """The two biggest moves between the snapshots the notification cites, inline (the
        whole evidence is under the notification in the operator's own feed)."""
        moved = self.evidence.evidence(note).moved[:2]
        if not moved:
            return ""
        text = "; ".join(c.text() for c in moved)
        return f'<div style="font-size:0.85em;color:#374151">moved: <code>{_esc(text)}</code></div>'

    def insights_html(self) -> str:
        if not self.insights:
            return '<div style="color:#6b7280"><i>No insights yet.</i></div>'
        rows = []
        for insight in self.insights:
            confidence = str(insight.get("confidence", "low"))
            colour = _CONFIDENCE_COLOURS.get(confidence, GREY)
            observed = "".join(
                f"<li>{_esc(str(o))}</li>" for o in insight.get("matched_observations") or []
            )
            root = insight.get("root_cause_hypothesis")
            grounded = "grounded" if insight.get("hypothesis_grounded") else "not grounded"
            root_html = (
                f"<div><b>root cause</b> {_esc(str(root))} <small>({grounded})</small></div>"
                if root
                else ""
            )
            rows.append(
                f'<div style="border-left:4px solid {colour};padding:2px 8px;margin:3px 0">'
                f"{badge(confidence + ' confidence', colour)} "
                f"<b>{_esc(str(insight.get('correlation_type', '')))}</b> "
                f"<small>{_esc(', '.join(insight.get('skills') or []))}</small>"
                f"<div>{_esc(str(insight.get('summary', '')))}</div>"
                f'<ul style="margin:2px 0;font-size:0.9em">{observed}</ul>{root_html}</div>'
            )
        return "".join(rows)


class WatchModel:
    """The watcher as its compact view shows it."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def text(self) -> str:
        s = self.watcher.status()
        parts = [
            f"watch: {s.state}",
            f"{s.samples} samples",
            f"{s.metrics} metrics",
            f"{len(s.anomalies)} anomalies",
            f"{s.triggers} trigger(s)",
            f"{s.suppressed} suppressed",
        ]
        if s.investigating:
            parts.append("investigating")
        elif s.cooldown_left:
            parts.append(f"cooldown {s.cooldown_left:.0f} s left")
        lines = [" | ".join(parts)]
        lines += [f"  {a.severity}: {a.describe()}" for a in s.anomalies[:3]]
        last = self.watcher.triggers[-1] if self.watcher.triggers else None
        if last is not None and last.result is not None:
            lines.append(
                f"  last investigation: {len(last.result.insights)} insight(s), "
                f"{len(last.result.notifications)} notification(s), "
                f"stopped by {last.result.stop_reason}"
            )
        return "\n".join(lines)

    def html(self) -> str:
        s = self.watcher.status()
        state = badge(s.state, _WATCH_COLOURS.get(s.state, GREY))
        detail = " · ".join(self.text().splitlines()[0].split(" | ")[1:])
        rows = "".join(
            f'<div style="font-size:0.9em;color:{SEVERITY_COLOURS[a.severity]}">'
            f"{_esc(a.describe())}</div>"
            for a in s.anomalies[:3]
        )
        lines = self.text().splitlines()
        tail = lines[-1] if lines[-1].startswith("  last investigation") else ""
        return (
            f"<div><b>lensbook watch</b> {state} "
            f'<span style="color:#374151;font-size:0.9em">{_esc(detail)}</span></div>'
            f"{rows}"
            + (f'<div style="font-size:0.9em"><i>{_esc(tail.strip())}</i></div>' if tail else "")
        )
