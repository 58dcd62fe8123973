"""What the `%lens` commands return: display objects with both text/plain and text/html.

A command answers with a display object instead of printing (the last line of a cell shows it,
`_` keeps it): `Report` for a text answer, `RunNotes` and `Investigated` for a run whose live
view above already shows the findings, so the answer itself is one line.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from lensbook.types import NotificationList

if TYPE_CHECKING:
    from lensbook.coordinator import CoordinatorResult

__all__ = ["Investigated", "Report", "RunNotes"]


class Report:
    """A display object with both text/plain and text/html (the magics' answers)."""

    def __init__(self, text: str, html_: str | None = None) -> None:
        self.text = text
        self.html = html_ if html_ is not None else f"<pre>{html.escape(text)}</pre>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/plain": self.text, "text/html": self.html}

    def __repr__(self) -> str:
        return self.text


class _OneLine:
    """HTML of an answer whose view is shown above it: its text, small."""

    def _repr_html_(self) -> str:
        return f"<small>{html.escape(repr(self))}</small>"


class RunNotes(_OneLine, NotificationList):
    """A run's notifications, shown as one line: its card above already shows the findings."""

    def __repr__(self) -> str:
        r = self.result
        return (
            f"{r.operator}: {r.state}, {len(r.notifications)} notification(s) after "
            f"{r.iterations} iteration(s), stopped by {r.stop_reason} "
            "(the card above shows them; _.result has everything)"
        )


class Investigated(_OneLine):
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
