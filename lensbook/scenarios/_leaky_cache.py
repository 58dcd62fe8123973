"""A lookup service with a module-level cache that is never evicted (the `cache_leak` fault).

Written the way such leaks are written in real code: a memo dict at module level, filled on a
miss, with no size bound and no expiry. Every new query id adds an entry that lives forever.
"""

from __future__ import annotations

from lensbook.scenarios._harness import Workers, start_paced

__all__ = ["clear", "lookup", "start_traffic"]

#: query key -> result; grows by one entry per distinct query, forever
_CACHE: dict[str, dict[str, object]] = {}


def lookup(query_id: int) -> dict[str, object]:
    """The result of a query, memoised."""
    key = f"query:{query_id}"
    hit = _CACHE.get(key)
    if hit is None:
        hit = {"id": query_id, "rows": [query_id * 1000 + i for i in range(24)], "status": "ok"}
        _CACHE[key] = hit
    return hit


def start_traffic(per_second: int = 4000) -> Workers:
    """Serve ever-new queries from a thread until its `stop` is set (or its `cleanup()` runs)."""
    return start_paced("query-server", lookup, per_second)


def clear() -> None:
    _CACHE.clear()
