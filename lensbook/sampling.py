"""The metrics store and sampler: bounded time series of every snapshot's numbers.

Fed by every ``snapshot`` event of a run and by `Sampler`, which takes cheap snapshots between
runs. Probes read trends from it (`series`, `slope`); widgets chart it; `lensbook.metrics()`
returns it as a pandas DataFrame.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from lensbook import events
from lensbook.limits import sampling_interval
from lensbook.skills import _trend

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MetricsStore", "Sampler", "store"]


class MetricsStore:
    """Numbers by (skill, metric), each a bounded deque of (epoch seconds, value)."""

    def __init__(self, max_points: int = 3600) -> None:
        self.max_points = max_points
        self._lock = threading.Lock()
        self._series: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        self._token: int | None = None

    def record(self, skill: str, data: dict[str, Any], at: float | None = None) -> None:
        """Keep every numeric (or boolean) value of a flat snapshot."""
        at = time.time() if at is None else at
        with self._lock:
            for key, value in data.items():
                if isinstance(value, bool):
                    value = int(value)
                if not isinstance(value, (int, float)):
                    continue
                series = self._series.get((skill, key))
                if series is None:
                    series = self._series[(skill, key)] = deque(maxlen=self.max_points)
                series.append((at, float(value)))

    def series(self, skill: str, key: str, since: float | None = None) -> list[tuple[float, float]]:
        with self._lock:
            points = list(self._series.get((skill, key), ()))
        return [p for p in points if since is None or p[0] >= since]

    def slope(self, skill: str, key: str, window: float | None = None) -> float | None:
        """Least-squares change per second over the last `window` seconds (None if < 2 points)."""
        since = None if window is None else time.time() - window
        return _trend.slope(self.series(skill, key, since))

    def keys(self, skill: str | None = None) -> list[tuple[str, str]]:
        with self._lock:
            return [k for k in self._series if skill is None or k[0] == skill]

    def frame(self, skill: str | None = None) -> pd.DataFrame:
        """Long-format DataFrame: time (UTC), skill, metric, value."""
        import pandas as pd

        rows = [(t, s, k, v) for (s, k) in self.keys(skill) for t, v in self.series(s, k)]
        df = pd.DataFrame(rows, columns=["time", "skill", "metric", "value"])
        df["time"] = pd.to_datetime(df["time"], unit="s", utc=True)
        return df.sort_values(["time", "skill", "metric"], ignore_index=True)

    def clear(self) -> None:
        with self._lock:
            self._series.clear()

    def listen(self) -> None:
        """Record every snapshot event (idempotent)."""
        if self._token is None:
            self._token = events.subscribe(self._on_snapshot, kinds=["snapshot"])

    def _on_snapshot(self, event: events.Event) -> None:
        data = event.data.get("data")
        skill = event.data.get("skill") or event.operator
        if isinstance(data, dict):
            self.record(skill, data, event.at)


store = MetricsStore()


class Sampler:
    """Takes snapshots of skills every `interval` seconds on the lens loop, between runs too;
    `on_sample(skill id, data)` (the flight recorder's) sees each one after the store."""

    def __init__(
        self,
        skills: Iterable[Any],
        interval: float = 10.0,
        on_sample: Callable[[str, dict[str, Any]], Any] | None = None,
    ) -> None:
        self.skills = list(skills)
        self.interval = sampling_interval(interval)
        self.on_sample = on_sample
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        from lensbook import _loop

        _loop.call_soon(self._start_on_loop)

    def _start_on_loop(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="lensbook-sampler"
            )

    def stop(self) -> None:
        task = self._task
        if task is not None:
            from lensbook import _loop

            if _loop.is_running():
                _loop.call_soon(task.cancel)
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            for skill in self.skills:
                try:
                    data = await loop.run_in_executor(None, skill.snapshot)
                except Exception:
                    continue
                store.record(skill.id, data)
                if self.on_sample is not None:
                    # a failing listener must not end the sampling
                    with contextlib.suppress(Exception):
                        self.on_sample(skill.id, data)
            await asyncio.sleep(self.interval)
