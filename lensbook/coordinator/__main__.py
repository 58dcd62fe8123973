"""``python -m lensbook.coordinator SCENARIO [--json] [--quiet]``: induce a fault and coordinate.

The scenario is any module ``lensbook.scenarios.<name>`` that declares one: the suite's, or the
coordinator's own (such as ``leak_and_errors``). The coordinator investigates it with the
scenario's reason; `--json` prints the `CoordinatorResult` as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from lensbook.scenarios import Scenario, get_scenario


def load_scenario(name: str) -> Scenario:
    try:
        return get_scenario(name)
    except KeyError as exc:
        raise SystemExit(exc.args[0]) from None


def main(argv: list[str] | None = None) -> int:
    from lensbook.coordinator.coordinator import Coordinator
    from lensbook.operator.registry import stop
    from lensbook.terminal import StatusLines

    parser = argparse.ArgumentParser(prog="python -m lensbook.coordinator")
    parser.add_argument("scenario")
    parser.add_argument("--skills", help="comma-separated skill ids the coordinator may invoke")
    parser.add_argument("--strategy", choices=["agent", "pipeline"], default="agent")
    parser.add_argument("--deadline", type=float, default=120.0)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--quiet", action="store_true", help="no status lines on stderr")
    args = parser.parse_args(argv)
    scenario = load_scenario(args.scenario)
    skills = [s for s in (args.skills or "").split(",") if s] or None
    cleanup = scenario.induce()
    try:
        time.sleep(scenario.settle)
        # one status line per operator the coordinator invokes, on stderr
        with StatusLines(quiet=args.quiet or args.json):
            result = Coordinator.run(
                {"reason": scenario.reason},
                skills=skills,
                strategy=args.strategy,
                deadline=args.deadline,
            )
    finally:
        if cleanup is not None:
            cleanup()
    stop()
    if args.json:
        sys.stdout.write(json.dumps(result.to_dict(), default=str) + "\n")
    else:
        sys.stdout.write(str(result) + "\n")
    sys.stdout.flush()
    # faults such as deadlocked threads would keep the interpreter from exiting
    os._exit(0 if result.stop_reason == "done" else 1)


if __name__ == "__main__":
    main()
