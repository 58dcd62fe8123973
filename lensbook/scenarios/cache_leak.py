"""A memory leak through a module-level cache that only grows."""

from __future__ import annotations

from collections.abc import Callable

from lensbook.scenarios import scenario


@scenario(
    skill="memory",
    reason="memory keeps growing while the service runs",
    # the diagnosis must name the allocating line and the cache that holds the entries
    expect=(r"_leaky_cache\.py:\d+", r"_leaky_cache\._CACHE"),
    settle=1.5,
)
def induce() -> Callable[[], None]:
    from lensbook.scenarios import _leaky_cache

    traffic = _leaky_cache.start_traffic(per_second=4000)
    return traffic.cleanup(_leaky_cache.clear)
