"""The dashboard of a cluster run: one live card per worker, the feed, per-worker metric charts.

A worker's run reaches the notebook as events under the operator name ``<skill>@<worker
address>`` (see `lensbook.dask`), so each worker's card is an ordinary `OperatorCard` following
that name, with its own notification feed and a `MetricsView` of that worker's snapshots. The
view is made and shown on the kernel thread before the run starts; `finish` sets every card from
the cluster run's result, exactly, when it ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from lensbook.cards import CardModel
from lensbook.limits import MAX_ITERATIONS
from lensbook.notebook.widgets import (
    REFRESH_RATE,
    LiveView,
    MetricsView,
    OperatorCard,
    register_view,
)

if TYPE_CHECKING:
    from lensbook.dask import ClusterResult

__all__ = ["ClusterDashboard", "worker_operator"]


def worker_operator(skill: str, worker: str) -> str:
    """The operator name a worker's run of `skill` has in the notebook's events."""
    return f"{skill}@{worker}"


class ClusterDashboard(LiveView, widgets.VBox):  # type: ignore[misc]
    """One card (with its feed and metric chart) per worker of a cluster run of `skill`."""

    def __init__(
        self,
        skill: str,
        workers: Sequence[str],
        *,
        max_iterations: int = MAX_ITERATIONS,
        refresh_rate: float = REFRESH_RATE,
        charts: bool = True,
    ) -> None:
        self.skill = skill
        self.cards: dict[str, OperatorCard] = {}
        self.metrics: dict[str, MetricsView] = {}
        boxes = []
        for worker in workers:
            name = worker_operator(skill, worker)
            model = CardModel(name, f"{skill} on {worker}", max_iterations)
            model.queue(max_iterations)
            card = OperatorCard(model=model, refresh_rate=refresh_rate, feed=True, follow=False)
            self.cards[worker] = card
            children: list[widgets.Widget] = [card]
            if charts:
                view = MetricsView(name, refresh_rate=refresh_rate, max_charts=2)
                self.metrics[worker] = view
                children.append(view)
            boxes.append(widgets.VBox(children, layout=widgets.Layout(width="auto")))
        self.title = widgets.HTML(
            f"<h3 style='margin:4px 0'>lensbook: {skill} on {len(self.cards)} Dask worker(s)</h3>"
        )
        grid = widgets.GridBox(
            boxes,
            layout=widgets.Layout(
                grid_template_columns="repeat(auto-fill, minmax(420px, 1fr))",
                grid_gap="4px 8px",
            ),
        )
        super().__init__(children=[self.title, grid], layout=widgets.Layout(width="auto"))
        self.add_class("lensbook-cluster-dashboard")
        register_view(self)

    @property
    def listening(self) -> bool:
        return any(v.listening for v in self._views())

    def _views(self) -> list[Any]:
        return [*self.cards.values(), *self.metrics.values()]

    def stop_updates(self) -> None:
        for view in self._views():
            view.stop_updates()

    def finish(self, result: ClusterResult | None = None, error: str | None = None) -> None:
        """Show each worker's exact end (its result, or why it has none)."""
        parts = {w.worker: w for w in result.workers} if result is not None else {}
        for worker, card in self.cards.items():
            part = parts.get(worker)
            if part is not None and part.result is not None:
                card.finish(part.result)
            else:
                card.finish(error=(part.error if part is not None else error) or "no result")
        for view in self.metrics.values():
            view.throttle.now()
            view.chart_throttle.now()
            view.stop_updates()
        self.refresh_display()

    def text(self) -> str:
        parts = [f"lensbook: {self.skill} on {len(self.cards)} Dask worker(s)"]
        parts += [card.text() for card in self.cards.values()]
        return "\n".join(parts)

    def close(self) -> None:
        for view in self._views():
            view.close()
        super().close()
