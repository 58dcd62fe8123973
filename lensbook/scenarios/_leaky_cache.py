"""A lookup service with a module-level cache that is never evicted (the `cache_leak` fault).

Written the way such leaks are written in real code: a memo dict at module level, filled on a
miss, with no size bound and no expiry. Every new query id adds an entry that lives forever.
"""

from __future__ import annotations

import threading

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


def start_traffic(per_second: int = 4000) -> threading.Event:
    """Serve ever-new queries from a thread until the returned event is set."""
    stop = threading.Event()

    def serve() -> None:
        n = 0
        batch = max(1, per_second // 20)
        while not stop.is_set():
            for _ in range(batch):
                lookup(n)
                n += 1
            stop.wait(0.05)

    threading.Thread(target=serve, name="query-server", daemon=True).start()
    return stop


def clear() -> None:
    _CACHE.clear()
