"""Progress on a terminal: one live status line per operator, or plain lines for logs and jobs.

`StatusLines` folds events into one `CardModel` per operator (the notebook card's own model, so
the terminal and the notebook say the same thing). On a TTY, `rich.live.Live` redraws the lines
in place (a few times a second, from rich's own refresh thread, which reads the models; events
only update them).
When the stream is not a TTY (a pipe, a CI log, a file), it writes one plain line per thing that
matters — a run starting, a state change, a notification, a retry or error, the end — and never
the same line twice in a row, so a log reads as a story instead of a progress bar's frames.
`quiet=True` writes nothing. The final report is printed by the caller, after the live lines stop.
"""

from __future__ import annotations

import sys
import threading
from typing import Any, TextIO

from lensbook import events
from lensbook.cards import CARD_EVENTS, STATE_STYLES, CardModel
from lensbook.events import EventKind

__all__ = ["StatusLines"]

#: event kinds that change a status line: a card's, less the idle lifecycle, plus the retries
_KINDS: frozenset[EventKind] = (CARD_EVENTS - {"operator_started", "operator_stopped"}) | {
    "model_retry",
    "client_fallback",
}


class StatusLines:
    """Live status lines of every operator that runs while it is open (a context manager)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        quiet: bool = False,
        tty: bool | None = None,
        refresh_per_second: float = 8.0,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty() if tty is None else tty
        self.refresh_per_second = refresh_per_second
        self.models: dict[str, CardModel] = {}
        self._lock = threading.Lock()
        self._token: int | None = None
        self._live: Any = None
        #: each operator's last plain line: an unchanged one is not written again
        self._last: dict[str, str] = {}

    def __enter__(self) -> StatusLines:
        if self.quiet:
            return self
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.stream, force_terminal=True)
            # rich's refresh thread asks for the lines each time, so elapsed times tick
            self._live = Live(
                get_renderable=self._renderable,
                console=console,
                refresh_per_second=self.refresh_per_second,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        self._token = events.subscribe(self.on_event, kinds=_KINDS)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            events.unsubscribe(self._token)
            self._token = None
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    # -- events ---------------------------------------------------------------------------

    def on_event(self, event: events.Event) -> None:
        if not event.operator:
            return
        with self._lock:
            model = self.models.get(event.operator)
            if model is None:
                model = self.models[event.operator] = CardModel(event.operator)
                model.action = "waiting"
            model.apply(event)
            if event.kind in ("model_retry", "client_fallback"):
                model.action = f"{event.kind.replace('_', ' ')}: " + str(
                    event.data.get("error") or event.data.get("client") or ""
                )
            line = self._plain(event, model)
        if self._live is None and line is not None and self._last.get(event.operator) != line:
            self._last[event.operator] = line
            self.stream.write(line + "\n")
            self.stream.flush()

    @staticmethod
    def _plain(event: events.Event, m: CardModel) -> str | None:
        d = event.data
        head = f"[{m.operator}]"
        if event.kind == "run_started":
            return f"{head} started with the {d.get('client', 'client')} (run {event.run_id})"
        if event.kind == "state_changed":
            return f"{head} state {d.get('previous')} -> {d.get('state')}: {d.get('reason')}"
        if event.kind == "notification":
            n = d.get("notification") or {}
            return f"{head} notification [{n.get('severity')}] {n.get('anomaly_type')}"
        if event.kind in ("model_retry", "client_fallback", "error", "operator_crashed"):
            return f"{head} {m.action if event.kind != 'error' else d.get('error')}"
        if event.kind == "run_completed":
            return (
                f"{head} finished: {d.get('state')} ({d.get('stop_reason')}) after "
                f"{d.get('iterations')} iteration(s), {d.get('notifications')} notification(s)"
            )
        return None

    def _renderable(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        grid = Table.grid(padding=(0, 1))
        with self._lock:
            models = list(self.models.values())
        if not models:
            grid.add_row(Text("lensbook: waiting for the first run...", style="dim"))
        for m in models:
            elapsed = m.elapsed()
            grid.add_row(
                Text(m.operator, style="bold"),
                Text(m.state.upper(), style=STATE_STYLES.get(m.state, "")),
                Text(f"{m.progress_text:>5}"),
                Text(m.action[:60], overflow="ellipsis", no_wrap=True),
                Text(f"{elapsed:5.1f} s" if elapsed is not None else "", style="dim"),
                Text(f"{m.notifications} notification(s)", style="dim"),
            )
        return grid
