"""lensbook in IPython and Jupyter: the `%lens` magics and live widgets.

    %load_ext lensbook
    %lens run runtime --reason "memory keeps growing"
    %lens dashboard
    %lens history

Importing this package imports neither IPython nor ipywidgets: `load_ipython_extension` brings
in the magics, which bring in the widgets on first display. `last()` works in any script.
"""

from __future__ import annotations

import sys
import warnings
from typing import TYPE_CHECKING, Any

from lensbook import last, recorder

if TYPE_CHECKING:
    from lensbook import Coordinator

__all__ = ["last", "last_coordinator", "load_ipython_extension", "unload_ipython_extension"]

_magics: Any = None


def last_coordinator() -> Coordinator | None:
    """The coordinator of the last `%lens investigate` (None before one)."""
    from lensbook.notebook._coordinator_commands import last_coordinator as found

    return found()


def load_ipython_extension(ipython: Any) -> None:
    """Register the `%lens` magics on `ipython` and make their defaults configurable."""
    global _magics
    from lensbook.notebook import _history
    from lensbook.notebook.magics import LensMagics

    if _magics is not None and _magics.shell is ipython:
        return
    magics = LensMagics(shell=ipython, parent=ipython)
    ipython.register_magics(magics)
    if magics not in ipython.configurables:
        ipython.configurables.append(magics)
    _history.journal.listen()
    recorder.start("ipython", shell=ipython)
    _magics = magics
    _register_run_display(ipython)
    _warn_if_threads_cannot_update(ipython)


def _register_run_display(ipython: Any) -> None:
    """`display(run)` of a recorded run shows the live run's widgets, read-only."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return
    if getattr(ipython, "kernel", None) is None:
        return
    from lensbook import Run
    from lensbook.notebook.run_view import show_run

    ipython.display_formatter.ipython_display_formatter.for_type(Run, show_run)


def _warn_if_threads_cannot_update(ipython: Any) -> None:
    """ipykernel 7.0.x drops comm messages sent from other threads: the cards would freeze."""
    kernel = getattr(ipython, "kernel", None)
    version = str(getattr(sys.modules.get("ipykernel"), "__version__", ""))
    if kernel is not None and version.startswith("7.0."):
        warnings.warn(
            f"ipykernel {version} does not send widget updates from threads, so lensbook's "
            "cards will not move while a run goes on; use ipykernel 6.29 or >= 7.1",
            stacklevel=3,
        )


def unload_ipython_extension(ipython: Any) -> None:
    """Remove the `%lens` magics and stop every live view's updates (the widgets stay shown).

    The journal of notifications is forgotten; operators keep running (`lensbook.stop()`).
    The flight recorder stops for the extension: its hooks go unless `lensbook.start()` or
    `lensbook.watch()` also started it.
    """
    global _magics
    from lensbook.notebook import _history

    magics, _magics = _magics, None
    if magics is not None:
        manager = ipython.magics_manager
        if manager.magics["line"].get("lens") is not None:
            del manager.magics["line"]["lens"]
        manager.registry.pop(type(magics).__name__, None)
        if magics in ipython.configurables:
            ipython.configurables.remove(magics)
    _history.journal.stop()
    recorder.stop("ipython")
    views = sys.modules.get("lensbook.notebook.widgets")
    if views is not None:  # else no widget was ever shown
        views.stop_all_updates()
