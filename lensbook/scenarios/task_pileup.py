"""A task created per work item before the concurrency limit is taken: pending tasks pile up.

Modelled on microsoft/durabletask-python#193 ("the asynchronous worker manager creates an
asyncio.Task for every queued work item before applying the configured concurrency limit ...
the number of pending tasks can grow with the queue depth rather than the configured
concurrency") and taskiq-python/taskiq#97 (tasks created first, then waiting for the
semaphore, "can lead to OOM even if max_async_tasks number is small"). Here a consumer starts a
task for each incoming job at 40 jobs/s while the semaphore lets 4 run at once, each for 0.5 s
(8 jobs/s): the backlog lives as ever more tasks parked on the semaphore. Bounded: 800 jobs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios._app_loop import start_app_loop

__all__ = ["induce", "process_job"]

JOBS = 800
CONCURRENCY = 4


async def process_job(limit: asyncio.Semaphore, job: int) -> int:
    # the limit is taken here, after the task already exists
    async with limit:
        await asyncio.sleep(0.5)  # the handler's I/O
        return job


async def consume(jobs: asyncio.Queue[int]) -> None:
    limit = asyncio.Semaphore(CONCURRENCY)
    running: set[asyncio.Task[int]] = set()
    loop = asyncio.get_running_loop()
    while True:
        job = await jobs.get()
        # the bug: a task per job, whatever the backlog
        task = loop.create_task(process_job(limit, job))
        running.add(task)
        task.add_done_callback(running.discard)


async def produce(jobs: asyncio.Queue[int]) -> None:
    for job in range(JOBS):
        await jobs.put(job)
        await asyncio.sleep(0.025)


async def service() -> None:
    jobs: asyncio.Queue[int] = asyncio.Queue()
    await asyncio.gather(consume(jobs), produce(jobs))


@scenario(
    skill="asyncio",
    reason="the worker's memory grows during bursts and jobs finish later and later",
    expect=(
        r"task_growth",
        r"process_job",
        r"task_pileup\.py:\d+",
        r"Semaphore",
    ),
)
def induce() -> Callable[[], None]:
    return start_app_loop("jobs-loop", {"main": service})
