"""Run every benchmark in this folder, one after another, and print their figures (`make bench`).

Each benchmark runs as its own process with its default settings (run one alone for its
options: `python benchmarks/bench_x.py --help`). A benchmark that fails is reported and the
others still run; the exit status says whether all of them finished.

    python benchmarks/run_all.py [--only loop,triage] [--skip dask,limits]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated names (bench_NAME.py)")
    parser.add_argument("--skip", default="", help="comma-separated names to leave out")
    args = parser.parse_args()
    only = {n for n in args.only.split(",") if n}
    skip = {n for n in args.skip.split(",") if n}
    scripts = sorted(HERE.glob("bench_*.py"))
    failed: list[str] = []
    for script in scripts:
        name = script.stem.removeprefix("bench_")
        if (only and name not in only) or name in skip:
            continue
        print(f"\n== {script.name} ==", flush=True)
        began = time.perf_counter()
        code = subprocess.call([sys.executable, str(script)])
        took = time.perf_counter() - began
        print(f"-- {script.name}: exit {code} in {took:.1f} s", flush=True)
        if code != 0:
            failed.append(script.name)
    print(f"\n{len(failed)} benchmark(s) failed" + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
