"""Sockets opened per request and never closed: CLOSE_WAIT sockets pile up.

Modelled on mvdctop/Movie_Data_Capture#751 ("[Errno 24] Too many open files": the scraper's
sockets were not closed; ``ls -l /proc/<pid>/fd | grep socket`` rose 16, 29, 40, 55 ... and
lsof showed them in CLOSE_WAIT). Here a catalogue client fetches each page from a local HTTP
server on 127.0.0.1 over a new connection and keeps the socket in its session list instead of
closing it; the server closes its end, so the client's sockets sit in CLOSE_WAIT. Bounded: at
most 600 sockets, never more than 40% of the RLIMIT_NOFILE headroom, over about 20 seconds.
"""

from __future__ import annotations

import socket
import socketserver
from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios._harness import Workers, each
from lensbook.scenarios.fd_leak import _cap

__all__ = ["fetch_page", "induce"]

MAX_SOCKETS = 600
SPREAD = 20.0


class _PageHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(1024)
        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def fetch_page(address: tuple[str, int], page: int, session: list[socket.socket]) -> bytes:
    """Fetch one catalogue page; the connection is kept 'for reuse' and never closed."""
    conn = socket.create_connection(address, timeout=5)
    conn.sendall(f"GET /catalogue?page={page} HTTP/1.1\r\nHost: local\r\n\r\n".encode())
    body = conn.recv(1024)
    session.append(conn)  # the bug: never reused, never closed
    return body


@scenario(
    skill="process",
    reason="after a while the scraper fails with 'Too many open files'",
    expect=(
        r"grew from \d+ to \d+",
        r"\d+ x INET STREAM CLOSE_WAIT 127\.0\.0\.1:\d+",
        r"created at .*socket_leak\.py:\d+ in fetch_page",
    ),
)
def induce() -> Callable[[], None]:
    server = _Server(("127.0.0.1", 0), _PageHandler)
    serving = Workers()
    serving.start("catalogue-server", server.serve_forever)
    stop_server = serving.cleanup(server.server_close, unblock=server.shutdown)
    address = server.server_address[:2]
    cap = min(MAX_SOCKETS, _cap())
    session: list[socket.socket] = []
    scraping = Workers()

    def scrape() -> None:
        for page in range(cap):
            if scraping.stop.wait(SPREAD / cap):
                return
            fetch_page((str(address[0]), int(address[1])), page, session)

    scraping.start("scraper", scrape)

    # the scraper stops before the server does: a fetch never meets a closed server
    return scraping.cleanup(each(session, socket.socket.close), stop_server)
