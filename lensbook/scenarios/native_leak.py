"""A native library leaks under a Python service: RSS grows ~10 MB/s, Python's heap does not.

Modelled on python/cpython#131997 ("Having trouble debugging a memory leak from CPython
extension": a client library wrapping a C library leaks in C, and Python-level tools see no
growth) and on NousResearch/hermes-agent#19251 (after the Python-object leaks were fixed,
``RssAnon`` still stepped up per task while tracemalloc's total stayed flat: "a native-layer
residual that tracemalloc can't see"). Here a ``decoder`` thread hands every frame to a native
decoder through ctypes; the decoder allocates a 1 MB work buffer per frame in C and never frees
it. The Python side keeps only the buffers' addresses (so that the cleanup can free them): no
object, container or traced allocation grows with the leak.

The memory skill must not call the process healthy, nor blame a Python line for memory that
Python never allocated: it must say the growth is outside Python's allocators.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers

__all__ = ["decode_frame", "induce"]

BUFFER_BYTES = 1 << 20
INTERVAL_S = 0.1

_libc = ctypes.CDLL(ctypes.util.find_library("c"))
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]
# what the native side holds: freed by the cleanup only (a real leak has no such list)
_LEAKED: list[int] = []


def decode_frame(n: int) -> int:
    buffer = _libc.malloc(BUFFER_BYTES)  # the native decoder's work buffer, never freed
    ctypes.memset(buffer, n & 0xFF, BUFFER_BYTES)  # written, so it is resident
    _LEAKED.append(buffer)
    return n


def _decode(stop: threading.Event) -> None:
    n = 0
    while not stop.wait(INTERVAL_S):
        decode_frame(n)
        n += 1


def _release() -> None:
    while _LEAKED:
        _libc.free(_LEAKED.pop())


@scenario(
    skill="memory",
    reason="the decoding service's memory keeps growing until the OOM killer ends it",
    expect=(r"native_memory_growth", r"outside Python's allocators", r"\d+\.\d+ MB/s"),
    settle=3.0,
)
def induce() -> Callable[[], None]:
    workers = Workers()
    workers.start("decoder", _decode, workers.stop)
    return workers.cleanup(_release)
