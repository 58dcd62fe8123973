"""Child processes started with Popen and never waited for: zombies pile up.

Modelled on crits/crits_services#58 ("services using subprocess.Popen() leave behind zombie
processes": ``[httpd] <defunct>`` under every worker) and martomi/chiadog#194 (a ``git``
child left ``<defunct>`` because the Popen was read from but never waited for). Here a
thumbnail step starts a converter child per image with ``subprocess.Popen``, reads nothing,
keeps the Popen object in its job list and never calls ``wait()``; each child exits at once and
stays a zombie. Bounded: 120 children over about 12 seconds.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers, each

__all__ = ["induce", "make_thumbnail"]

CHILDREN = 120


def make_thumbnail(image: str, jobs: list[subprocess.Popen[bytes]]) -> None:
    """Start the converter for one image and move on (the bug: nobody waits for it)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.exit(0)", "--thumbnail", image],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    jobs.append(proc)


@scenario(
    skill="process",
    reason="ps shows a growing list of <defunct> processes under our worker",
    expect=(
        r"zombie",
        r"Popen\('.*--thumbnail photo-\*\.jpg'",
        r"never wait\(\)ed",
        r"created at .*zombie_children\.py:\d+ in make_thumbnail",
    ),
    settle=2.5,
)
def induce() -> Callable[[], None]:
    jobs: list[subprocess.Popen[bytes]] = []
    workers = Workers(join_timeout=10)

    def run() -> None:
        for n in range(CHILDREN):
            if workers.stop.wait(0.1):
                return
            make_thumbnail(f"photo-{n}.jpg", jobs)

    workers.start("thumbnailer", run)

    return workers.cleanup(each(jobs, lambda proc: proc.wait(5)))
