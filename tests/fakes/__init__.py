"""Fakes of the outside world for tests: real local servers, never mocks of lensbook.

`messages_server` is a scripted Anthropic Messages API on 127.0.0.1 (see its docstring);
`server_pool()` starts as many as a test needs and stops them all afterwards.
"""

from __future__ import annotations

from tests.fakes.messages_server import MessagesServer, server_pool

__all__ = ["MessagesServer", "server_pool"]
