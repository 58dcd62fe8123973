"""`%lens investigate` and `%lens watch`: the magic glue between the coordinator and its views.

`LensMagics` adds these subcommands (`add_parsers`) and calls `investigate` and `watch_command`
with itself, for its settings only: the `shell`, `refresh_rate` and whether to show widgets
(`use_widgets()`), as the `MagicSettings` protocol says. A bad option raises
`lensbook.options.OptionError`, which the magic reports as a `UsageError`. The options are
`lensbook.options`' (shared with the command line); the views are
`lensbook.notebook.coordinator_view`'s."""

from __future__ import annotations

import argparse
import itertools
from typing import TYPE_CHECKING, Any, Protocol

import lensbook
from lensbook import options
from lensbook.notebook._reports import Investigated, Report

if TYPE_CHECKING:
    from lensbook.notebook.coordinator_view import CoordinatorView

__all__ = ["MagicSettings", "add_parsers", "investigate", "last_coordinator", "watch_command"]

_names = itertools.count(1)
_last: lensbook.Coordinator | None = None


class MagicSettings(Protocol):
    """What the glue reads of `LensMagics`."""

    shell: Any
    refresh_rate: float

    def use_widgets(self) -> bool: ...


def add_parsers(sub: Any) -> None:
    """Add the `investigate` and `watch` subcommands to `%lens`'s subparsers."""
    inv = sub.add_parser(
        "investigate",
        help="coordinate several operators on one question, with a live view",
        description="Run the coordinator: it invokes the operators that matter, correlates "
        "their notifications into insights, and stops them at the end. Blocks until it ends "
        "unless --background; Kernel > Interrupt cancels it.",
    )
    options.add_investigate_options(inv)
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
    options.add_watch_options(watch)


def _client(magics: MagicSettings, name: str | None) -> Any:
    """`--client NAME` as the coordinator's chain, resolved as `%lens run` resolves it."""
    from IPython.core.error import UsageError

    from lensbook.coordinator import coordinator_chain

    if not name:
        return None
    namespace = magics.shell.user_ns if magics.shell is not None else {}
    try:
        return coordinator_chain(name, namespace=namespace)
    except lensbook.LensbookError as exc:
        raise UsageError(f"%lens investigate: {exc}") from None


def investigate(magics: MagicSettings, args: argparse.Namespace) -> Any:
    """`%lens investigate --reason ... [--skills a,b]`: a coordinator run with a live view."""
    global _last
    skills = options.skill_list(args.skills)
    coordinator = lensbook.Coordinator(
        name=f"investigate-{next(_names)}",
        skills=skills,
        client=_client(magics, args.client),
        strategy=args.strategy,
        deadline=args.deadline,
    )
    _last = coordinator
    view: CoordinatorView | None = None
    if magics.use_widgets():
        from lensbook.notebook.coordinator_view import CoordinatorView

        view = CoordinatorView(coordinator, args.reason, refresh_rate=magics.refresh_rate)
        view.show()
        if args.background:
            shown = view
            coordinator.on_complete = lambda result: shown.finish(result)
    coordinator.run_in_background({"reason": args.reason})
    if args.background:
        if view is not None:
            return None
        return Report(
            f"{coordinator.name}: investigating in the background; "
            "lensbook.notebook.last_coordinator().wait() returns its result"
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


def last_coordinator() -> lensbook.Coordinator | None:
    """The coordinator of the last `%lens investigate`."""
    return _last


def watch_command(magics: MagicSettings, args: argparse.Namespace) -> Any:
    """`%lens watch start|stop|status`: the process's watcher, with a compact live view."""
    from lensbook.coordinator import current_watcher, stop_watching
    from lensbook.notebook._coordinator_models import WatchModel

    if args.action == "stop":
        watcher = current_watcher()
        if watcher is None:
            return Report("watch: not watching")
        stop_watching()
        return Report(f"watch: stopped after {watcher.samples} samples")
    if args.action == "start":
        watcher = lensbook.watch(options.skill_list(args.skills), **options.watch_settings(args))
    else:
        found = current_watcher()
        if found is None:
            return Report("watch: not watching (%lens watch start)")
        watcher = found
    model = WatchModel(watcher)
    if not magics.use_widgets():
        return Report(model.text(), model.html())
    from lensbook.notebook.coordinator_view import WatchView

    WatchView(watcher, refresh_rate=min(magics.refresh_rate, 2.0)).show()
    return None
