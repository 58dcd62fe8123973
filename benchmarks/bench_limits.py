"""How long the caller waits with default settings, in the three ways a provider or a person
can leave a run hanging, against the figures lensbook 0.1 gave.

1. A provider that never answers: seconds until `run()` returns (it raises `LLMError` after
   `TIMED_OUT_ATTEMPTS` calls, each cut at `MODEL_CALL_TIMEOUT`; see `lensbook.limits`).
   0.1: 182 s.
2. Ctrl-C during that run: seconds until the *next* `run()` (a quick scripted one) has its
   result. 0.1: it waited behind the hanging run, 182 s.
3. An undecodable 200 answer (an HTML page) from the primary: seconds until the healthy
   fallback client has answered. 0.1: never (the operator crashed).

All three talk to a local Messages API server on 127.0.0.1 (tests/fakes); nothing leaves the
machine. Case 1 waits for real, about a minute; `--skip-hang` leaves it out.

    .venv/bin/python benchmarks/bench_limits.py [--skip-hang]
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

import lensbook
from lensbook import limits
from lensbook.clients import ScriptedClient, call
from tests.fakes._scripted import Raw
from tests.fakes.messages_server import (
    Delay,
    MessagesServer,
    tool_use,
    tool_uses,
)


def registry(*servers: MessagesServer) -> dict[str, Any]:
    return {
        "clients": [
            {
                "name": f"client{i}",
                "provider": "anthropic",
                "options": {"base_url": s.url, "api_key": "k"},
            }
            for i, s in enumerate(servers)
        ]
    }


def never_answers() -> float:
    with MessagesServer(then=Delay(600.0), lifetime=900) as hang:
        op = lensbook.Operator.start(skill="runtime", client_registry=registry(hang))
        began = time.monotonic()
        with contextlib.suppress(lensbook.LLMError):
            op.run(reason="hang")
        return time.monotonic() - began


def next_run_after_ctrl_c() -> float:
    with MessagesServer(then=Delay(600.0), lifetime=900) as hang:
        op = lensbook.Operator.start(skill="runtime", client_registry=registry(hang))
        main = threading.main_thread().ident
        assert main is not None

        def ctrl_c() -> None:
            while not hang.requests:
                time.sleep(0.01)
            signal.pthread_kill(main, signal.SIGINT)

        threading.Thread(target=ctrl_c, daemon=True).start()
        with contextlib.suppress(KeyboardInterrupt):
            op.run(reason="hang")
        began = time.monotonic()
        op.run(reason="next", client=ScriptedClient([call("done")]))
        return time.monotonic() - began


def fallback_after_html() -> float:
    html = Raw(200, b"<html><body>502 Bad Gateway</body></html>", content_type="text/html")
    done = tool_uses(tool_use("done", summary="ok"))
    with MessagesServer(then=html) as broken, MessagesServer([done]) as healthy:
        reg = {**registry(broken, healthy), "retry": {"attempts": 3, "backoff": 0.5}}
        op = lensbook.Operator.start(skill="runtime", client_registry=reg)
        op.run(reason="warm up the SDK", client=ScriptedClient([call("done")]))
        began = time.monotonic()
        result = op.run(reason="html").result
        assert result.client == "client1", result
        return time.monotonic() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-hang", action="store_true", help="leave out case 1 (~60 s)")
    args = parser.parse_args()
    print(
        f"defaults: MODEL_CALL_TIMEOUT {limits.MODEL_CALL_TIMEOUT:g} s, "
        f"RUN_TIMEOUT {limits.RUN_TIMEOUT:g} s, TIMED_OUT_ATTEMPTS {limits.TIMED_OUT_ATTEMPTS}"
    )
    print(f"{'case':<48} {'lensbook 0.1':>14} {'now':>10}")
    rows = []
    if not args.skip_hang:
        rows.append(("provider never answers: run() returns after", "182 s", never_answers()))
    rows.append(("Ctrl-C, then the next run() has its result in", "182 s", next_run_after_ctrl_c()))
    rows.append(("HTML 200 from primary: fallback answered in", "never", fallback_after_html()))
    for name, before, now in rows:
        print(f"{name:<48} {before:>14} {now:>8.2f} s")
    lensbook.stop()


if __name__ == "__main__":
    main()
