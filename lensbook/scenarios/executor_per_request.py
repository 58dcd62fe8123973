"""A ThreadPoolExecutor created per request and never shut down: idle worker threads pile up.

Modelled on tornadoweb/tornado#2168 ("Tornado ThreadPoolExecutor is leaking resources": the
process gained threads with every request, visible in ``pstree``) and rohanpm/more-executors#87
("Threads leaked if executor is not shut down"). Here every report request builds a handler
object that creates its own 4-worker pool to render charts in parallel; the handlers are kept in
a request log, so the pools (and their idle workers) are never collected nor shut down.
Bounded: 75 requests over about 15 seconds (up to 300 idle threads).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers, each

__all__ = ["ReportHandler", "induce"]

REQUESTS = 75


def render_chart(n: int) -> int:
    return sum(range(1000 + n))


class ReportHandler:
    """Builds one report; renders its charts in parallel on a pool of its own."""

    def __init__(self, report: int) -> None:
        self.report = report
        self.pool = ThreadPoolExecutor(max_workers=4)  # the bug: one pool per request

    def handle(self) -> list[int]:
        futures = [self.pool.submit(render_chart, i) for i in range(4)]
        return [f.result() for f in futures]


@scenario(
    skill="threads",
    reason="the service's thread count keeps climbing",
    expect=(
        r"ThreadPoolExecutor-\*_\*",
        r"separate ThreadPoolExecutor objects",
        r"attribute 'pool' of ReportHandler",
        r"executor_per_request\.py:\d+",
        r"shutdown",
    ),
)
def induce() -> Callable[[], None]:
    request_log: list[ReportHandler] = []
    workers = Workers(join_timeout=10)

    def serve() -> None:
        for n in range(REQUESTS):
            if workers.stop.wait(0.2):
                return
            handler = ReportHandler(n)
            handler.handle()
            request_log.append(handler)

    workers.start("report-server", serve)

    return workers.cleanup(each(request_log, lambda handler: handler.pool.shutdown(wait=True)))
