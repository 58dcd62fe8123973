"""A recorded run shown with the same widgets as a live one, read-only."""

from __future__ import annotations

import html
from typing import Any

import ipywidgets as widgets

from lensbook.cards import CardModel
from lensbook.events import Event
from lensbook.limits import MAX_ITERATIONS
from lensbook.notebook.widgets import MetricsView, NotificationFeed, OperatorCard
from lensbook.records import Run
from lensbook.sampling import MetricsStore

__all__ = ["RunView", "show_run"]


class RunView(widgets.VBox):  # type: ignore[misc]
    """The card, the notification feed and the metrics of a recorded run (no live updates)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        result = run.result
        card = OperatorCard(
            model=CardModel(
                run.operator,
                title=str(run.header.get("skill_title") or run.skill),
                max_iterations=int(run.header.get("max_iterations") or MAX_ITERATIONS),
            ),
            follow=False,
        )
        feed = NotificationFeed(run.operator)
        # the record's own numbers: the live sampler's store holds this process's, not the run's
        numbers = MetricsStore()
        for e in run.of_kind("snapshot"):
            skill = str(e["data"].get("skill") or run.skill)
            numbers.record(skill, e["data"].get("data") or {}, e["at"])
        metrics = MetricsView(run.skill, store=numbers)
        for view in (card, feed, metrics):
            view.stop_updates()
        for entry in run.events:
            event = Event(
                kind=entry["kind"],
                operator=run.operator,
                run_id=run.run_id,
                data=entry["data"],
                at=entry["at"],
                seq=entry.get("seq", 0),
            )
            card.model.apply(event)
            if feed.model.wants(event):
                feed.model.apply(event)
            if metrics.model.wants(event):
                metrics.model.apply(event)
        if run.complete:
            card.model.finish(result)
        else:
            card.model.fail("the record ends before the run completed")
        card.flush()
        feed.flush()
        metrics.flush()
        metrics.chart.value = metrics.model.chart_png()
        metrics.caption_text.value = metrics._caption()
        head = (
            f"<b>Recorded run</b> <code>{html.escape(run.run_id)}</code> · "
            f"{html.escape(str(run.path.name))} · client {html.escape(result.client)} · "
            f"lensbook {html.escape(str(run.header.get('lensbook')))}"
        )
        super().__init__(children=[widgets.HTML(value=head), card, feed, metrics])
        self.add_class("lensbook-run-view")

    def __repr__(self) -> str:
        return self.run.summary()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(bundle, dict):
            bundle["text/plain"] = self.run.summary()
        return bundle


def show_run(run: Run) -> None:
    """IPython display hook for `Run` objects, registered by the extension.

    An operator run shows as its card, feed and metrics; a coordinator run (no card of its
    own) as its summary, insights and findings, the postmortem's own views."""
    from IPython.display import display

    show: Any = display  # IPython's display is untyped
    if run.kind == "coordinator":
        from lensbook.review import show as review

        summary = review.Shown(run.summary(), f"<pre>{html.escape(run.summary())}</pre>")
        for part in (summary, review.insights(run), review.findings(run)):
            show(part)
        return
    show(RunView(run))
