"""Busy but healthy: a service whose native library churns memory; no skill may alarm.

The counterpart of ``native_leak``: a ``decoder`` thread hands 50 frames a second to a native
decoder through ctypes; each frame gets a 2 MB work buffer in C, written and then freed, and
the decoder keeps a native pool of 48 MB that it fills in its first second and then reuses.
RSS rises once (the pool) and then stays flat while the calls go on: allocator activity that
Python's allocators never see is not by itself a leak. (The warm-up then plateau is the shape
reported in kurtmckee/feedparser#287: RSS climbs for the first iterations, then stays flat.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Callable

from lensbook.scenarios import process_skills, scenario
from lensbook.scenarios._harness import Workers

__all__ = ["decode_frame", "induce"]

BUFFER_BYTES = 2 << 20
POOL_BYTES = 48 << 20
PER_SECOND = 50

_libc = ctypes.CDLL(ctypes.util.find_library("c"))
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]
_POOL: list[int] = []


def decode_frame(n: int) -> int:
    buffer = _libc.malloc(BUFFER_BYTES)
    ctypes.memset(buffer, n & 0xFF, BUFFER_BYTES)
    _libc.free(buffer)
    if len(_POOL) * (1 << 20) < POOL_BYTES:  # the decoder's pool: 1 MB slabs, up to its size
        slab = _libc.malloc(1 << 20)
        ctypes.memset(slab, 0, 1 << 20)
        _POOL.append(slab)
    return n


def _decode(stop: threading.Event) -> None:
    n = 0
    while not stop.wait(1.0 / PER_SECOND):
        decode_frame(n)
        n += 1


def _release() -> None:
    while _POOL:
        _libc.free(_POOL.pop())


@scenario(
    skill="memory",
    reason="routine check of the decoding service: is anything wrong?",
    healthy=True,
    skills=process_skills(),
    settle=2.0,
)
def induce() -> Callable[[], None]:
    workers = Workers()
    workers.start("decoder", _decode, workers.stop)
    return workers.cleanup(_release)
