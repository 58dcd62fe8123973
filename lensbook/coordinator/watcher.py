"""The watcher: continuous monitoring that calls the coordinator when metrics leave their range.

    watcher = lensbook.watch(interval=30)      # learning -> active -> (anomaly) -> cooldown
    watcher.status()                           # state, samples, anomalies, triggers
    watcher.save_baseline("baseline.json")     # lensbook.watch(baseline="baseline.json") later

Every `interval` seconds one task on the lens loop takes the watched skills' snapshots (one hop
to a worker thread; each snapshot costs microseconds) and records them in the metrics store.
During `learning` seconds it learns each metric's baseline (mean, standard deviation,
percentiles); counters that only grow (``errors_total``, ``gc_collections``...) are watched as
per-second rates. Then a metric is out of range when it is `z_threshold` standard deviations
from its mean *and* outside the learned 5th-95th percentiles; the deviation has a floor (5% of
the mean, and one unit of the metric: 1 for counts, 1 MB, 5 ms, one point of percent, one
event per second or per sample for rates) so that a flat baseline does not turn every small
change into an anomaly.
A metric out of range for `consecutive` samples is an anomaly; anomalies escalate: with
`auto_trigger` a coordinator investigation starts with them as its context (at most
`max_triggers_per_hour`), and the watcher cools down (`cooldown` seconds after the
investigation ends) before it escalates again. Clocks, limits and host-wide figures (other
processes move them) are not watched.

Which skills are watched by default, which snapshot keys are counters and which are not
watched, each skill declares itself (`Skill.watched`, `Skill.counters`, `Skill.unwatched`,
gathered by `lensbook.skills.knowledge`): a registered user skill is watched like a built-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, NamedTuple

from typing_extensions import TypedDict, Unpack

from lensbook import _loop, events, limits, recorder
from lensbook.coordinator.insights import CoordinatorResult
from lensbook.sampling import store as metrics_store
from lensbook.skills import knowledge, resolve_skill
from lensbook.skills.base import SkillLike
from lensbook.types import new_id

__all__ = [
    "Anomaly",
    "Baseline",
    "MetricBaseline",
    "Trigger",
    "WatchOptions",
    "WatchState",
    "WatchStatus",
    "Watcher",
    "current_watcher",
    "default_skills",
    "stop_watching",
    "watch",
]

_log = logging.getLogger("lensbook.watch")

WatchState = Literal["learning", "active", "cooldown", "stopped"]

#: the defaults of `Watcher` and `watch` (named once; the command line and the magic leave an
#: option unset to mean these): seconds between samples, seconds of learning, standard
#: deviations out of range, samples in a row that make an anomaly, seconds of cooldown after an
#: investigation, investigations an hour
INTERVAL = 30.0
LEARNING = 900.0
Z_THRESHOLD = 3.0
CONSECUTIVE = 3
COOLDOWN = 900.0
MAX_TRIGGERS_PER_HOUR = 3
#: samples learning needs at least, however short its window
MIN_LEARNING_SAMPLES = 5
HOUR = 3600.0


def default_skills() -> tuple[str, ...]:
    """The skills watched when none are named: those that declare `watched` (cheap snapshots
    of this process, no host-wide figures)."""
    return knowledge.gather().watched


def metric_kind(
    name: str, value: Any, known: knowledge.Knowledge | None = None
) -> Literal["gauge", "rate"] | None:
    """How a snapshot value is watched: as it is, as a per-second rate, or not at all (as the
    skills declare: `Skill.counters`, `Skill.unwatched`; `known` saves gathering it again)."""
    known = known or knowledge.gather()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or name in known.unwatched:
        return None
    if not math.isfinite(float(value)):
        return None
    return "rate" if name.endswith("_total") or name in known.counters else "gauge"


def _unit(name: str, kind: str, values: list[float], interval: float) -> float:
    """The smallest change of a metric worth a z-score (see the module docstring)."""
    if kind == "rate":
        return 1.0 / max(interval, 1e-3)
    if name.endswith("_ms"):
        return 5.0
    if name.endswith(("_mb", "_percent", "_per_s")):
        return 1.0
    if name.endswith("_s"):
        return 0.5
    if all(float(v).is_integer() for v in values):
        return 1.0
    return 0.0


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


@dataclass(frozen=True)
class MetricBaseline:
    """What is normal for one metric: learned mean, deviation, percentiles, and its unit."""

    skill: str
    metric: str
    kind: Literal["gauge", "rate"]
    n: int
    mean: float
    std: float
    p5: float
    p50: float
    p95: float
    min: float
    max: float
    unit: float

    @classmethod
    def learn(
        cls,
        skill: str,
        metric: str,
        kind: Literal["gauge", "rate"],
        values: list[float],
        interval: float,
    ) -> MetricBaseline:
        ordered = sorted(values)
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
        return cls(
            skill=skill,
            metric=metric,
            kind=kind,
            n=n,
            mean=mean,
            std=std,
            p5=_percentile(ordered, 0.05),
            p50=_percentile(ordered, 0.5),
            p95=_percentile(ordered, 0.95),
            min=ordered[0],
            max=ordered[-1],
            unit=_unit(metric, kind, values, interval),
        )

    @property
    def sigma(self) -> float:
        """The deviation a z-score divides by: the learned one, floored."""
        return max(self.std, 0.05 * abs(self.mean), self.unit, 1e-9)

    def z(self, value: float) -> float:
        return (value - self.mean) / self.sigma

    def out_of_range(self, value: float, z_threshold: float) -> bool:
        return abs(self.z(value)) >= z_threshold and not (self.p5 <= value <= self.p95)


@dataclass
class Baseline:
    """Every watched metric's `MetricBaseline`; saved and loaded as JSON."""

    metrics: dict[str, MetricBaseline]
    interval: float
    samples: int
    created_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "lensbook-baseline",
            "version": 1,
            "created_at": self.created_at,
            "interval": self.interval,
            "samples": self.samples,
            "metrics": {k: asdict(m) for k, m in self.metrics.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Baseline:
        if data.get("format") != "lensbook-baseline":
            raise ValueError("not a lensbook baseline (format is not 'lensbook-baseline')")
        metrics = {k: MetricBaseline(**v) for k, v in dict(data.get("metrics") or {}).items()}
        return cls(
            metrics=metrics,
            interval=float(data.get("interval", 30.0)),
            samples=int(data.get("samples", 0)),
            created_at=str(data.get("created_at", "")),
        )

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the baseline as JSON (a person can read it)."""
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle, indent=1)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Baseline:
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))


@dataclass(frozen=True)
class Anomaly:
    """A metric out of its learned range for `samples` consecutive samples."""

    skill: str
    metric: str
    kind: str
    value: float
    mean: float
    std: float
    z: float
    samples: int
    since: float
    severity: Literal["warning", "critical"]

    @property
    def key(self) -> str:
        return f"{self.skill}.{self.metric}"

    def describe(self) -> str:
        what = f"{self.key}{' rate' if self.kind == 'rate' else ''}"
        per = "/s" if self.kind == "rate" else ""
        return (
            f"{what} {self.value:.4g}{per} (baseline {self.mean:.4g} ± {self.std:.2g}, "
            f"z={self.z:+.1f}) for {self.samples} samples"
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "key": self.key, "text": self.describe()}


@dataclass
class Trigger:
    """One escalation: the anomalies, what the watcher did, and the investigation's outcome."""

    at: float
    anomalies: list[Anomaly]
    #: "investigation" (a coordinator run was started), "detected" (auto_trigger off) or
    #: "suppressed" (the hourly limit was reached)
    kind: Literal["investigation", "detected", "suppressed"]
    id: str = field(default_factory=new_id)
    result: CoordinatorResult | None = None
    error: str | None = None
    finished_at: float | None = None

    @property
    def running(self) -> bool:
        return self.kind == "investigation" and self.finished_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "kind": self.kind,
            "anomalies": [a.to_dict() for a in self.anomalies],
            "finished_at": self.finished_at,
            "error": self.error,
            "insights": len(self.result.insights) if self.result is not None else None,
            "stop_reason": self.result.stop_reason if self.result is not None else None,
        }


class WatchStatus(NamedTuple):
    """Where a watcher is: its state, samples taken, current anomalies and escalations."""

    state: WatchState
    samples: int
    metrics: int
    anomalies: tuple[Anomaly, ...]
    triggers: int
    suppressed: int
    cooldown_left: float
    investigating: bool


class Watcher:
    """Samples skills' snapshots, learns baselines, escalates anomalies (see the module)."""

    def __init__(
        self,
        skills: Iterable[Any] | None = None,
        *,
        interval: float = INTERVAL,
        learning: float = LEARNING,
        z_threshold: float = Z_THRESHOLD,
        consecutive: int = CONSECUTIVE,
        cooldown: float = COOLDOWN,
        max_triggers_per_hour: int = MAX_TRIGGERS_PER_HOUR,
        auto_trigger: bool = True,
        baseline: Baseline | str | os.PathLike[str] | None = None,
        coordinator: Mapping[str, Any] | None = None,
        on_anomaly: Callable[[Anomaly], Any] | None = None,
        on_trigger: Callable[[Trigger], Any] | None = None,
    ) -> None:
        interval = limits.sampling_interval(interval)
        if consecutive < 1:
            raise ValueError("consecutive must be at least 1")
        if z_threshold <= 0:
            raise ValueError("z_threshold must be positive")
        self.skills: list[SkillLike] = [
            resolve_skill(s) for s in (skills if skills is not None else default_skills())
        ]
        self.interval = float(interval)
        self.learning = float(learning)
        self.z_threshold = float(z_threshold)
        self.consecutive = int(consecutive)
        self.cooldown = float(cooldown)
        self.max_triggers_per_hour = int(max_triggers_per_hour)
        self.auto_trigger = auto_trigger
        self.coordinator_options = dict(coordinator or {})
        self.on_anomaly = on_anomaly
        self.on_trigger = on_trigger
        self.baseline: Baseline | None = (
            Baseline.load(baseline) if isinstance(baseline, (str, os.PathLike)) else baseline
        )
        self.samples = 0
        self.triggers: list[Trigger] = []
        self.suppressed = 0
        self._lock = threading.RLock()
        self._state: WatchState = "active" if self.baseline is not None else "learning"
        self._learn_started: float | None = None
        self._learned: dict[str, list[float]] = {}
        self._kinds: dict[str, tuple[str, str, Literal["gauge", "rate"]]] = {}
        self._last: dict[str, tuple[float, float]] = {}
        self._streaks: dict[str, int] = {}
        self._since: dict[str, float] = {}
        self._anomalies: dict[str, Anomaly] = {}
        self._cooldown_until = 0.0
        self._task: asyncio.Task[None] | None = None
        self._investigations: set[asyncio.Task[None]] = set()
        self._coordinators: list[Any] = []
        self._stopped = True

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> Watcher:
        """Start sampling on the lens loop (idempotent); returns the watcher."""
        _loop.run_sync(self._astart())
        return self

    async def _astart(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._stopped = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lensbook-watch")
        events.publish(
            "watch_started",
            "watch",
            skills=[s.id for s in self.skills],
            interval=self.interval,
            learning=self.learning,
            state=self._state,
        )

    def stop(self) -> None:
        """Stop sampling and cancel an investigation it started (its result says why)."""
        self._stopped = True
        if self._task is None or not _loop.is_running() or _loop.in_lens_thread():
            task, self._task = self._task, None
            if task is not None and _loop.is_running():
                _loop.call_soon(task.cancel)
            return
        _loop.run_sync(self.astop())

    async def astop(self) -> None:
        """The async twin of `stop`."""
        await _loop.run_on_loop(self._astop())

    async def _astop(self) -> None:
        self._stopped = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])
        for coordinator in self._coordinators:
            with contextlib.suppress(Exception):
                await coordinator.acancel()
        if self._investigations:
            await asyncio.wait(list(self._investigations), timeout=30)
        events.publish("watch_stopped", "watch", samples=self.samples)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def state(self) -> WatchState:
        if not self.running:
            return "stopped"
        return self._state

    def status(self) -> WatchStatus:
        with self._lock:
            left = max(0.0, self._cooldown_until - time.time())
            return WatchStatus(
                state=self.state,
                samples=self.samples,
                metrics=len(self.baseline.metrics) if self.baseline else len(self._learned),
                anomalies=tuple(self._anomalies.values()),
                triggers=sum(1 for t in self.triggers if t.kind != "suppressed"),
                suppressed=self.suppressed,
                cooldown_left=left if self._state == "cooldown" else 0.0,
                investigating=any(t.running for t in self.triggers),
            )

    def anomalies(self) -> list[Anomaly]:
        """The metrics out of range for `consecutive` samples now."""
        with self._lock:
            return list(self._anomalies.values())

    def save_baseline(self, path: str | os.PathLike[str]) -> None:
        if self.baseline is None:
            raise ValueError("the watcher is still learning: there is no baseline to save yet")
        self.baseline.save(path)

    def relearn(self) -> None:
        """Forget the baseline and learn a new one from the next samples."""
        with self._lock:
            self.baseline = None
            self._learned.clear()
            self._learn_started = None
            self._streaks.clear()
            self._anomalies.clear()
            self._set_state("learning")

    # -- sampling --------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                snapshots = await loop.run_in_executor(None, self._sample)
                trigger = self.observe(snapshots)
                if trigger is not None and trigger.kind == "investigation":
                    self._investigate(trigger)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bad sample must not end the watch
                _log.exception("the watcher's sample failed")
            await asyncio.sleep(max(0.0, self.interval - (loop.time() - started)))

    def _sample(self) -> dict[str, dict[str, Any]]:
        """Every watched skill's snapshot (one that fails is left out)."""
        found: dict[str, dict[str, Any]] = {}
        for skill in self.skills:
            try:
                found[skill.id] = skill.snapshot()
            except Exception:
                continue
        return found

    def observe(
        self, snapshots: Mapping[str, Mapping[str, Any]], at: float | None = None
    ) -> Trigger | None:
        """Fold one sample in; returns the escalation it caused, if any.

        The sampling task calls this; tests and custom samplers may too.
        """
        at = time.time() if at is None else at
        with self._lock:
            values = self._values(snapshots, at)
            self.samples += 1
            for skill, data in snapshots.items():
                metrics_store.record(skill, dict(data), at)
            if self._state == "learning":
                self._learn(values, at)
                trigger = None
            else:
                self._check(values, at)
                trigger = self._escalate(at)
            self._publish_sample()
        if trigger is not None:
            events.publish("watch_trigger", "watch", trigger=trigger.to_dict())
            if self.on_trigger is not None:
                _call(self.on_trigger, trigger)
        return trigger

    def _values(self, snapshots: Mapping[str, Mapping[str, Any]], at: float) -> dict[str, float]:
        """key -> the value watched this sample (rates need the previous sample)."""
        out: dict[str, float] = {}
        known = knowledge.gather()
        for skill, data in snapshots.items():
            for name, raw in data.items():
                kind = metric_kind(name, raw, known)
                if kind is None:
                    continue
                key = f"{skill}.{name}"
                self._kinds[key] = (skill, name, kind)
                value = float(raw)
                if kind == "gauge":
                    out[key] = value
                    continue
                previous = self._last.get(key)
                self._last[key] = (at, value)
                if previous is None or at <= previous[0] or value < previous[1]:
                    continue  # the first sample, or a counter reset
                out[key] = (value - previous[1]) / (at - previous[0])
        return out

    def _learn(self, values: dict[str, float], at: float) -> None:
        if self._learn_started is None:
            self._learn_started = at
        for key, value in values.items():
            self._learned.setdefault(key, []).append(value)
        if at - self._learn_started < self.learning or self.samples < MIN_LEARNING_SAMPLES:
            return
        metrics = {}
        for key, learned in self._learned.items():
            if len(learned) < 2:
                continue
            skill, name, kind = self._kinds[key]
            metrics[key] = MetricBaseline.learn(skill, name, kind, learned, self.interval)
        self.baseline = Baseline(metrics=metrics, interval=self.interval, samples=self.samples)
        self._learned.clear()
        self._set_state("active")

    def _check(self, values: dict[str, float], at: float) -> None:
        assert self.baseline is not None
        for key, value in values.items():
            base = self.baseline.metrics.get(key)
            if base is None:
                continue
            if not base.out_of_range(value, self.z_threshold):
                self._streaks.pop(key, None)
                self._since.pop(key, None)
                self._anomalies.pop(key, None)
                continue
            streak = self._streaks[key] = self._streaks.get(key, 0) + 1
            since = self._since.setdefault(key, at)
            if streak < self.consecutive:
                continue
            z = base.z(value)
            anomaly = Anomaly(
                skill=base.skill,
                metric=base.metric,
                kind=base.kind,
                value=round(value, 6),
                mean=round(base.mean, 6),
                std=round(base.std, 6),
                z=round(z, 2),
                samples=streak,
                since=since,
                severity="critical" if abs(z) >= 2 * self.z_threshold else "warning",
            )
            new = key not in self._anomalies
            self._anomalies[key] = anomaly
            if new:
                events.publish("watch_anomaly", "watch", anomaly=anomaly.to_dict())
                if self.on_anomaly is not None:
                    _call(self.on_anomaly, anomaly)

    def _escalate(self, at: float) -> Trigger | None:
        """Act on the anomalies when active: investigate, note, or suppress; then cool down."""
        if self._state == "cooldown":
            if at < self._cooldown_until or any(t.running for t in self.triggers):
                return None
            self._set_state("active")
        if not self._anomalies:
            return None
        recent = [t for t in self.triggers if t.kind != "suppressed" and at - t.at < HOUR]
        anomalies = sorted(self._anomalies.values(), key=lambda a: -abs(a.z))
        if len(recent) >= self.max_triggers_per_hour:
            kind: Literal["investigation", "detected", "suppressed"] = "suppressed"
            self.suppressed += 1
        else:
            kind = "investigation" if self.auto_trigger else "detected"
        trigger = Trigger(at=at, anomalies=anomalies, kind=kind)
        self.triggers.append(trigger)
        self._cooldown_until = at + self.cooldown
        self._set_state("cooldown")
        return trigger

    def _set_state(self, state: WatchState) -> None:
        previous, self._state = self._state, state
        if previous != state:
            events.publish("watch_state", "watch", state=state, previous=previous)

    def _publish_sample(self) -> None:
        events.publish(
            "watch_sample",
            "watch",
            samples=self.samples,
            state=self._state,
            anomalies=[a.key for a in self._anomalies.values()],
        )

    # -- investigations --------------------------------------------------------------------

    def context_of(self, trigger: Trigger) -> dict[str, Any]:
        """The coordinator's context for an escalation: the question and the anomalies."""
        text = "; ".join(a.describe() for a in trigger.anomalies[:6])
        return {
            "reason": f"the watcher saw metrics leave their learned range: {text}",
            "source": "lensbook.watch",
            "anomalies": [a.to_dict() for a in trigger.anomalies],
        }

    def _investigate(self, trigger: Trigger) -> None:
        task = asyncio.get_running_loop().create_task(self._run_investigation(trigger))
        self._investigations.add(task)
        task.add_done_callback(self._investigations.discard)

    async def _run_investigation(self, trigger: Trigger) -> None:
        from lensbook.coordinator.coordinator import Coordinator

        options = {
            "skills": [s.id for s in self.skills],
            "deadline": limits.INVESTIGATE_DEADLINE,
            **self.coordinator_options,
        }
        coordinator = Coordinator(name=f"watch-{trigger.id[:6]}", **options)
        self._coordinators.append(coordinator)
        try:
            trigger.result = await coordinator.arun(self.context_of(trigger))
            trigger.error = trigger.result.error
        except asyncio.CancelledError:
            trigger.error = "cancelled"
            raise
        except Exception as exc:
            trigger.error = f"{type(exc).__name__}: {exc}"
            _log.exception("the watcher's investigation failed")
        finally:
            self._coordinators.remove(coordinator)
            with self._lock:
                trigger.finished_at = time.time()
                # the cooldown runs from the end of the investigation
                self._cooldown_until = max(
                    self._cooldown_until, trigger.finished_at + self.cooldown
                )
            events.publish("watch_investigation_completed", "watch", trigger=trigger.to_dict())

    def __repr__(self) -> str:
        s = self.status()
        return (
            f"<Watcher {s.state}: {s.samples} samples, {s.metrics} metrics, "
            f"{len(s.anomalies)} anomalies, {s.triggers} trigger(s), {s.suppressed} suppressed>"
        )


def _call(callback: Callable[[Any], Any], value: Any) -> None:
    try:
        callback(value)
    except Exception:
        _log.exception("watch callback %r failed", callback)


_current: Watcher | None = None
_current_lock = threading.Lock()


class WatchOptions(TypedDict, total=False):
    """The keywords of `watch`: `Watcher`'s, whose signature holds their defaults."""

    interval: float
    learning: float
    z_threshold: float
    consecutive: int
    cooldown: float
    max_triggers_per_hour: int
    auto_trigger: bool
    baseline: Baseline | str | os.PathLike[str] | None
    coordinator: Mapping[str, Any] | None
    on_anomaly: Callable[[Anomaly], Any] | None
    on_trigger: Callable[[Trigger], Any] | None


def watch(skills: Iterable[Any] | None = None, **options: Unpack[WatchOptions]) -> Watcher:
    """Start watching (replacing the current watcher); returns the `Watcher`.

    Options are `Watcher`'s (with its defaults): `interval`, `learning`, `z_threshold`,
    `consecutive`, `cooldown`, `max_triggers_per_hour`, `auto_trigger`, `baseline` (a
    `Baseline` or the path of a saved one: no learning), `coordinator` (options of the
    investigations' `Coordinator`: client, deadline, strategy...), `on_anomaly`, `on_trigger`.
    """
    global _current
    watcher = Watcher(skills, **options)
    with _current_lock:
        previous, _current = _current, watcher
    if previous is not None:
        previous.stop()
    recorder.start("watch")  # the watcher's investigations read what happened before them
    return watcher.start()


def current_watcher() -> Watcher | None:
    """The watcher `watch()` started last (None if none, or it was stopped)."""
    return _current


def stop_watching() -> None:
    """Stop the current watcher (for `lensbook.stop()` and `%lens watch stop`)."""
    global _current
    with _current_lock:
        watcher, _current = _current, None
    if watcher is not None:
        watcher.stop()
    recorder.stop("watch")
