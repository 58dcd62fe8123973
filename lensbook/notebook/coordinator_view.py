"""Live views of the coordinator and the watcher.

`CoordinatorView` shows one coordinator run: its question and progress, one card per operator
it invokes, the notifications flowing in (with their status) and the insights as they are
produced. `WatchView` is one compact line: the watcher's state, samples, anomalies and
escalations. Both follow the house pattern of `lensbook.notebook.widgets`: models folded from
events (`lensbook.notebook._coordinator_models`: no widget in them, plain text and HTML), widgets
created on the kernel thread, flushes throttled and batched. The `%lens investigate|watch`
commands that show them are in `lensbook.notebook._coordinator_commands`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import ipywidgets as widgets

from lensbook import events
from lensbook.cards import CARD_EVENTS
from lensbook.notebook._coordinator_models import (
    COORDINATOR_EVENTS,
    WATCH_EVENTS,
    CoordinatorModel,
    WatchModel,
)
from lensbook.notebook.widgets import REFRESH_RATE, LiveView

if TYPE_CHECKING:
    from lensbook.coordinator import Coordinator, CoordinatorResult, Watcher

__all__ = ["CoordinatorView", "WatchView"]


class CoordinatorView(LiveView, widgets.VBox):  # type: ignore[misc]
    """One coordinator run, live: progress, operator cards, notifications, insights."""

    def __init__(
        self, coordinator: Coordinator, reason: str = "", *, refresh_rate: float = REFRESH_RATE
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
        self._fold(event)

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


class WatchView(LiveView, widgets.VBox):  # type: ignore[misc]
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
