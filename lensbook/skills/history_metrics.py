"""Rules that read the flight recorder's sampled metrics (``metrics`` events): what moved since
lensbook loaded, for the memory, gc, process and system skills.

The recorder writes a ``metrics`` event at the start of a recording (the baseline) and whenever
a sampled number moves a step (`lensbook.recorder.samples`). These rules compare the oldest
event a run was shown (the baseline, when the history still holds it) with the peak and the
latest, and cite those events' ids. Each answers for the time before the run: where the skill's
live rule sees the same thing in the run's own snapshots, the history rule steps aside, so one
fact makes one notification.

A one-off step (a notebook loading a data set, a pool started once) is told as info; a steady
rise across the samples (`MetricChange.steady`) as a warning. Host pressure from the past is
always info: it is context for what happened then, the system skill's live rules judge now.

Thresholds are module constants, named once here.
"""

from __future__ import annotations

from collections.abc import Sequence

from lensbook.skills._history import MetricChange, metric_change
from lensbook.skills._history import clock as _clock
from lensbook.skills.rules import Evidence, Finding, Rule

__all__ = ["FullCollectionsSinceLoad", "HostPressureSinceLoad", "RssSinceLoad"]

#: RSS growth since the baseline that counts: this many MB and this share of the baseline
RSS_GROWTH_MB = 64.0
RSS_GROWTH_SHARE = 0.5
#: ... and still held: the latest sample at least this share of the peak
RSS_HELD_SHARE = 0.8
#: full (generation-2) collections since the baseline that count: this many, this often
GEN2_MIN = 10
GEN2_PER_MIN = 2.0
#: host pressure in a sample: memory in use (%), swap in use (%), 1-minute load per CPU
HOST_MEMORY_PERCENT = 90.0
HOST_SWAP_PERCENT = 50.0
HOST_LOAD_PER_CPU = 2.0
#: the live rule's own threshold for available host memory (system skill, %)
LIVE_AVAILABLE_PERCENT = 10.0


def since(change: MetricChange) -> str:
    """Where a change starts: the baseline, or only the oldest sample the run was shown."""
    start = _clock(change.first_at) + " UTC"
    if change.baseline:
        return f"when lensbook started recording ({start})"
    return f"the oldest sample shown ({start}; earlier ones were left out)"


def course(change: MetricChange, unit: str = "") -> str:
    """ "a at t0 to b at t1 (+d, peak p at tp)" for a change."""
    fmt = "{:.1f}" if unit else "{:.0f}"
    peak = (
        f", peak {fmt.format(change.peak)}{unit} at {_clock(change.peak_at)}"
        if change.peak > change.last
        else ""
    )
    return (
        f"{fmt.format(change.first)}{unit} {since(change)} to {fmt.format(change.last)}{unit} at "
        f"{_clock(change.last_at)} UTC ({change.change:+.1f}{unit} over "
        f"{change.span_s / 60:.0f} min, {change.per_min:+.2f}{unit}/min{peak}; "
        f"{change.samples} sample(s))"
    )


class RssSinceLoad(Rule):
    """Resident memory that grew since lensbook loaded and is still held."""

    name = "rss_since_load"
    history_kinds = ("metrics",)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        rss = metric_change(ev.history, "rss_mb")
        if (
            rss is None
            or rss.change < max(RSS_GROWTH_MB, RSS_GROWTH_SHARE * rss.first)
            or rss.last < RSS_HELD_SHARE * rss.peak
        ):
            return []
        blocks = metric_change(ev.history, "allocated_blocks")
        # Python's own allocator grew with it: objects; RSS alone: buffers, arrays, C memory
        python_grew = blocks is not None and blocks.change >= 0.25 * max(blocks.first, 1.0)
        observation = f"resident memory grew from {course(rss, ' MB')}"
        if blocks is not None:
            observation += (
                f"; Python's allocated blocks went from {blocks.first:.0f} to {blocks.last:.0f}"
            )
        return [
            Finding(
                anomaly_type="memory_growth_since_load",
                severity="warning" if rss.steady else "info",
                context=(
                    f"RSS {rss.last:.1f} MB, {rss.last / max(rss.first, 1e-9):.1f}x the "
                    "flight recorder's first sample; judged on the metrics it sampled before "
                    "the run"
                ),
                observation=observation,
                hypothesis=(
                    "objects allocated since then are still referenced (a cache or list that "
                    "only grows); memory_census and memory_referrers name the type and its holder"
                    if python_grew
                    else "memory outside Python objects grew (buffers, arrays, a C extension, "
                    "or fragmentation): the count of Python's allocated blocks did not follow"
                ),
                history_ids=rss.ids,
            )
        ]


class FullCollectionsSinceLoad(Rule):
    """Frequent full (generation-2) collections over the recorded history, and uncollectable
    objects that appeared since lensbook loaded."""

    name = "gc_since_load"
    history_kinds = ("metrics",)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        findings = []
        gen2 = metric_change(ev.history, "gc_gen2_collections")
        # full collections during the run's own snapshots are the live churn rule's to judge
        live = ev.delta("gc_collections_gen2") >= 2
        if (
            gen2 is not None
            and not live
            and gen2.span_s > 0
            and gen2.change >= GEN2_MIN
            and gen2.per_min >= GEN2_PER_MIN
        ):
            findings.append(
                Finding(
                    anomaly_type="gc_full_collections_since_load",
                    severity=(
                        "warning" if gen2.per_min >= 6 * GEN2_PER_MIN and gen2.steady else "info"
                    ),
                    context=(
                        f"{gen2.change:.0f} full collections in {gen2.span_s / 60:.0f} min of "
                        "the flight recorder's sampled history"
                    ),
                    observation=(
                        f"generation-2 collections went from {course(gen2)}: one every "
                        f"{60 / gen2.per_min:.0f} s on average"
                    ),
                    hypothesis=(
                        "many long-lived container objects are allocated (each full collection "
                        "walks every tracked object); gc_cycle_types names the types, "
                        "gc.freeze() after startup or a higher gen-2 threshold lowers the cost"
                    ),
                    history_ids=gen2.ids,
                )
            )
        lost = metric_change(ev.history, "gc_uncollectable")
        # objects still in gc.garbage are the live uncollectable rule's to name
        if lost is not None and lost.change > 0 and not ev.latest("gc_garbage", 0):
            findings.append(
                Finding(
                    anomaly_type="gc_uncollectable_since_load",
                    severity="info",
                    context="uncollectable objects counted by the collector since recording began",
                    observation=f"uncollectable objects went from {course(lost)}",
                    hypothesis="objects left in gc.garbage; gc_garbage shows their types",
                    history_ids=lost.ids,
                )
            )
        return findings


class HostPressureSinceLoad(Rule):
    """Host memory, swap or load pressure in the samples since lensbook loaded, even when it
    eased before the run."""

    name = "host_pressure_since_load"
    history_kinds = ("metrics",)

    def judge(self, ev: Evidence) -> Sequence[Finding]:
        live_memory = (
            isinstance(ev.latest("mem_available_percent"), (int, float))
            and float(ev.latest("mem_available_percent")) < LIVE_AVAILABLE_PERCENT
        )
        parts: list[tuple[str, MetricChange]] = []
        checks = (
            ("host_memory_percent", HOST_MEMORY_PERCENT, "host memory in use", "%"),
            ("host_swap_percent", HOST_SWAP_PERCENT, "swap in use", "%"),
            ("host_load_per_cpu", HOST_LOAD_PER_CPU, "1-minute load per CPU", ""),
        )
        for key, limit, label, unit in checks:
            if key == "host_memory_percent" and live_memory:
                continue  # the system skill's live rule sees it now
            change = metric_change(ev.history, key)
            if change is not None and change.peak >= limit:
                parts.append(
                    (
                        f"{label} peaked at {change.peak:g}{unit} at "
                        f"{_clock(change.peak_at)} UTC (limit {limit:g}{unit}; "
                        f"{change.first:g}{unit} at first, {change.last:g}{unit} now)",
                        change,
                    )
                )
        if not parts:
            return []
        still = any(c.last >= 0.9 * c.peak for _, c in parts)
        ids: list[str] = []
        for _, change in parts:
            ids.extend(i for i in change.ids if i not in ids)
        return [
            Finding(
                anomaly_type="host_pressure_since_load",
                severity="info",
                context=(
                    f"{len(parts)} kind(s) of host pressure in the flight recorder's samples "
                    f"since {_clock(min(c.first_at for _, c in parts))} UTC"
                ),
                observation="; ".join(text for text, _ in parts),
                hypothesis=(
                    "the host was short of memory or CPU then"
                    + (" and still is" if still else ", and it has eased since")
                    + ": slowness or failures of that time may be the host's, not this "
                    "process's; system_top_processes names the largest consumers"
                ),
                history_ids=tuple(ids),
            )
        ]
