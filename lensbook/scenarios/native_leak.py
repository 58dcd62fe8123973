"""A native library leaks under a Python service: RSS grows ~10 MB/s, Python's heap does not.

Modelled on python/cpython#131997 ("Having trouble debugging a memory leak from CPython
extension": a client library wrapping a C library leaks in C, and Python-level tools see no
growth) and on NousResearch/hermes-agent#19251 (after the Python-object leaks were fixed,
``RssAnon`` still stepped up per task while tracemalloc's total stayed flat: "a native-layer
residual that tracemalloc can't see"). Here a ``decoder`` thread hands every frame to a native
decoder through ctypes, 20 frames a second; the decoder allocates a 512 KB work buffer per
frame in C and never frees it. The Python side keeps only the buffers' addresses (so that the
cleanup can free them): no object, container or traced allocation grows with the leak.

The memory skill must not call the process healthy, nor blame a Python line for memory that
Python never allocated: it must say the growth is outside Python's allocators.
"""

from __future__ import annotations

from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import start_paced
from lensbook.scenarios._native import NativeBlocks

__all__ = ["decode_frame", "induce"]

#: the decoder's work buffer per frame, 20 frames a second: ~10 MB/s
BUFFER_BYTES = 512 << 10

_native = NativeBlocks()


def decode_frame(n: int) -> int:
    _native.allocate(BUFFER_BYTES, fill=n)  # the native decoder's work buffer, never freed
    return n


@scenario(
    skill="memory",
    reason="the decoding service's memory keeps growing until the OOM killer ends it",
    expect=(r"native_memory_growth", r"outside Python's allocators", r"\d+\.\d+ MB/s"),
    settle=3.0,
)
def induce() -> Callable[[], None]:
    workers = start_paced("decoder", decode_frame, per_second=20)
    return workers.cleanup(_native.release)
