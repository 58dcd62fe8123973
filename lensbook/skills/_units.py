"""Byte counts as the megabytes that skills report, rounded one way.

Snapshots and probes report memory in MB (2**20 bytes) rounded to two places, so that a
snapshot of this process (runtime), of another process (external) and a probe's answer read
the same figure for the same reading. ``memory_mb`` turns one ``psutil`` ``memory_info()``
reading into the ``rss_mb``/``vms_mb`` pair that those snapshots share.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MB", "mb", "memory_mb"]

#: bytes in one reported megabyte
MB = 2**20


def mb(n: float, digits: int = 2) -> float:
    """``n`` bytes in MB, rounded to ``digits`` places."""
    return round(n / MB, digits)


def memory_mb(mem: Any) -> dict[str, float]:
    """RSS and VMS of a ``psutil`` ``memory_info()`` reading, in MB."""
    return {"rss_mb": mb(mem.rss), "vms_mb": mb(mem.vms)}
