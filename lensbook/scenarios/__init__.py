"""Induced faults: real problems started inside this process, for `lensbook demo` and the tests.

A scenario is one module here. Its fault is a function, `induce`, that starts the problem for
real (threads, leaks, open files...) and returns a cleanup callable; the threaded faults run on
`_harness.Workers`, so the module holds only its fault. The `@scenario(...)` decorator on that
function declares what is particular to the scenario (the skill and reason to investigate with,
the regular expressions a correct diagnosis must match, how long the fault needs to develop);
everything else is said once, where it already is: the scenario's name is its module's, its
title is the first paragraph of the module's docstring. `SCENARIOS` names the suite that
`lensbook demo all`, `lensbook eval` and the tests run; any scenario module (such as the
coordinator's `orders_degraded`) loads with `get_scenario`.
Run one in a child process with ``python -m lensbook.scenarios NAME --json``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from lensbook.limits import MAX_ITERATIONS

__all__ = ["SCENARIOS", "Scenario", "get_scenario", "process_skills", "scenario", "scenario_names"]

#: a fault: starts it in this process and returns its cleanup (or None)
Induce = TypeVar("Induce", bound=Callable[[], Callable[[], None] | None])


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A fault to induce and the diagnosis it calls for."""

    #: the module that defines `induce` names the scenario, unless a name is given
    name: str = ""
    #: the first paragraph of that module's docstring, unless a title is given
    title: str = ""
    skill: str
    reason: str
    #: starts the fault in this process; returns a cleanup callable (or None)
    induce: Callable[[], Callable[[], None] | None]
    #: regular expressions (case-insensitive) that the notifications' text must all match
    expect: tuple[str, ...] = ()
    #: a healthy process: no warning or critical notification, final state healthy
    healthy: bool = False
    #: seconds to let the fault develop before the investigation starts
    settle: float = 1.0
    max_iterations: int = MAX_ITERATIONS
    #: investigate with each of these skills in turn (a healthy workload must raise no alarm
    #: in any of them); empty: `skill` alone
    skills: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        module = self.induce.__module__
        if not self.name:
            object.__setattr__(self, "name", module.rpartition(".")[2])
        if not self.title:
            doc = getattr(sys.modules.get(module), "__doc__", None) or ""
            # a title is shown as plain text (terminal tables, widget headers): no reST marks
            summary = " ".join(doc.strip().split("\n\n")[0].split()).replace("``", "")
            object.__setattr__(self, "title", summary.removesuffix(".") or self.name)


#: every scenario declared by `@scenario`, by its module's name
_DECLARED: dict[str, Scenario] = {}


def scenario(**declaration: Any) -> Callable[[Induce], Induce]:
    """Declare the decorated fault as its module's scenario; `declaration` holds `Scenario`'s
    other fields (`skill` and `reason` at least). A misspelt field fails when the module is
    imported, with `Scenario`'s own TypeError."""

    def declare(induce: Induce) -> Induce:
        _DECLARED[induce.__module__] = Scenario(induce=induce, **declaration)
        return induce

    return declare


#: the suite, by module name; each module declares its scenario with `@scenario`
SCENARIOS: tuple[str, ...] = (
    "cache_leak",
    "callback_leak",
    "fd_leak",
    "deadlock",
    "stuck_task",
    "cpu_spin",
    "del_cycles",
    "out_cache",
    "error_storm",
    "healthy",
    # modelled on public bug reports (each module's docstring cites its source)
    "blocking_coroutine",
    "lock_after_cancel",
    "task_exception_lost",
    "dead_consumers",
    "socket_leak",
    "zombie_children",
    "blocked_log_handler",
    "exception_cycles",
    "last_error_retention",
    "duplicate_handlers",
    "executor_per_request",
    "task_pileup",
    "past_retry_storm",
    "native_leak",
    # busy but healthy workloads: no skill may raise an alarm
    "healthy_etl",
    "healthy_server",
    "healthy_pool",
    "healthy_native",
    # issue 14's own: attribution to user code, retention roots, locks by any expression
    "ring_deadlock",
    "runtime_leak",
    "method_cache_leak",
    "figure_leak",
    "out_cache_61mb",
)


def process_skills() -> tuple[str, ...]:
    """The built-in skills that judge this process (all but `system`, which judges the host: a
    host saturated by other processes is a true finding, not a false alarm about this one)."""
    from lensbook.skills import builtin_ids

    return tuple(s for s in builtin_ids() if s != "system")


def scenario_names() -> list[str]:
    return list(SCENARIOS)


def get_scenario(name: str) -> Scenario:
    """The scenario of module ``lensbook.scenarios.<name>``: one of the suite, or another module
    that declares one (the coordinator's scenarios). KeyError names the suite if there is none."""
    module = f"{__name__}.{name}"
    if name.isidentifier() and not name.startswith("_"):
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    if module not in _DECLARED:
        raise KeyError(f"no scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return _DECLARED[module]
