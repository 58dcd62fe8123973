"""The operator registry: the static operators, one per skill, started by `lensbook.start()` and
found by skill id (`operators()`, `get_operator()`); `run`/`arun` send a run to one of them, and
`last()` returns the latest run's result, however it was started (`run`, `%lens run`, a run in
the background), from the operators' own `last_result`: nothing else needs to report it."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable, Mapping
from typing import Any

from lensbook import _loop, recorder, records
from lensbook._errors import LensbookError, OperatorNotStarted, RunFailed, UnknownSkill, WrongThread
from lensbook.clients.base import LLMClient
from lensbook.limits import SAMPLE_INTERVAL, sampling_interval
from lensbook.operator import started as _started
from lensbook.operator.actor import Operator
from lensbook.operator.investigation import release_probe_threads
from lensbook.skills import builtin_ids, intrusion, resolve_skill
from lensbook.types import NotificationList

__all__ = ["arun", "get_operator", "last", "operators", "run", "start", "stop"]


def start(
    skills: Iterable[Any] | None = None,
    *,
    client: LLMClient | str | None = None,
    client_registry: Mapping[str, Any] | None = None,
    sample_interval: float | None = SAMPLE_INTERVAL,
    history: bool = True,
    **operator_defaults: Any,
) -> list[Operator]:
    """Start the lens loop and one idle static operator per skill (all built-ins by default).

    Idempotent: a skill whose operator is already started keeps it. The flight recorder
    (`lensbook.recorder`) starts keeping the process's history unless `history` is False.
    Between runs the runtime skill's snapshot is sampled every `sample_interval` seconds into
    the metrics store (None turns it off); during runs every snapshot is recorded.
    """
    if sample_interval is not None:  # checked before anything starts
        sampling_interval(sample_interval, "sample_interval")
    wanted = list(skills) if skills is not None else builtin_ids()
    started: list[Operator] = []
    for skill in wanted:
        instance = resolve_skill(skill)
        op = _started.get(instance.id)
        if op is None or not op.started:
            op = Operator.start(
                instance, client=client, client_registry=client_registry, **operator_defaults
            )
            _started.add(instance.id, op)
        started.append(op)
    if history:
        recorder.start("api", sample_interval=sample_interval)
    else:
        recorder.start_sampler(sample_interval)
    return started


def operators() -> dict[str, Operator]:
    """The static operators by skill id."""
    return _started.operators()


def get_operator(skill: Any) -> Operator:
    """The static operator for a skill id, Skill class or instance (or an Operator itself)."""
    if isinstance(skill, Operator):
        return skill
    sid = skill if isinstance(skill, str) else resolve_skill(skill).id
    op = _started.get(sid)
    if op is None:
        try:
            resolve_skill(sid)
        except UnknownSkill as exc:
            raise OperatorNotStarted(f"{exc}; and no operator was started for it") from None
        raise OperatorNotStarted(
            f"no operator started for skill {sid!r}: call lensbook.start() "
            f"(or lensbook.start([{sid!r}])) first"
        )
    return op


def run(skill: Any, context: Mapping[str, Any] | None = None, **options: Any) -> NotificationList:
    """Run the static operator for `skill` and return its notifications (`.result` has all)."""
    return get_operator(skill).run(context, **options)


async def arun(
    skill: Any, context: Mapping[str, Any] | None = None, **options: Any
) -> NotificationList:
    """The async twin of `run`."""
    return await get_operator(skill).arun(context, **options)


def last(
    skill: str | None = None, *, wait: bool = False, timeout: float | None = None
) -> NotificationList | None:
    """The latest run's notifications (`.result` holds the whole result), or None if none ran.

    With `skill`, the latest run of that operator. With `wait=True`, first wait for a run still
    going in the background (`%lens run ... --background`, `Operator.run_in_background`); a run
    that failed without any result raises its error. A result outlives `lensbook.stop()`.
    """
    if wait:
        # one deadline for them all; only runs still going or queued are waited for (an
        # operator's old failure is not this call's to raise)
        deadline = None if timeout is None else time.monotonic() + timeout
        for name, op in _started.operators().items():
            if skill is None or name == skill:
                status = op.status()
                if status.running or status.queued:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    _wait_for(op, left)
    found = [r for name, r in _started.last_results().items() if skill is None or name == skill]
    if not found:
        return None
    return NotificationList(max(found, key=lambda r: r.finished_at))


def _wait_for(op: Operator, timeout: float | None) -> None:
    """Wait for `op`'s latest run, if it was ever asked to run (`TimeoutError` after `timeout`)."""
    try:
        op.wait(timeout)
    except RunFailed as exc:
        if exc.result is None:
            raise
    except WrongThread:
        raise
    except LensbookError:
        pass  # `wait` says this operator has not been asked to run: nothing to wait for


def stop() -> None:
    """Stop every static operator, the flight recorder (its hooks go) and the lens loop, and
    undo every change lensbook made to the process (tracing, wrappers, hooks, handlers; see
    `lensbook.skills.intrusion`)."""
    recorder.stop()
    ops = _started.take_all()
    if _loop.is_running() and not _loop.in_lens_thread():
        for op in ops:
            with contextlib.suppress(Exception):  # stopping must not fail half way
                op.stop()
    watcher = sys.modules.get("lensbook.coordinator.watcher")
    if watcher is not None:
        watcher.stop_watching()
    _loop.stop_loop()
    # what probes switched on outside runs (direct calls) and the passive observers' hooks
    intrusion.undo_all("lensbook stopped")
    release_probe_threads()
    records.writer.close_open()
