"""Busy but healthy: a service whose native library churns memory; no skill may alarm.

The counterpart of ``native_leak``: a ``decoder`` thread hands 40 frames a second to a native
decoder through ctypes; each frame gets a 2 MB work buffer in C, written and then freed, and
the decoder keeps a native pool of 48 MB that it fills in its first second and then reuses.
RSS rises once (the pool) and then stays flat while the calls go on: allocator activity that
Python's allocators never see is not by itself a leak. (The warm-up then plateau is the shape
reported in kurtmckee/feedparser#287: RSS climbs for the first iterations, then stays flat.)
"""

from __future__ import annotations

from collections.abc import Callable

from lensbook.scenarios import process_skills, scenario
from lensbook.scenarios._harness import start_paced
from lensbook.scenarios._native import NativeBlocks

__all__ = ["decode_frame", "induce"]

BUFFER_BYTES = 2 << 20
POOL_BYTES = 48 << 20

_native = NativeBlocks()


def decode_frame(n: int) -> int:
    _native.allocate(BUFFER_BYTES, fill=n, keep=False)  # the frame's work buffer, freed
    if _native.kept_bytes < POOL_BYTES:  # the decoder's pool: 1 MB slabs, up to its size
        _native.allocate(1 << 20)
    return n


@scenario(
    skill="memory",
    reason="routine check of the decoding service: is anything wrong?",
    healthy=True,
    skills=process_skills(),
    settle=2.0,
)
def induce() -> Callable[[], None]:
    workers = start_paced("decoder", decode_frame, per_second=50)
    return workers.cleanup(_native.release)
