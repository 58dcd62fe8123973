"""The default time limits, named once: how long one model call and one run may take.

Both are defaults, settable per call and per operator:

- `MODEL_CALL_TIMEOUT`: seconds one model call (each attempt) may take before it is abandoned
  as a retryable failure; the chain then retries and falls back. Per run:
  ``run(..., model_timeout=60)``; per operator: ``Operator.start(..., model_timeout=60)`` or
  ``lensbook.start(model_timeout=60)``; per client: the client's own ``timeout`` option (a slow
  local model), which wins for that client.
- `RUN_TIMEOUT`: seconds a run may take before it stops and returns what it found (stop reason
  ``timeout``). Per run: ``run(..., timeout=600)``; per operator: ``Operator.start(...,
  timeout=600)`` or ``lensbook.start(timeout=600)``; ``None`` means no limit.

- `TIMED_OUT_ATTEMPTS`: calls one client may let time out before the chain moves on to its next
  client (or fails), even if it has more `attempts` for other retryable errors: a provider that
  did not answer twice is not answering. Settable as ``"retry": {"timed_out_attempts": 3}`` in a
  `client_registry`, or ``ClientChain(timed_out_attempts=...)``.

Other defaults, named once for the operator, the records, the command line
and the magic:

- `MAX_ITERATIONS`: model turns one operator run may take (``run(..., max_iterations=N)``,
  ``--max-iterations N``).
- `COORDINATOR_MAX_ITERATIONS`, `OPERATOR_TIMEOUT`: a `Coordinator`'s model turns and the
  seconds each operator run it starts may take; `MAX_WAIT_SECONDS`, `MAX_TOKENS`,
  `COMPACTION_MAX_TOKENS`, `COMPACTION_KEEP_LAST`: a run's `wait` tool, model replies and
  history compaction; `SAMPLE_INTERVAL`: the recorder's runtime snapshots (operators, `dask`);
  `MIN_INTERVAL`: the shortest sampling interval accepted (`sampling_interval`), for the
  recorder's sampler and the watcher alike.
- `INVESTIGATE_DEADLINE`: seconds a ``%lens investigate`` (``--deadline``) or an investigation
  the watcher starts may take; the `Coordinator` itself has no deadline unless given one.

With these, a provider that never answers makes a run fail (`LLMError`, with what it found)
after about a minute (2 x 30 s) instead of 3 minutes, and no run waits longer than
`RUN_TIMEOUT`.
"""

from __future__ import annotations

import math

__all__ = [
    "COMPACTION_KEEP_LAST",
    "COMPACTION_MAX_TOKENS",
    "COORDINATOR_MAX_ITERATIONS",
    "INVESTIGATE_DEADLINE",
    "MAX_ITERATIONS",
    "MAX_TOKENS",
    "MAX_WAIT_SECONDS",
    "MIN_INTERVAL",
    "MODEL_CALL_TIMEOUT",
    "OPERATOR_TIMEOUT",
    "RUN_TIMEOUT",
    "SAMPLE_INTERVAL",
    "TIMED_OUT_ATTEMPTS",
    "sampling_interval",
]

#: seconds one model call (one attempt) may take
MODEL_CALL_TIMEOUT = 30.0

#: seconds one run may take before it stops and returns what it found
RUN_TIMEOUT = 180.0

#: calls one client may let time out before the chain moves on
TIMED_OUT_ATTEMPTS = 2

#: model turns one operator run may take
MAX_ITERATIONS = 25

#: seconds a `%lens investigate` may take
INVESTIGATE_DEADLINE = 300.0

#: model turns one coordinator run may take
COORDINATOR_MAX_ITERATIONS = 30

#: seconds each operator run a coordinator starts may take (capped by what is left of its deadline)
OPERATOR_TIMEOUT = 120.0

#: the longest one `wait` tool call may sleep, in an operator's run or a coordinator's
MAX_WAIT_SECONDS = 30.0

#: tokens one model reply may take
MAX_TOKENS = 4096

#: estimated tokens of history past which an operator run compacts it, keeping the last N turns
COMPACTION_MAX_TOKENS = 50_000
COMPACTION_KEEP_LAST = 5

#: seconds between the recorder's runtime snapshots (None turns the sampler off)
SAMPLE_INTERVAL = 30.0

#: the shortest interval between samples: a snapshot costs ~50 µs, so sampling at most ten
#: times a second bounds it to a thousandth of a core (an interval of 0, -1 or NaN spun one)
MIN_INTERVAL = 0.1


def sampling_interval(value: float, name: str = "interval") -> float:
    """`value` as seconds between samples; `ValueError` unless a number >= `MIN_INTERVAL`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, not {value!r}")
    if not MIN_INTERVAL <= value < math.inf:
        raise ValueError(f"{name} must be at least {MIN_INTERVAL} s and finite, not {value!r}")
    return float(value)
