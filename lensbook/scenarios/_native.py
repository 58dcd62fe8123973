"""Memory of a native library, as the native scenarios' faults use it: blocks allocated in C
through ctypes (which Python's allocators, and so tracemalloc, never see), written so that they
are resident, and kept until the scenario's cleanup frees them."""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["NativeBlocks"]


class NativeBlocks:
    """Blocks of the C library's ``malloc``: kept ones (a leak, a pool) and passing ones."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"))
        self._libc.malloc.restype = ctypes.c_void_p
        self._libc.malloc.argtypes = [ctypes.c_size_t]
        self._libc.free.argtypes = [ctypes.c_void_p]
        #: the addresses of the kept blocks, and their bytes
        self.kept: list[int] = []
        self.kept_bytes = 0

    def allocate(self, size: int, fill: int = 0, keep: bool = True) -> None:
        """Allocate `size` bytes and write them; keep the block, or free it at once."""
        block = self._libc.malloc(size)
        ctypes.memset(block, fill & 0xFF, size)
        if keep:
            self.kept.append(block)
            self.kept_bytes += size
        else:
            self._libc.free(block)

    def release(self) -> None:
        """Free every kept block (the cleanup: a real leak is never freed)."""
        while self.kept:
            self._libc.free(self.kept.pop())
        self.kept_bytes = 0
