"""The coordinator and the watcher: investigations across skills, and continuous watching.

A real incident crosses domains: a leak shows up as memory growth, GC pauses, a slow event loop
and errors. The `Coordinator` runs one operator per skill that matters, asks them questions and
links their notifications into `Insight`s; the watcher (`watch`) samples snapshots, learns
baselines and starts a coordinator investigation when metrics leave their range.
"""

from __future__ import annotations

from lensbook.coordinator.coordinator import Coordinator, coordinator_chain
from lensbook.coordinator.insights import (
    CoordinatorResult,
    CoordinatorStatus,
    Insight,
    TrackedNotification,
)
from lensbook.coordinator.watcher import Baseline, Watcher, current_watcher, stop_watching, watch

__all__ = [
    "Baseline",
    "Coordinator",
    "CoordinatorResult",
    "CoordinatorStatus",
    "Insight",
    "TrackedNotification",
    "Watcher",
    "coordinator_chain",
    "current_watcher",
    "stop_watching",
    "watch",
]
