"""Live views of the coordinator and the watcher, and the `%lens investigate|watch` commands.

`CoordinatorView` shows one coordinator run: its question and progress, one card per operator
it invokes, the notifications flowing in (with their status) and the insights as they are
produced. `WatchView` is one compact line: the watcher's state, samples, anomalies and
escalations. Both follow the house pattern of `lensbook.notebook.widgets`: models folded from
events (no widget in them, plain text and HTML), widgets created on the kernel thread, flushes
throttled and batched.

The magic glue (`add_parsers`, `investigate`, `watch_command`) is called by `LensMagics`; it
takes the magics object for its settings (`refresh_rate`, `_use_widgets()`, `_skill()`).
"""

from __future__ import annotations

import argparse
import html
import itertools
import time
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from lensbook import events
from lensbook.coordinator.insights import CoordinatorResult
from lensbook.notebook._models import (
    SEVERITY_COLOURS,
    CardModel,
    FeedModel,
    _badge,
    _seconds,
    elapsed,
)
from lensbook.notebook.widgets import CARD_EVENTS, _bundle, _LiveView

if TYPE_CHECKING:
    from lensbook.coordinator.coordinator import Coordinator
    from lensbook.coordinator.watcher import Watcher

__all__ = [
    "CoordinatorModel",
    "CoordinatorView",
    "WatchModel",
    "WatchView",
    "add_parsers",
    "investigate",
    "watch_command",
]

_esc = html.escape
_names = itertools.count(1)
_last: Coordinator | None = None

COORDINATOR_EVENTS = frozenset(
    {
        "coordinator_started",
        "coordinator_iteration",
        "coordinator_tool_call",
        "coordinator_operators_invoked",
        "coordinator_notification",
        "coordinator_notification_status",
        "coordinator_operator_finished",
        "insight",
        "coordinator_completed",
    }
)
WATCH_EVENTS = frozenset(
    {
        "watch_started",
        "watch_state",
        "watch_sample",
        "watch_anomaly",
        "watch_trigger",
        "watch_investigation_completed",
        "watch_stopped",
    }
)
_CONFIDENCE_COLOURS = {"high": "#dc2626", "medium": "#d97706", "low": "#6b7280"}
_STATUS_COLOURS = {"unread": "#2563eb", "acknowledged": "#6b7280", "resolved": "#16a34a"}
_WATCH_COLOURS = {
    "learning": "#2563eb",
    "active": "#16a34a",
    "cooldown": "#d97706",
    "stopped": "#6b7280",
}


class CoordinatorModel:
    """One coordinator run as the view shows it, folded from events."""

    def __init__(self, name: str, reason: str = "", strategy: str = "agent") -> None:
        self.name = name
        self.reason = reason
        self.strategy = strategy
        self.run_id = ""
        self.running = False
        self.iteration = 0
        self.max_iterations = 0
        self.action = "starting"
        self.client = ""
        self.deadline: float | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.stop_reason: str | None = None
        self.error: str | None = None
        self.summary: str | None = None
        self.cards: dict[str, CardModel] = {}
        self.notes: dict[str, dict[str, Any]] = {}
        self.insights: list[dict[str, Any]] = []
        #: the operators' snapshots and probe results, for what each notification rests on
        self.evidence = FeedModel()

    def wants(self, event: events.Event) -> bool:
        if event.operator == self.name:
            return not self.run_id or event.run_id == self.run_id or not event.run_id
        return event.operator.startswith(self.name + ".") and (
            event.kind in CARD_EVENTS or event.kind == "snapshot"
        )

    def apply(self, event: events.Event) -> bool:
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

    def elapsed(self, now: float | None = None) -> float | None:
        return elapsed(self.started_at, self.finished_at, now)

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
            parts.append(_seconds(elapsed))
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
        colour = "#2563eb" if self.running else ("#dc2626" if self.error else "#16a34a")
        question = f"<div><b>Investigate:</b> {_esc(self.reason)}</div>" if self.reason else ""
        extra = ""
        if self.error:
            extra += f'<div style="color:#dc2626">error: {_esc(self.error)}</div>'
        if self.summary and not self.running:
            extra += f'<div style="color:#374151"><i>{_esc(self.summary)}</i></div>'
        return (
            f"{question}<div>{_badge(self.activity, colour)} "
            f'<span style="color:#374151;font-size:0.9em">{_esc(self.head_text(now))}</span>'
            f"</div>{extra}"
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
            colour = SEVERITY_COLOURS.get(severity, "#6b7280")
            status = str(note.get("status", "unread"))
            rows.append(
                f'<div style="border-left:4px solid {colour};padding:2px 8px;margin:3px 0">'
                f'<b style="color:{colour}">{_esc(severity.upper())}</b> '
                f"<b>{_esc(str(note.get('skill', '')))}</b>: "
                f"{_esc(str(note.get('anomaly_type', '')))} "
                f"{_badge(status, _STATUS_COLOURS.get(status, '#6b7280'))}"
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
            colour = _CONFIDENCE_COLOURS.get(confidence, "#6b7280")
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
                f"{_badge(confidence + ' confidence', colour)} "
                f"<b>{_esc(str(insight.get('correlation_type', '')))}</b> "
                f"<small>{_esc(', '.join(insight.get('skills') or []))}</small>"
                f"<div>{_esc(str(insight.get('summary', '')))}</div>"
                f'<ul style="margin:2px 0;font-size:0.9em">{observed}</ul>{root_html}</div>'
            )
        return "".join(rows)


class CoordinatorView(widgets.VBox, _LiveView):  # type: ignore[misc]
    """One coordinator run, live: progress, operator cards, notifications, insights."""

    def __init__(
        self, coordinator: Coordinator, reason: str = "", *, refresh_rate: float = 10.0
    ) -> None:
        self.model = CoordinatorModel(coordinator.name, reason, coordinator.strategy)
        self.header = widgets.HTML(value=self.model.head_html())
        self.operators = widgets.HTML(value=self.model.cards_html())
        self.feed = widgets.HTML(value=self.model.notes_html())
        self.insights = widgets.HTML(value=self.model.insights_html())
        super().__init__(
            children=[
                self.header,
                widgets.HTML(value="<b>Operators</b>"),
                self.operators,
                widgets.HTML(value="<b>Notifications</b>"),
                self.feed,
                widgets.HTML(value="<b>Insights</b>"),
                self.insights,
            ],
            layout=widgets.Layout(
                border="1px solid #e5e7eb", padding="6px 10px", margin="4px 0", width="auto"
            ),
        )
        self.add_class("lensbook-coordinator")
        self._listen(COORDINATOR_EVENTS | CARD_EVENTS | {"snapshot"}, refresh_rate)

    def _on_event(self, event: events.Event) -> None:
        if not self.model.wants(event):
            return
        with self._lock:
            final = self.model.apply(event)
        if final:
            self.throttle.now()
        else:
            self.throttle.request()

    def flush(self) -> None:
        now = time.time()
        m = self.model
        with (
            self.header.hold_sync(),
            self.operators.hold_sync(),
            self.feed.hold_sync(),
            self.insights.hold_sync(),
        ):
            self.header.value = m.head_html(now)
            self.operators.value = m.cards_html(now)
            self.feed.value = m.notes_html()
            self.insights.value = m.insights_html()

    def finish(self, result: CoordinatorResult) -> None:
        """Show the exact end of the run and stop listening."""
        with self._lock:
            self.model.finish(result)
            self.stop_updates()
            self.flush()
        self.refresh_display()

    def text(self) -> str:
        return self.model.text()

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _bundle(self, super()._repr_mimebundle_, **kwargs)


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
        badge = _badge(s.state, _WATCH_COLOURS.get(s.state, "#6b7280"))
        detail = " · ".join(self.text().splitlines()[0].split(" | ")[1:])
        rows = "".join(
            f'<div style="font-size:0.9em;color:{SEVERITY_COLOURS[a.severity]}">'
            f"{_esc(a.describe())}</div>"
            for a in s.anomalies[:3]
        )
        lines = self.text().splitlines()
        tail = lines[-1] if lines[-1].startswith("  last investigation") else ""
        return (
            f"<div><b>lensbook watch</b> {badge} "
            f'<span style="color:#374151;font-size:0.9em">{_esc(detail)}</span></div>'
            f"{rows}"
            + (f'<div style="font-size:0.9em"><i>{_esc(tail.strip())}</i></div>' if tail else "")
        )


class WatchView(widgets.VBox, _LiveView):  # type: ignore[misc]
    """The watcher in one line: state, samples, anomalies, triggers."""

    def __init__(self, watcher: Watcher, *, refresh_rate: float = 2.0) -> None:
        self.model = WatchModel(watcher)
        self.body = widgets.HTML(value=self.model.html())
        super().__init__(children=[self.body], layout=widgets.Layout(width="auto"))
        self.add_class("lensbook-watch")
        self._listen(WATCH_EVENTS, refresh_rate)

    def _on_event(self, event: events.Event) -> None:
        if event.kind == "watch_stopped":
            self.throttle.now()
        else:
            self.throttle.request()

    def flush(self) -> None:
        self.body.value = self.model.html()

    def text(self) -> str:
        return self.model.text()

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _bundle(self, super()._repr_mimebundle_, **kwargs)


# -- the %lens glue ---------------------------------------------------------------------------


def add_parsers(sub: Any) -> None:
    """Add the `investigate` and `watch` subcommands to `%lens`'s subparsers."""
    inv = sub.add_parser(
        "investigate",
        help="coordinate several operators on one question, with a live view",
        description="Run the coordinator: it invokes the operators that matter, correlates "
        "their notifications into insights, and stops them at the end. Blocks until it ends "
        "unless --background; Kernel > Interrupt cancels it.",
    )
    inv.add_argument("--reason", metavar="TEXT", required=True, help="the question (quoted)")
    inv.add_argument("--skills", metavar="A,B", help="skills it may invoke (default: all)")
    inv.add_argument("--strategy", choices=["agent", "pipeline"], default="agent")
    inv.add_argument("--deadline", metavar="SECONDS", type=float, default=300.0)
    inv.add_argument(
        "--client",
        metavar="NAME",
        help="'offline', a provider (ollama, ...), or a variable holding an LLMClient",
    )
    inv.add_argument("--background", action="store_true", help="return at once")

    watch = sub.add_parser(
        "watch",
        help="continuous watching: learn baselines, investigate anomalies",
        description="Start, stop or show the watcher (one per process).",
    )
    watch.add_argument("action", choices=["start", "stop", "status"])
    watch.add_argument("--skills", metavar="A,B", help="skills to watch (default: a cheap set)")
    watch.add_argument("--interval", metavar="SECONDS", type=float, default=30.0)
    watch.add_argument("--learning", metavar="SECONDS", type=float, default=900.0)
    watch.add_argument("--cooldown", metavar="SECONDS", type=float, default=900.0)
    watch.add_argument("--z", metavar="Z", type=float, default=3.0, dest="z_threshold")
    watch.add_argument("--consecutive", metavar="N", type=int, default=3)
    watch.add_argument("--max-per-hour", metavar="N", type=int, default=3)
    watch.add_argument(
        "--no-trigger", action="store_true", help="flag anomalies without investigating"
    )


def _skill_list(magics: Any, text: str | None) -> list[str] | None:
    if not text:
        return None
    return [magics._skill(s.strip()) for s in text.split(",") if s.strip()]


def _client(magics: Any, name: str | None) -> Any:
    """`--client NAME` as the coordinator's chain, resolved as `%lens run` resolves it."""
    from IPython.core.error import UsageError

    from lensbook._errors import LensbookError
    from lensbook.coordinator.coordinator import coordinator_chain

    if not name:
        return None
    namespace = magics.shell.user_ns if magics.shell is not None else {}
    try:
        return coordinator_chain(name, namespace=namespace)
    except LensbookError as exc:
        raise UsageError(f"%lens investigate: {exc}") from None


class Investigated:
    """What `%lens investigate` returns: one line (the view shows the rest); `.result` has it."""

    def __init__(self, result: CoordinatorResult) -> None:
        self.result = result
        self.insights = result.insights

    def __repr__(self) -> str:
        r = self.result
        return (
            f"coordinator: {len(r.insights)} insight(s) from {len(r.notifications)} "
            f"notification(s) of {len(r.operator_results)} operator(s), stopped by "
            f"{r.stop_reason} (_.result has everything)"
        )

    def _repr_html_(self) -> str:
        return f"<small>{_esc(repr(self))}</small>"


def investigate(magics: Any, args: argparse.Namespace) -> Any:
    """`%lens investigate --reason ... [--skills a,b]`: a coordinator run with a live view."""
    from lensbook.coordinator.coordinator import Coordinator
    from lensbook.notebook.magics import Report

    global _last
    skills = _skill_list(magics, args.skills)
    coordinator = Coordinator(
        name=f"investigate-{next(_names)}",
        skills=skills,
        client=_client(magics, args.client),
        strategy=args.strategy,
        deadline=args.deadline,
    )
    _last = coordinator
    view: CoordinatorView | None = None
    if magics._use_widgets():
        view = CoordinatorView(coordinator, args.reason, refresh_rate=magics.refresh_rate)
        view.show()
        if args.background:
            shown = view
            coordinator.on_complete = lambda result: shown.finish(result)
    coordinator.run_async({"reason": args.reason})
    if args.background:
        if view is not None:
            return None
        return Report(
            f"{coordinator.name}: investigating in the background; "
            "lensbook.notebook.coordinator_view.last_coordinator().wait() returns its result"
        )
    try:
        result = coordinator.wait()
    except KeyboardInterrupt:
        # Kernel > Interrupt: the run is cancelled and returns what it found
        coordinator.cancel()
        result = coordinator.wait(timeout=60)
    if view is None:
        return result
    view.finish(result)
    return Investigated(result)


def last_coordinator() -> Coordinator | None:
    """The coordinator of the last `%lens investigate`."""
    return _last


def watch_command(magics: Any, args: argparse.Namespace) -> Any:
    """`%lens watch start|stop|status`: the process's watcher, with a compact live view."""
    from lensbook.coordinator.watcher import current_watcher, stop_watching, watch
    from lensbook.notebook.magics import Report

    if args.action == "stop":
        watcher = current_watcher()
        if watcher is None:
            return Report("watch: not watching")
        stop_watching()
        return Report(f"watch: stopped after {watcher.samples} samples")
    if args.action == "start":
        watcher = watch(
            _skill_list(magics, args.skills),
            interval=args.interval,
            learning=args.learning,
            z_threshold=args.z_threshold,
            consecutive=args.consecutive,
            cooldown=args.cooldown,
            max_triggers_per_hour=args.max_per_hour,
            auto_trigger=not args.no_trigger,
        )
    else:
        found = current_watcher()
        if found is None:
            return Report("watch: not watching (%lens watch start)")
        watcher = found
    model = WatchModel(watcher)
    if not magics._use_widgets():
        return Report(model.text(), model.html())
    WatchView(watcher, refresh_rate=min(magics.refresh_rate, 2.0)).show()
    return None
