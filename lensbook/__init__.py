"""lensbook: LLM-driven investigation of a live Python process, from a notebook.

    import lensbook
    lensbook.start()                                   # one idle operator per built-in skill
    notes = lensbook.run("runtime", reason="memory keeps growing")
    notes.result                                       # state, snapshots, iterations, usage

Nothing happens at import: the lens loop (a daemon thread with its own asyncio loop) starts on
first use and stops with `lensbook.stop()` or at exit.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from lensbook import events
from lensbook._errors import (
    ClientNotConfigured,
    LensbookError,
    LLMError,
    OperatorCrashed,
    OperatorNotStarted,
    OperatorStopped,
    ProviderError,
    RunFailed,
    UnknownSkill,
    WrongThread,
)
from lensbook._triage import Triage, triage
from lensbook._version import __version__
from lensbook.clients import LLMClient, ScriptedClient
from lensbook.coordinator import Coordinator, CoordinatorResult, Insight, watch
from lensbook.operator.actor import Operator
from lensbook.operator.registry import arun, get_operator, last, operators, run, start, stop
from lensbook.records import Run, load_run, runs
from lensbook.records.replay import replay
from lensbook.review import postmortem
from lensbook.skills import Skill, probe, register_skill
from lensbook.types import (
    CompletionResult,
    MessageResponse,
    Notification,
    NotificationList,
    Snapshot,
    Status,
)

if TYPE_CHECKING:
    import pandas as pd


def metrics(skill: str | None = None) -> pd.DataFrame:
    """The sampled metrics (time, skill, metric, value) as a pandas DataFrame."""
    from lensbook.sampling import store

    return store.frame(skill)


def history(kinds: Iterable[str] | str | None = None, since: float | None = None) -> pd.DataFrame:
    """The flight recorder's history (`lensbook.recorder`) as a pandas DataFrame.

    One row per event, oldest first: id ("h-..."), time (UTC), kind, source, summary (one line)
    and detail (a dict). `kinds` and `since` (epoch seconds) narrow it.
    """
    from lensbook.recorder.frame import history_frame

    return history_frame(kinds, since)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext lensbook`: register the `%lens` magics (see `lensbook.notebook`)."""
    from lensbook.notebook import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext lensbook`: remove the magics and stop the live widgets' updates."""
    from lensbook.notebook import unload_ipython_extension as unload

    unload(ipython)


__all__ = [
    "ClientNotConfigured",
    "CompletionResult",
    "Coordinator",
    "CoordinatorResult",
    "Insight",
    "LLMClient",
    "LLMError",
    "LensbookError",
    "MessageResponse",
    "Notification",
    "NotificationList",
    "Operator",
    "OperatorCrashed",
    "OperatorNotStarted",
    "OperatorStopped",
    "ProviderError",
    "Run",
    "RunFailed",
    "ScriptedClient",
    "Skill",
    "Snapshot",
    "Status",
    "Triage",
    "UnknownSkill",
    "WrongThread",
    "__version__",
    "arun",
    "events",
    "get_operator",
    "history",
    "last",
    "load_run",
    "metrics",
    "operators",
    "postmortem",
    "probe",
    "register_skill",
    "replay",
    "run",
    "runs",
    "start",
    "stop",
    "triage",
    "watch",
]
