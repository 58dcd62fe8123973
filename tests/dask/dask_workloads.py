"""Faults the Dask tests induce inside worker processes (imported there by name).

Written as real task code is: a module-level list that a task keeps appending to, and a task
that blocks on a lock another task holds. Each fault is ended by a function the test sends with
`Client.run`, which runs on the worker's event loop, not in its (busy) task threads.
"""

from __future__ import annotations

import threading

#: rows a task appends and nobody removes: the leak, on the one worker that runs `hoard`
_HOARD: list[dict[str, object]] = []
_STOP_HOARD = threading.Event()

_GATE = threading.Lock()
_GATE_HELD = threading.Event()
_RELEASE = threading.Event()
_ENTERING = threading.Event()


def hoard(limit_s: float = 90.0) -> int:
    """Append ~4,000 rows a second to the module-level list until told to stop."""
    n = 0
    _STOP_HOARD.clear()
    while not _STOP_HOARD.wait(0.05):
        for _ in range(200):
            _HOARD.append({"row": n, "values": [n * 10 + i for i in range(24)], "ok": True})
            n += 1
        if n > limit_s * 4000:
            break
    return n


def hoarded() -> int:
    return len(_HOARD)


def stop_hoard() -> None:
    _STOP_HOARD.set()
    _HOARD.clear()


def hold_gate(limit_s: float = 90.0) -> bool:
    """Hold the gate until released (a task doing slow work under a lock)."""
    with _GATE:
        _GATE_HELD.set()
        released = _RELEASE.wait(limit_s)
    _GATE_HELD.clear()
    return released


def gate_held() -> bool:
    return _GATE_HELD.is_set()


def stuck_on_gate() -> str:
    """A task that needs the gate and waits for it."""
    _ENTERING.set()
    with _GATE:
        return "through"


def entering() -> bool:
    return _ENTERING.is_set()


def release_gate() -> None:
    _RELEASE.set()


def freeze(flag: str, seconds: float) -> None:
    """Block the calling thread (the worker's event loop, under `Client.run`), after saying so."""
    import pathlib
    import time

    pathlib.Path(flag).write_text("frozen")
    time.sleep(seconds)
