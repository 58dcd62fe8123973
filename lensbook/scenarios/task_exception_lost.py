"""Fire-and-forget tasks whose exceptions nobody retrieves.

Modelled on chelaxian/tg-ytdlp-bot#462 (48 "Task exception was never retrieved" a day: tasks
started with bare ``asyncio.create_task(...)``, never awaited, so their failures only surfaced
when the task was garbage-collected, far from the cause) and python/asyncio#399 ("asyncio
swallows a raised exception when code is executed inside a new task"). Here an order handler
sends each receipt in a background task that is never awaited; the receipt code raises
KeyError for orders without an e-mail address, so receipts silently stop going out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from lensbook.scenarios import scenario
from lensbook.scenarios._app_loop import serve_requests, start_app_loop

__all__ = ["induce", "send_receipt"]


async def send_receipt(order: dict[str, Any]) -> None:
    """Mail the receipt of an order (guest orders carry no e-mail address)."""
    await asyncio.sleep(0)
    address = order["email"]
    await asyncio.sleep(0.01)
    del address


async def handle_order(n: int) -> None:
    order: dict[str, Any] = {"id": n, "total": 10 + n}
    if n % 3:
        order["email"] = f"customer{n}@example.com"
    # the bug: fire and forget; nothing awaits the task or looks at its exception
    asyncio.get_running_loop().create_task(send_receipt(order))


@scenario(
    skill="exceptions",
    reason="customers say receipts stopped arriving, but nothing shows up in our logs",
    expect=(r"KeyError", r"send_receipt", r"task_exception_lost\.py:\d+", r"never retrieved|task"),
    settle=0.5,
)
def induce() -> Callable[[], None]:
    return start_app_loop("orders-loop", {"main": serve_requests(handle_order, pause=0.05)})
