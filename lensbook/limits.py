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

With these, a provider that never answers makes a run fail (`LLMError`, with what it found)
after the chain's attempts, about 1.5 minutes with 3 attempts, instead of waiting for minutes
per call; and no run waits longer than `RUN_TIMEOUT`.
"""

from __future__ import annotations

__all__ = ["MODEL_CALL_TIMEOUT", "RUN_TIMEOUT"]

#: seconds one model call (one attempt) may take
MODEL_CALL_TIMEOUT = 30.0

#: seconds one run may take before it stops and returns what it found
RUN_TIMEOUT = 180.0
