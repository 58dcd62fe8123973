"""Induced faults: real problems started inside this process, for `lensbook demo` and the tests.

A `Scenario` names the fault, the skill and reason to investigate with, and what a correct
diagnosis must name (regular expressions matched against the notifications' text). `induce()`
starts the fault for real (threads, leaks, open files...) and returns a cleanup callable; the
threaded faults run on `_harness.Workers`, so a scenario's module holds only its fault.
Run one in a child process with ``python -m lensbook.scenarios NAME --json``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from lensbook.limits import MAX_ITERATIONS

__all__ = ["SCENARIOS", "Scenario", "get_scenario", "process_skills", "scenario_names"]


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A fault to induce and the diagnosis it calls for."""

    #: the module that defines `induce` names the scenario, unless a name is given
    name: str = ""
    title: str
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
        if not self.name:
            object.__setattr__(self, "name", self.induce.__module__.rpartition(".")[2])


#: scenario name -> "module:ATTRIBUTE", imported on demand
SCENARIOS: dict[str, str] = {
    "cache_leak": "lensbook.scenarios.cache_leak:SCENARIO",
    "callback_leak": "lensbook.scenarios.callback_leak:SCENARIO",
    "fd_leak": "lensbook.scenarios.fd_leak:SCENARIO",
    "deadlock": "lensbook.scenarios.deadlock:SCENARIO",
    "stuck_task": "lensbook.scenarios.stuck_task:SCENARIO",
    "cpu_spin": "lensbook.scenarios.cpu_spin:SCENARIO",
    "del_cycles": "lensbook.scenarios.del_cycles:SCENARIO",
    "out_cache": "lensbook.scenarios.out_cache:SCENARIO",
    "error_storm": "lensbook.scenarios.error_storm:SCENARIO",
    "healthy": "lensbook.scenarios.healthy:SCENARIO",
    # modelled on public bug reports (each module's docstring cites its source)
    "blocking_coroutine": "lensbook.scenarios.blocking_coroutine:SCENARIO",
    "lock_after_cancel": "lensbook.scenarios.lock_after_cancel:SCENARIO",
    "task_exception_lost": "lensbook.scenarios.task_exception_lost:SCENARIO",
    "dead_consumers": "lensbook.scenarios.dead_consumers:SCENARIO",
    "socket_leak": "lensbook.scenarios.socket_leak:SCENARIO",
    "zombie_children": "lensbook.scenarios.zombie_children:SCENARIO",
    "blocked_log_handler": "lensbook.scenarios.blocked_log_handler:SCENARIO",
    "exception_cycles": "lensbook.scenarios.exception_cycles:SCENARIO",
    "last_error_retention": "lensbook.scenarios.last_error_retention:SCENARIO",
    "duplicate_handlers": "lensbook.scenarios.duplicate_handlers:SCENARIO",
    "executor_per_request": "lensbook.scenarios.executor_per_request:SCENARIO",
    "task_pileup": "lensbook.scenarios.task_pileup:SCENARIO",
    "past_retry_storm": "lensbook.scenarios.past_retry_storm:SCENARIO",
    # busy but healthy workloads: no skill may raise an alarm
    "healthy_etl": "lensbook.scenarios.healthy_etl:SCENARIO",
    "healthy_server": "lensbook.scenarios.healthy_server:SCENARIO",
    "healthy_pool": "lensbook.scenarios.healthy_pool:SCENARIO",
    # issue 14's own: attribution to user code, retention roots, locks by any expression
    "ring_deadlock": "lensbook.scenarios.ring_deadlock:SCENARIO",
    "runtime_leak": "lensbook.scenarios.runtime_leak:SCENARIO",
    "method_cache_leak": "lensbook.scenarios.method_cache_leak:SCENARIO",
    "figure_leak": "lensbook.scenarios.figure_leak:SCENARIO",
    "out_cache_61mb": "lensbook.scenarios.out_cache_61mb:SCENARIO",
}


def process_skills() -> tuple[str, ...]:
    """The built-in skills that judge this process (all but `system`, which judges the host: a
    host saturated by other processes is a true finding, not a false alarm about this one)."""
    from lensbook.skills import builtin_ids

    return tuple(s for s in builtin_ids() if s != "system")


def scenario_names() -> list[str]:
    return list(SCENARIOS)


def get_scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise KeyError(f"no scenario {name!r}; known: {', '.join(SCENARIOS)}")
    module_name, attr = SCENARIOS[name].split(":")
    scenario: Scenario = getattr(importlib.import_module(module_name), attr)
    return scenario
