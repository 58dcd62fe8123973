"""``%lens run runtime --reason "leak"`` on a process that leaks about 8 MB/s.

Modelled on psf/requests#4191 ("Possible Memory Leak": a crawler keeps every response's
content for a writer that falls behind, and RSS grows with each request) and on
raku-community-modules/HTTP-UserAgent#52 (a client's ``history`` keeping a copy of every
response). Here a ``crawler`` thread keeps every response body it fetches in a module-level
history that nothing trims: ~800 KB every 0.1 s.

lensbook has been loaded for a while before the question is asked, so the runtime skill's
snapshot has been sampled every second into the metrics store: the investigation must judge
growth on those samples, not only on the two snapshots it takes itself (the leak adds only
~12 MB between two snapshots 1.5 s apart).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers, sample_runtime

__all__ = ["fetch_page", "induce"]

BODY_BYTES = 800 * 1024
INTERVAL_S = 0.1

_HISTORY: list[bytes] = []


def fetch_page(n: int) -> int:
    body = b"<p>page</p>" * (BODY_BYTES // 11)  # the response body, kept below
    _HISTORY.append(body)
    return len(body)


def _crawl(stop: threading.Event) -> None:
    n = 0
    while not stop.wait(INTERVAL_S):
        fetch_page(n)
        n += 1


@scenario(
    skill="runtime",
    reason="leak",
    expect=(r"memory_growth", r"runtime_leak\.py:\d+", r"in fetch_page"),
    settle=4.0,
)
def induce() -> Callable[[], None]:
    # what `%load_ext lensbook` (lensbook.start) had been doing before the question: sampling
    stop_sampling = sample_runtime()
    workers = Workers()
    workers.start("crawler", _crawl, workers.stop)
    return workers.cleanup(stop_sampling, _HISTORY.clear)
