"""The public surface is short and deliberate: this test locks it."""

from __future__ import annotations

import subprocess
import sys

import lensbook

EXPECTED = {
    "ClientNotConfigured",
    "CompletionResult",
    "LLMClient",
    "LLMError",
    "LensbookError",
    "MessageResponse",
    "Notification",
    "NotificationList",
    "Operator",
    "OperatorCrashed",
    "OperatorNotStarted",
    "OperatorStopped",
    "ProviderError",
    "Run",
    "RunFailed",
    "ScriptedClient",
    "Skill",
    "Snapshot",
    "Status",
    "UnknownSkill",
    "WrongThread",
    "__version__",
    "arun",
    "events",
    "get_operator",
    "history",
    "last",
    "load_run",
    "metrics",
    "operators",
    "postmortem",
    "probe",
    "register_skill",
    "replay",
    "run",
    "runs",
    "start",
    "stop",
    "Coordinator",
    "CoordinatorResult",
    "Insight",
    "watch",
    "triage",
    "Triage",
}


def test_exported_names_are_locked() -> None:
    assert set(lensbook.__all__) == EXPECTED
    for name in lensbook.__all__:
        assert hasattr(lensbook, name), name


def test_the_error_tree() -> None:
    assert issubclass(lensbook.OperatorNotStarted, LookupError)
    assert issubclass(lensbook.WrongThread, RuntimeError)
    for cls in (lensbook.LLMError, lensbook.OperatorCrashed, lensbook.OperatorStopped):
        assert issubclass(cls, lensbook.RunFailed)
        assert issubclass(cls, lensbook.LensbookError)


def test_nothing_happens_at_import() -> None:
    code = (
        "import sys, threading, os; import lensbook; "
        "heavy = [m for m in ('IPython', 'ipywidgets', 'pandas', 'anthropic', 'matplotlib') "
        "if m in sys.modules]; "
        "print(len(threading.enumerate()), heavy, os.path.exists('.lensbook'))"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as cwd:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=True
        )
    assert out.stdout.strip() == "1 [] False"
