"""Live widgets: the operator card, the notification feed, the metrics view and the dashboard.

Every view is a `Box` of a few small widgets, created and displayed on the kernel thread. The
lens loop only folds events into the view's model (`lensbook.notebook._models`) and asks its
`Throttle` for a flush; a flush sets the child widgets' traits inside `hold_sync()`, at most
`refresh_rate` times a second, and the end of a run is always flushed exactly. Every view's
`text/plain` is its full text rendering, so terminals, nbconvert and notebook diffs stay readable.
"""

from __future__ import annotations

import contextvars
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from IPython.display import DisplayHandle, display

from lensbook import events
from lensbook.cards import CARD_EVENTS, SEVERITY_COLOURS, CardModel
from lensbook.events import EventKind
from lensbook.notebook._models import FEED_EVENTS, METRICS_EVENTS, FeedModel, MetricsModel
from lensbook.notebook._throttle import Throttle
from lensbook.notebook._timer import call_later
from lensbook.types import CompletionResult

if TYPE_CHECKING:
    from lensbook import Operator

__all__ = [
    "REFRESH_RATE",
    "Dashboard",
    "MetricsView",
    "NotificationFeed",
    "OperatorCard",
    "in_current_cell",
    "live_views",
    "stop_all_updates",
    "views",
]

#: seconds between refreshes of a running card's elapsed time when no event comes
TICK_SECONDS = 1.0
#: redraws a second a live view makes at most, however many events come (every view's default)
REFRESH_RATE = 10.0

_created = itertools.count()
_live: weakref.WeakValueDictionary[int, LiveView] = weakref.WeakValueDictionary()


def register_view(view: LiveView) -> None:
    _live[next(_created)] = view


def views() -> list[LiveView]:
    """Every view created in this process and not yet collected, oldest first."""
    return [view for _, view in sorted(_live.items(), key=lambda item: item[0])]


def live_views() -> list[LiveView]:
    """The views still listening to events, oldest first."""
    return [v for v in views() if v.listening]


def stop_all_updates() -> None:
    """Stop every view's updates (extension unload); the widgets stay displayed as they are."""
    for view in views():
        view.stop_updates()


def in_current_cell(fn: Callable[[], Any]) -> Any:
    """Call `fn` so that the messages it sends belong to the cell executing now.

    ipykernel reads the parent message from a context variable; a task of the lens loop holds
    a copy of the context of the cell that created it (say, the cell that started the operator),
    so a widget update sent from there would be filed under that old cell, and a notebook
    runner like nbclient would drop it. In an empty context ipykernel falls back to the
    kernel's own context: the cell running now, as for any thread.
    """
    return contextvars.Context().run(fn)


class LiveView:
    """A subscription to events, a lock around the model, and the throttled flush."""

    _token: int | None = None
    display_handle: DisplayHandle | None = None
    #: what the view shows, folded from events (a model of `lensbook.notebook._models`)
    model: Any

    def _listen(self, kinds: Iterable[EventKind], refresh_rate: float) -> None:
        self._lock = threading.RLock()
        self.throttle = Throttle(self._locked_flush, 1.0 / refresh_rate if refresh_rate else 0.0)
        self._token = events.subscribe(self._on_event, kinds=kinds)
        register_view(self)

    @property
    def listening(self) -> bool:
        return self._token is not None

    def stop_updates(self) -> None:
        """Stop listening to events; what is shown stays."""
        token, self._token = self._token, None
        if token is not None:
            events.unsubscribe(token)

    def show(self) -> DisplayHandle | None:
        """Display the view (on the kernel thread) and keep its handle for text updates."""
        show: Any = display  # IPython's display is untyped
        self.display_handle = show(self, display_id=True)
        return self.display_handle

    def refresh_display(self) -> None:
        """Re-publish the display so its text/plain matches the final state."""
        handle: Any = self.display_handle
        if handle is not None:
            handle.update(self)

    def _on_event(self, event: events.Event) -> None:
        raise NotImplementedError

    def _locked_flush(self) -> None:
        with self._lock:
            in_current_cell(self.flush)

    def _fold(self, event: events.Event) -> None:
        """Fold `event` into the model; the end of a run is flushed at once, exactly."""
        with self._lock:
            final = self.model.apply(event)
        if final:
            self.throttle.now()
        else:
            self.throttle.request()

    def flush(self) -> None:
        raise NotImplementedError

    def text(self) -> str:
        """The view as plain text: its model's, unless the view says more."""
        return str(self.model.text())

    def __repr__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget's bundle, whose text/plain is the view's full text (terminals, diffs)."""
        bundle = super()._repr_mimebundle_(**kwargs)  # type: ignore[misc]
        if isinstance(bundle, dict):
            bundle["text/plain"] = self.text()
        return bundle


class OperatorCard(LiveView, widgets.VBox):  # type: ignore[misc]
    """One operator: title, health badge, running/idle, iteration bar, current action, elapsed.

    `follow=False` (the card of one `%lens run`) stops listening once `finish()` is called;
    `feed=True` adds the notifications the operator sends while the card is shown.
    """

    def __init__(
        self,
        op: Operator | None = None,
        *,
        model: CardModel | None = None,
        refresh_rate: float = REFRESH_RATE,
        feed: bool = False,
        follow: bool = True,
    ) -> None:
        if model is None:
            if op is None:
                raise TypeError("OperatorCard needs an operator or a CardModel")
            model = CardModel.of(op)
        self.model = model
        self.follow = follow
        self._ticking = False
        self.header = widgets.HTML(value=model.html())
        self.bar = widgets.IntProgress(
            value=model.bar_value,
            min=0,
            max=max(1, model.max_iterations),
            description=model.progress_text,
            bar_style=model.bar_style,
            style={"description_width": "initial"},
            layout=widgets.Layout(width="100%", max_width="520px"),
        )
        children: list[widgets.Widget] = [self.header, self.bar]
        self.feed: NotificationFeed | None = None
        if feed:
            self.feed = NotificationFeed(operator=model.operator, refresh_rate=refresh_rate)
            children.append(self.feed)
        super().__init__(
            children=children,
            layout=widgets.Layout(
                border="1px solid #e5e7eb", padding="6px 10px", margin="4px 0", width="auto"
            ),
        )
        self.add_class("lensbook-operator-card")
        self._listen(CARD_EVENTS, refresh_rate)

    def _on_event(self, event: events.Event) -> None:
        if event.operator != self.model.operator:
            return
        self._fold(event)

    def flush(self) -> None:
        m = self.model
        now = time.time()
        with self.header.hold_sync(), self.bar.hold_sync():
            self.header.value = m.html(now)
            self.bar.max = max(1, m.max_iterations)
            self.bar.value = m.bar_value
            self.bar.bar_style = m.bar_style
            self.bar.description = m.progress_text
        if m.running and not self._ticking and self.listening:
            # the elapsed time moves between events (a long probe, a wait)
            self._ticking = True
            call_later(TICK_SECONDS, self._tick)

    def _tick(self) -> None:
        self._ticking = False
        if self.listening and self.model.running:
            self.throttle.request()

    def finish(self, result: CompletionResult | None = None, error: str | None = None) -> None:
        """Show the exact end of a run (from its result, or an error when it has none)."""
        with self._lock:
            if result is not None:
                self.model.finish(result)
            else:
                self.model.fail(error or "the run failed")
            if not self.follow:
                self.stop_updates()
            self.flush()
        if self.feed is not None:
            if result is not None:
                with self.feed._lock:
                    self.feed.model.seed([result])
            if not self.follow:
                self.feed.stop_updates()
            self.feed.throttle.now()
        self.refresh_display()

    def text(self) -> str:
        text: str = self.model.text()
        if self.feed is not None and self.feed.model.entries:
            text += "\n" + self.feed.text()
        return text

    def close(self) -> None:
        self.stop_updates()
        if self.feed is not None:
            self.feed.close()
        for child in (self.header, self.bar):
            child.close()
        super().close()


class NotificationFeed(LiveView, widgets.VBox):  # type: ignore[misc]
    """Notifications, newest first; each expands to its context, observation, hypothesis and
    evidence (what moved between the cited snapshots, the probe results, the full snapshots).

    Each notification is its own `Accordion` of one page, kept for as long as the notification
    is shown: whether it is expanded lives in the widget's synced `selected_index`, which the
    browser sets when the reader clicks, so a refresh of the feed (a new notification, new
    evidence) never collapses what the reader opened nor opens what they closed. Left alone,
    the newest entry is expanded and the others are not.
    """

    def __init__(
        self,
        operator: str | None = None,
        *,
        model: FeedModel | None = None,
        seed: Iterable[CompletionResult] = (),
        refresh_rate: float = REFRESH_RATE,
        max_entries: int = 50,
    ) -> None:
        self.model = model if model is not None else FeedModel(operator, max_entries=max_entries)
        self.model.seed(seed)
        self.body = widgets.HTML(value=self._header())
        self.items: dict[str, widgets.Accordion] = {}
        #: notification id -> expanded, for the entries the reader opened or closed
        self.chosen: dict[str, bool] = {}
        self._setting = False
        super().__init__(children=[self.body], layout=widgets.Layout(width="auto"))
        self.add_class("lensbook-feed")
        self.flush()
        self._listen(FEED_EVENTS, refresh_rate)

    def _on_event(self, event: events.Event) -> None:
        if not self.model.wants(event):
            return
        with self._lock:
            changed = self.model.apply(event)
        if changed:
            self.throttle.request()

    def _item(self, note: dict[str, Any]) -> widgets.Accordion:
        nid = str(note.get("id", ""))
        item = self.items.get(nid)
        body = self.model.entry_body(note)
        if item is None:
            colour = SEVERITY_COLOURS.get(str(note.get("severity")), "#6b7280")
            item = widgets.Accordion(
                children=[widgets.HTML(value=body)],
                titles=(self.model.entry_title(note),),
                layout=widgets.Layout(border_left=f"4px solid {colour}", margin="2px 0"),
            )
            item.add_class("lensbook-notification")
            item.observe(lambda change, nid=nid: self._chosen(nid, change), "selected_index")
            self.items[nid] = item
        elif item.children[0].value != body:  # evidence seen since: the page only
            item.children[0].value = body
        return item

    def _chosen(self, nid: str, change: dict[str, Any]) -> None:
        if not self._setting:  # the reader clicked (the browser synced selected_index)
            self.chosen[nid] = change["new"] is not None

    def _header(self) -> str:
        m = self.model
        if not m.entries:
            who = f" from <code>{m.operator}</code>" if m.operator else ""
            return f'<div style="color:#6b7280"><i>No notifications{who} yet.</i></div>'
        header = f"<small>{m.total} notification(s), newest first</small>"
        if m.total > len(m.entries):
            header += f" <small>(the {m.total - len(m.entries)} oldest not shown)</small>"
        return header

    def html(self) -> str:
        """What the feed shows, as one HTML text (the header, then each entry's title and page)."""
        parts = [self.body.value]
        for item in self.items.values():
            parts.append(f"<h5>{item.titles[0]}</h5>{item.children[0].value}")
        return "".join(parts)

    def flush(self) -> None:
        notes = list(reversed(self.model.entries))  # newest first
        header = self._header()
        items = [self._item(note) for note in notes]
        shown = {str(n.get("id", "")) for n in notes}
        for nid in [k for k in self.items if k not in shown]:
            self.items.pop(nid).close()
            self.chosen.pop(nid, None)
        self._setting = True
        try:
            for i, (note, item) in enumerate(zip(notes, items, strict=True)):
                nid = str(note.get("id", ""))
                expanded = self.chosen.get(nid, i == 0)
                wanted = 0 if expanded else None
                if item.selected_index != wanted:
                    item.selected_index = wanted
            if self.body.value != header:
                self.body.value = header
            children = (self.body, *items)
            box: Any = self  # ipywidgets is untyped
            if tuple(box.children) != children:
                box.children = children
        finally:
            self._setting = False

    def close(self) -> None:
        self.stop_updates()
        for item in self.items.values():
            item.close()
        self.items.clear()
        self.body.close()
        super().close()


class MetricsView(LiveView, widgets.VBox):  # type: ignore[misc]
    """A table of the latest sampled values and charts of the series seen moving, live."""

    def __init__(
        self,
        skill: str | None = None,
        *,
        refresh_rate: float = REFRESH_RATE,
        chart_interval: float = 2.0,
        max_charts: int = 4,
        store: Any = None,
    ) -> None:
        self.model = MetricsModel(skill, max_charts=max_charts, store=store)
        title = f"Metrics of <code>{skill}</code>" if skill else "Metrics"
        self.title = widgets.HTML(value=f"<b>{title}</b>")
        self.table = widgets.HTML(value=self.model.html())
        self.chart = widgets.Image(value=self.model.chart_png(), format="png")
        # the chart's text alternative, one click away under it; an accordion keeps it open
        # (or closed) as the reader left it while the chart refreshes
        self.caption_text = widgets.HTML(value=self._caption())
        self.caption = widgets.Accordion(
            children=[self.caption_text], titles=("chart as text",), selected_index=None
        )
        self.caption.add_class("lensbook-chart-text")
        self._chart_dirty = False
        super().__init__(
            children=[self.title, self.table, self.chart, self.caption],
            layout=widgets.Layout(width="auto"),
        )
        self.add_class("lensbook-metrics")
        self.chart_throttle = Throttle(lambda: in_current_cell(self._flush_chart), chart_interval)
        self._listen(METRICS_EVENTS, refresh_rate)

    def _on_event(self, event: events.Event) -> None:
        if event.kind == "run_completed":
            if self._chart_dirty:
                self.throttle.now()
                self.chart_throttle.now()
            return
        if not self.model.wants(event):
            return
        with self._lock:
            self.model.apply(event)
            self._chart_dirty = True
        self.throttle.request()
        self.chart_throttle.request()

    def flush(self) -> None:
        self.table.value = self.model.html()

    def _flush_chart(self) -> None:
        with self._lock:
            if not self._chart_dirty:
                return
            self._chart_dirty = False
        png = self.model.chart_png()  # outside the lock: rendering takes tens of ms
        caption = self._caption()
        with self._lock, self.chart.hold_sync(), self.caption_text.hold_sync():
            self.chart.value = png
            self.caption_text.value = caption

    def _caption(self) -> str:
        import html

        text = html.escape(self.model.chart_text())
        return f'<pre style="line-height:1.3;margin:0">{text}</pre>'

    def frame(self) -> Any:
        """The table shown, as a pandas DataFrame."""
        return self.model.table()

    def close(self) -> None:
        self.stop_updates()
        for child in (self.title, self.table, self.chart, self.caption_text, self.caption):
            child.close()
        super().close()


class Dashboard(LiveView, widgets.VBox):  # type: ignore[misc]
    """Every static operator's card, the feed across operators and the metrics view."""

    def __init__(
        self,
        ops: Iterable[Operator],
        *,
        feed: FeedModel | None = None,
        refresh_rate: float = REFRESH_RATE,
    ) -> None:
        self.cards = [OperatorCard(op, refresh_rate=refresh_rate) for op in ops]
        self.feed = NotificationFeed(model=feed, refresh_rate=refresh_rate)
        self.metrics = MetricsView(refresh_rate=refresh_rate)
        if self.cards:
            cards: widgets.Widget = widgets.GridBox(
                self.cards,
                layout=widgets.Layout(
                    grid_template_columns="repeat(auto-fill, minmax(420px, 1fr))",
                    grid_gap="4px 8px",
                ),
            )
        else:
            cards = widgets.HTML(
                "<i>No operators started: run <code>lensbook.start()</code> or "
                "<code>%lens run SKILL</code>, then show the dashboard again.</i>"
            )
        self.cards_box = cards
        super().__init__(
            children=[
                widgets.HTML("<h3 style='margin:4px 0'>lensbook operators</h3>"),
                cards,
                widgets.HTML("<h4 style='margin:4px 0'>Notifications</h4>"),
                self.feed,
                self.metrics,
            ],
            layout=widgets.Layout(width="auto"),
        )
        self.add_class("lensbook-dashboard")
        register_view(self)

    @property
    def listening(self) -> bool:
        return any(v.listening for v in (*self.cards, self.feed, self.metrics))

    def stop_updates(self) -> None:
        for view in (*self.cards, self.feed, self.metrics):
            view.stop_updates()

    def text(self) -> str:
        parts = ["lensbook operators"]
        parts += [card.text() for card in self.cards] or ["(no operators started)"]
        parts += ["", self.feed.text(), "", self.metrics.text()]
        return "\n".join(parts)

    def close(self) -> None:
        views: list[Any] = [*self.cards, self.feed, self.metrics]
        for view in views:
            view.close()
        super().close()
