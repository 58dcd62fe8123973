"""Busy but healthy: an asyncio server on 127.0.0.1 under steady load; it must not alarm.

An asyncio TCP server answers small length-prefixed requests; eight clients on keep-alive
connections send ~400 requests a second in all from a loop of their own. Both loops are
registered with the asyncio skill. Every request is answered within milliseconds, no task is
stuck, connections are reused (a constant number of sockets), and the load stops by itself at
cleanup (or after 120 s at the latest).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from lensbook.scenarios import process_skills, scenario
from lensbook.scenarios._app_loop import start_app_loop

__all__ = ["handle_client", "induce"]

CLIENTS = 8
#: seconds between two requests of one client
PACE = 0.02
#: the load never runs longer than this, whatever happens to the cleanup
MAX_SECONDS = 120.0


async def handle_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while line := await reader.readline():
            writer.write(b"ok " + line)
            await writer.drain()
    finally:
        writer.close()


async def client(port: int, served: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    deadline = time.monotonic() + MAX_SECONDS
    try:
        n = 0
        while time.monotonic() < deadline:
            n += 1
            writer.write(b"quote %d\n" % n)
            await writer.drain()
            await reader.readline()
            served[0] += 1
            await asyncio.sleep(PACE)
    finally:
        writer.close()


@scenario(
    skill="asyncio",
    reason="routine check of the API server: is anything wrong?",
    healthy=True,
    skills=process_skills(),
)
def induce() -> Callable[[], None]:
    ports: list[int] = []
    listening = threading.Event()
    served = [0]

    async def server_main() -> None:
        server = await asyncio.start_server(handle_client, "127.0.0.1", 0)
        ports.append(server.sockets[0].getsockname()[1])
        listening.set()
        async with server:
            await server.serve_forever()

    stop_server = start_app_loop("api-server", {"main": server_main})
    listening.wait(10)

    async def load_main() -> None:
        await asyncio.gather(*(client(ports[0], served) for _ in range(CLIENTS)))

    stop_load = start_app_loop("load-clients", {"main": load_main})

    def cleanup() -> None:
        stop_load()
        stop_server()

    return cleanup
