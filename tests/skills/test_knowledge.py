"""What the built-in skills declare about themselves (`lensbook.skills.knowledge`): the
families, chains, keywords and watcher hints the coordinator and the watcher used to keep in
their own tables, now read from the skills."""

from __future__ import annotations

from lensbook.skills import builtin_ids
from lensbook.skills.knowledge import gather


def test_the_built_in_skills_declare_the_coordinators_families_and_chains() -> None:
    known = gather()
    # a family gathers the anomaly types of several skills' rules
    assert known.family_of("memory_leak") == "memory growth"  # memory's leak rule
    assert known.family_of("memory_growth") == "memory growth"  # runtime's rule
    assert known.family_of("output_cache_retention") == "memory growth"  # kernel's
    assert known.family_of("thread_died") == "errors"
    assert known.family_of("fd_exhaustion") == "descriptor exhaustion"
    assert known.family_of("no_such_anomaly") is None
    # ... and is investigated by the skills that say so, in skill order
    assert known.family_skills["errors"] == ("logs", "exceptions")
    assert known.family_skills["memory growth"] == ("memory",)  # not kernel: it only reports
    assert known.family_skills["CPU saturation"] == ("threads",)
    assert set(known.family_skills) == set(known.families)
    assert known.investigators("error_storm") == ("logs", "exceptions")  # triage's history
    assert known.investigators("memory_growth") == ("memory",)  # runtime's finding
    assert known.investigators("no_such_anomaly") == ()
    chains = {c.links: c.mechanism for c in known.chains}
    assert "longer GC pauses" in chains[("memory growth", "GC pressure", "event-loop lag")]
    assert ("descriptor exhaustion", "errors") in chains
    for links in chains:
        assert all(link in known.families for link in links), links


def test_keywords_and_watcher_hints_come_from_the_skills() -> None:
    known = gather()
    assert set(known.keywords) <= set(builtin_ids())
    assert known.named(["leaking", "deadlocked"]) == ["memory", "threads"]
    assert known.named(["orders", "degraded"]) == []
    assert known.watched == ("memory", "gc", "threads", "asyncio", "process", "logs", "exceptions")
    assert {"gc_collections", "thread_deaths", "ctx_voluntary"} <= known.counters
    assert {"uptime_s", "load1", "fd_soft_limit"} <= known.unwatched
    assert not known.counters & known.unwatched
    assert gather() is known  # cached while the registered skills stay the same
