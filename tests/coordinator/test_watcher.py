"""The watcher: baselines, anomalies and escalation on given samples, then on a real fault."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

import lensbook
from lensbook import events
from lensbook.coordinator import Baseline, Watcher, current_watcher, watch
from lensbook.coordinator.watcher import MetricBaseline, metric_kind, stop_watching
from lensbook.scenarios import get_scenario


def learned(watcher: Watcher, samples: list[dict[str, Any]], start: float = 1000.0) -> float:
    """Feed one sample a second to a learning watcher; returns the time of the last."""
    at = start
    for i, data in enumerate(samples):
        at = start + i
        watcher.observe({"app": data}, at)
    return at


def quiet(n: int, depth: int = 10) -> list[dict[str, Any]]:
    # a queue depth wobbling 9..11, a counter growing by 2 a second, a flag and a clock
    return [
        {"depth": depth + (i % 3) - 1, "errors_total": 2 * i, "enabled": True, "uptime_s": i}
        for i in range(n)
    ]


def watcher(**options: Any) -> Watcher:
    defaults: dict[str, Any] = {
        "interval": 1.0,
        "learning": 5.0,
        "consecutive": 3,
        "cooldown": 10.0,
        "auto_trigger": False,
    }
    return Watcher(["runtime"], **{**defaults, **options})


def test_metric_kinds() -> None:
    assert metric_kind("errors_total", 3) == "rate"
    assert metric_kind("gc_collections", 3) == "rate"
    assert metric_kind("rss_mb", 30.5) == "gauge"
    assert metric_kind("tracemalloc", False) is None
    assert metric_kind("uptime_s", 5) is None
    assert metric_kind("name", "x") is None
    assert metric_kind("lag", float("nan")) is None


def test_learning_then_a_baseline_of_gauges_and_rates() -> None:
    w = watcher()
    at = learned(w, quiet(4))
    assert w._state == "learning" and w.baseline is None  # 3 s and 4 samples: not yet
    w.observe({"app": quiet(7)[4]}, at + 1)
    w.observe({"app": quiet(7)[5]}, at + 2)
    assert w._state == "active" and w.baseline is not None
    metrics = w.baseline.metrics
    assert set(metrics) == {"app.depth", "app.errors_total"}
    depth, errors = metrics["app.depth"], metrics["app.errors_total"]
    assert depth.kind == "gauge" and depth.n == 6 and depth.mean == pytest.approx(10.0)
    assert (depth.min, depth.p5, depth.p95, depth.max) == (9.0, 9.0, 11.0, 11.0)
    assert depth.std == pytest.approx(0.8165, abs=1e-3)
    assert errors.kind == "rate" and errors.mean == pytest.approx(2.0) and errors.std == 0.0


def test_out_of_range_for_consecutive_samples_is_an_anomaly() -> None:
    w = watcher()
    at = learned(w, quiet(6))
    seen: list[events.Event] = []
    token = events.subscribe(seen.append, ["watch_anomaly", "watch_trigger"])
    errors = 12
    # one spike and back: no anomaly
    assert w.observe({"app": {"depth": 40, "errors_total": errors}}, at + 1) is None
    assert w.observe({"app": {"depth": 10, "errors_total": errors + 2}}, at + 2) is None
    assert w.anomalies() == []
    # a small, in-range change never counts however long it lasts (the floor of the deviation)
    for i in range(5):
        w.observe({"app": {"depth": 12, "errors_total": errors + 4 + 2 * i}}, at + 3 + i)
    assert w.anomalies() == []
    # three samples in a row far out of range: one anomaly, escalated once
    t = at + 10
    results = [
        w.observe({"app": {"depth": 40 + i, "errors_total": errors + 100 * (i + 1)}}, t + i)
        for i in range(3)
    ]
    events.unsubscribe(token)
    assert results[:2] == [None, None]
    trigger = results[2]
    assert trigger is not None and trigger.kind == "detected"
    keys = [a.key for a in trigger.anomalies]
    assert set(keys) == {"app.depth", "app.errors_total"}
    depth = next(a for a in trigger.anomalies if a.key == "app.depth")
    assert depth.samples == 3 and depth.since == t and depth.severity == "critical"
    assert "app.depth 42 (baseline 10" in depth.describe()
    assert [e.kind for e in seen].count("watch_anomaly") == 2
    assert [e.kind for e in seen].count("watch_trigger") == 1
    assert w._state == "cooldown"


def test_cooldown_then_the_hourly_limit_suppresses() -> None:
    w = watcher(cooldown=10.0, max_triggers_per_hour=2)
    at = learned(w, quiet(6))
    kinds = []
    for i in range(60):  # a fault that persists for a minute, sampled each second
        trigger = w.observe({"app": {"depth": 50, "errors_total": 10 + i}}, at + 1 + i)
        if trigger is not None:
            kinds.append((trigger.kind, round(trigger.at - at)))
    # escalations 10 s apart (the cooldown); the third inside the hour is suppressed
    assert [k for k, _ in kinds[:4]] == ["detected", "detected", "suppressed", "suppressed"]
    assert [t for _, t in kinds[:3]] == [3, 13, 23]
    assert w.suppressed == len(kinds) - 2
    status = w.status()
    assert status.triggers == 2 and status.suppressed == w.suppressed
    # back in range: the anomaly clears
    w.observe({"app": {"depth": 10, "errors_total": 80}}, at + 100)
    assert w.anomalies() == []


def test_baselines_save_and_load(tmp_path: Path) -> None:
    w = watcher()
    at = learned(w, quiet(6))
    path = tmp_path / "baseline.json"
    w.save_baseline(path)
    data = json.loads(path.read_text())
    assert data["format"] == "lensbook-baseline" and "app.depth" in data["metrics"]
    loaded = Baseline.load(path)
    assert loaded.metrics == w.baseline.metrics  # type: ignore[union-attr]
    # a watcher given a baseline skips learning
    again = Watcher(["runtime"], baseline=str(path), auto_trigger=False, consecutive=1)
    assert again._state == "active"
    again.observe({"app": {"depth": 10, "errors_total": 0}}, at)
    assert again.observe({"app": {"depth": 99, "errors_total": 2}}, at + 1) is not None
    with pytest.raises(ValueError, match="still learning"):
        watcher().save_baseline(path)
    with pytest.raises(ValueError, match="not a lensbook baseline"):
        Baseline.from_dict({"metrics": {}})


def test_the_deviation_floor() -> None:
    flat = MetricBaseline.learn("app", "threads", "gauge", [4, 4, 4, 4], interval=30)
    assert flat.sigma == 1.0 and not flat.out_of_range(6, 3.0) and flat.out_of_range(8, 3.0)
    rss = MetricBaseline.learn("app", "rss_mb", "gauge", [100.0, 100.2, 99.9], interval=30)
    assert rss.sigma == pytest.approx(5.0, rel=0.01)  # 5% of the mean
    assert not rss.out_of_range(110.0, 3.0) and rss.out_of_range(120.0, 3.0)


@pytest.mark.slow
def test_watching_a_real_error_storm_triggers_once_cools_down_and_keeps_the_hourly_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    lensbook.recorder.clear()  # earlier tests' errors are in the history the logs operator reads
    states: list[str] = []
    token = events.subscribe(lambda e: states.append(e.data["state"]), ["watch_state"])
    w = watch(
        ["logs"],
        interval=0.1,
        learning=1.0,
        consecutive=3,
        cooldown=0.5,
        max_triggers_per_hour=1,
        coordinator={"deadline": 60},
    )
    assert current_watcher() is w
    cleanup = None
    try:
        for _ in range(200):  # the learning window: ~1 s
            if w.state != "learning":
                break
            time.sleep(0.05)
        assert w.state == "active" and w.status().anomalies == ()
        cleanup = get_scenario("error_storm").induce()
        for _ in range(600):  # the investigation, its cooldown, then a suppressed escalation
            status = w.status()
            if status.suppressed and not status.investigating:
                break
            time.sleep(0.1)
    finally:
        if cleanup is not None:
            cleanup()
        stop_watching()
        events.unsubscribe(token)
    assert w.state == "stopped" and current_watcher() is None
    started = [t for t in w.triggers if t.kind == "investigation"]
    assert len(started) == 1 and w.suppressed >= 1
    trigger = started[0]
    assert {a.skill for a in trigger.anomalies} == {"logs"}
    assert "logs.errors_total" in {a.key for a in trigger.anomalies} | {
        a.key for a in w.triggers[-1].anomalies
    }
    result = trigger.result
    assert result is not None and result.stop_reason == "done", trigger.error
    assert result.context["source"] == "lensbook.watch"
    assert "leave their learned range" in result.context["reason"]
    (found,) = [n.notification for n in result.notifications]
    assert found.anomaly_type == "error_storm" and "payments.gateway" in found.observation
    assert states[:4] == ["active", "cooldown", "active", "cooldown"]
    lensbook.stop()
