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
- `INVESTIGATE_DEADLINE`: seconds a ``%lens investigate`` may take (``--deadline``); the
  `Coordinator` itself has no deadline unless given one.

With these, a provider that never answers makes a run fail (`LLMError`, with what it found)
after about a minute (2 x 30 s) instead of 3 minutes, and no run waits longer than
`RUN_TIMEOUT`.
"""

from __future__ import annotations

__all__ = [
    "INVESTIGATE_DEADLINE",
    "MAX_ITERATIONS",
    "MODEL_CALL_TIMEOUT",
    "RUN_TIMEOUT",
    "TIMED_OUT_ATTEMPTS",
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
