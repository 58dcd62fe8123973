"""Redaction cost and false positives: lensbook's rules, side by side with detect-secrets.

Prints, for texts of 10,000 to 80,000 characters, the milliseconds of CPU one redaction takes
(best of several runs, so a busy machine does not blur it) on ordinary probe output, on log text
with the corpus's secrets in it, and on adversarial inputs (long runs that make a careless
pattern quadratic); the ratio between sizes (x8 for linear) and the nanoseconds per character
show the cost is linear. Then false positives on ordinary probe output (redactions where there
is no secret) and detections on the secret corpus, for lensbook and, when it is installed, for
detect-secrets (``pip install detect-secrets``) scanning the same text line by line.

    .venv/bin/python benchmarks/bench_redaction.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lensbook.skills.base import render_output
from lensbook.skills.process import ProcessSkill
from lensbook.skills.redact import REDACTED, redact_text
from lensbook.skills.runtime import RuntimeSkill
from lensbook.skills.system import SystemSkill
from lensbook.skills.threads import ThreadsSkill
from tests.skills._secret_corpus import SHAPES, leaks


def ordinary_output() -> str:
    """Real probe output of this process: JSON lines, paths, hex ids, numbers."""
    parts = []
    for skill in (RuntimeSkill(), ProcessSkill(), SystemSkill(), ThreadsSkill()):
        for tool in skill.probes():
            slow = ("threads_hot", "system_cpu", "process_activity", "system_top_processes")
            if tool.name in slow or tool.name == "threads_stack":  # slow, or needs an argument
                continue
            parts.append(render_output(tool.fn(), 100_000))
    return "\n".join(parts)


def fill(text: str, size: int) -> str:
    return (text * (size // max(len(text), 1) + 1))[:size]


def best_ms(fn: Callable[[str], object], text: str, repeats: int) -> float:
    """The fastest of `repeats` runs in CPU time: the cost itself, not the machine's load."""
    times = []
    for _ in range(repeats):
        started = time.process_time()
        fn(text)
        times.append(time.process_time() - started)
    return 1000 * min(times)


def detect_secrets_scanner() -> Callable[[str], list[str]] | None:
    try:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import default_settings
    except ImportError:
        return None

    def scan(text: str) -> list[str]:
        found = []
        with default_settings():
            for line in text.splitlines():
                found += [str(s.secret_value) for s in scan_line(line)]
        return found

    return scan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    ordinary = ordinary_output()
    secrets_text = "\n".join(f"worker 3 retried: {s.line()} after 2 s" for s in SHAPES)
    adversarial = {
        "one long word": "a" * 100,
        "key=value pairs": "key=b ",
        "colons": "a:",
        "dashes": "-p",
        "url-ish": "http://a",
        "base64 run": "Ab3/",
    }
    sizes = (10_000, 40_000, 80_000)
    print(f"lensbook redact_text, CPU ms (best of {args.repeats}); ns per character at 80k")
    print(f"{'input':<30}" + "".join(f"{n:>10,}" for n in sizes) + "   80k/10k  ns/char")
    rows = {"ordinary probe output": ordinary, "logs with secrets": secrets_text}
    rows.update({f"adversarial: {k}": v for k, v in adversarial.items()})
    for name, base in rows.items():
        figures = [best_ms(redact_text, fill(base, n), args.repeats) for n in sizes]
        ratio = figures[-1] / figures[0] if figures[0] else float("nan")
        per_char = 1e6 * figures[-1] / sizes[-1]
        print(
            f"{name:<30}"
            + "".join(f"{f:>10.2f}" for f in figures)
            + f"   x{ratio:<6.1f}  {per_char:.0f}"
        )

    print()
    text = fill(ordinary, 40_000)
    ours = redact_text(text)
    ours_fp = ours.count(REDACTED)
    ours_missed = len({m.split(":")[0] for m in leaks(redact_text(secrets_text))})
    print(f"false positives on 40,000 chars of ordinary probe output: lensbook {ours_fp}")
    print(f"corpus shapes missed ({len(SHAPES)} in all): lensbook {ours_missed}")
    print(f"lensbook, 40,000 chars of ordinary output: {best_ms(redact_text, text, 7):.2f} ms")
    scan = detect_secrets_scanner()
    if scan is None:
        print("detect-secrets is not installed: no comparison (pip install detect-secrets)")
        return
    flagged = scan(text)
    missed = [s.name for s in SHAPES if not _caught(scan(s.line()), s.secret)]
    print(f"detect-secrets, 40,000 chars of ordinary output: {best_ms(scan, text, 3):.2f} ms")
    examples = sorted(set(flagged), key=len, reverse=True)[:3]
    print(
        f"false positives on the same ordinary output: detect-secrets {len(flagged)} "
        f"(e.g. {json.dumps(examples)[:160]})"
    )
    print(f"corpus shapes missed: detect-secrets {len(missed)} ({', '.join(missed)})")


def _caught(found: list[str], secret: str) -> bool:
    return any(len(f) >= 8 and (f in secret or secret in f) for f in found)


if __name__ == "__main__":
    main()
