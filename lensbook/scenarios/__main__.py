"""``python -m lensbook.scenarios NAME [--json]``: induce a fault here and investigate it."""

from __future__ import annotations

import argparse
import json
import os
import sys

from lensbook.scenarios import scenario_names
from lensbook.scenarios.runner import run_scenario


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lensbook.scenarios")
    parser.add_argument("name", choices=scenario_names())
    parser.add_argument("--json", action="store_true", help="print the outcome as JSON")
    parser.add_argument("--max-iterations", type=int, default=None)
    parser.add_argument("--progress", action="store_true", help="a live progress line on stderr")
    parser.add_argument(
        "--client",
        default=None,
        help="'offline', a client of the registry (the others as fallback), or a provider",
    )
    parser.add_argument(
        "--client-registry",
        default=None,
        help="a client registry as JSON text or a JSON file (default: $LENSBOOK_CLIENT_REGISTRY)",
    )
    args = parser.parse_args(argv)
    from lensbook.clients.providers import load_registry
    from lensbook.clients.resolve import resolve_client

    client = resolve_client(args.client, load_registry(args.client_registry))
    if args.progress:
        from lensbook.terminal import StatusLines

        with StatusLines():
            outcome = run_scenario(args.name, client=client, max_iterations=args.max_iterations)
    else:
        outcome = run_scenario(args.name, client=client, max_iterations=args.max_iterations)
    if args.json:
        sys.stdout.write(json.dumps(outcome.to_dict(), default=str) + "\n")
    else:
        sys.stdout.write(f"{outcome.scenario}: diagnosed={outcome.diagnosed}\n")
    sys.stdout.flush()
    # faults such as deadlocked threads would keep the interpreter from exiting
    os._exit(0 if outcome.diagnosed else 1)


if __name__ == "__main__":
    main()
