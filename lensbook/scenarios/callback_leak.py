"""A memory leak through callbacks registered per request and never removed."""

from __future__ import annotations

from collections.abc import Callable

from lensbook.scenarios import scenario


@scenario(
    skill="memory",
    reason="memory grows with every request",
    # the growing type, the closure and the line that registers it, and the emitter holding it
    expect=(
        r"RequestContext",
        r"<lambda> \(\S*_leaky_callbacks\.py:\d+\)",
        r"_leaky_callbacks\.BUS",
    ),
    settle=1.5,
)
def induce() -> Callable[[], None]:
    from lensbook.scenarios import _leaky_callbacks

    traffic = _leaky_callbacks.start_traffic(per_second=3000)
    return traffic.cleanup(_leaky_callbacks.clear)
