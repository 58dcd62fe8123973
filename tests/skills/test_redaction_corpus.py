"""No secret leaves the process: the corpus placed everywhere a probe reads, real operators, the
real `anthropic` SDK against the local Messages API, and every request and record checked.

Each of the corpus's secrets (tests/skills/_secret_corpus.py), in the line it usually comes in, is
put in the environment, in user variables and a DataFrame of a real IPython shell, in log records,
in exception messages, in thread names, in asyncio task names, in the paths of open files and in
child processes' command lines (shown, by opt-in, to make the test harder). Then an operator per
skill calls every probe through the SDK. Each place carries a tag (``log07``, ``thr07``...) so the
test also proves the place was read and shown, not just that nothing was.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lensbook
from lensbook.clients.anthropic_ import AnthropicClient
from lensbook.records import writer
from lensbook.skills.aio import AsyncioSkill, register_loop, unregister_loop
from lensbook.skills.base import Skill
from lensbook.skills.exceptions import ExceptionsSkill
from lensbook.skills.kernel import KernelSkill
from lensbook.skills.logs import LogsSkill
from lensbook.skills.process import ProcessSkill
from lensbook.skills.runtime import RuntimeSkill
from lensbook.skills.system import SystemSkill
from lensbook.skills.threads import ThreadsSkill
from lensbook.skills.untrusted import DATA_NOTE
from tests._ipython import ipython_shell
from tests.fakes.messages_server import (
    MessagesServer,
    RecordedRequest,
    server_pool,
    tool_use,
    tool_uses,
)
from tests.skills._secret_corpus import SHAPES, leaks

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

EXC_TYPES: list[type[Exception]] = [ValueError, KeyError, RuntimeError, TypeError, OSError,
                                    LookupError, ArithmeticError, PermissionError]  # fmt: skip


#: how many first digits the two-digit tags have (``log0*`` ... ``log8*``): one search each
TENS = (len(SHAPES) - 1) // 10 + 1


def _lines() -> list[tuple[int, str]]:
    return list(enumerate(s.line() for s in SHAPES))


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Any]:
    with ipython_shell(tmp_path) as sh:
        yield sh


class _Polluted:
    """The process with the corpus everywhere; `close()` undoes all of it."""

    def __init__(self, shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        import pandas as pd

        self.logs = LogsSkill()
        self.exceptions = ExceptionsSkill()
        self.logs.snapshot()  # their observers go in now, before the records and exceptions
        self.exceptions.snapshot()
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.files: list[Any] = []
        self.children: list[subprocess.Popen[bytes]] = []
        self.loop = asyncio.new_event_loop()
        self.loop_thread = threading.Thread(target=self.loop.run_forever, name="corpus-loop")
        lines = _lines()
        ns = shell.user_ns
        log = logging.getLogger("corpus.app")
        for i, line in lines:
            monkeypatch.setenv(f"LB_CORPUS_ENV_{i:02d}", line)
            ns[f"var{i:02d}"] = f"var{i:02d} {line}"
            log.warning("log%02d %s", i, line)
            try:
                raise EXC_TYPES[i % len(EXC_TYPES)](f"exc{i:02d} {line}")
            except Exception:
                log.exception("excl%02d while connecting", i)
            thread = threading.Thread(target=self.stop.wait, name=f"thr{i:02d} {line}", daemon=True)
            thread.start()
            self.threads.append(thread)
            if "/" not in line and "\n" not in line and len(line.encode()) < 200:
                self.files.append(open(tmp_path / f"path{i:02d} {line}", "w"))  # noqa: SIM115
            self.children.append(
                subprocess.Popen(
                    ["sh", "-c", "read x", "sh", f"cmd{i:02d}", line], stdin=subprocess.PIPE
                )
            )
        ns["settings"] = {"dbPassword": SHAPES[0].secret, "region": "eu-west-1"}
        ns["orders_frame"] = pd.DataFrame(
            {f"df{i:02d} {line}": [line, f"df{i:02d}"] for i, line in lines}
        )
        self.loop_thread.start()
        register_loop(self.loop)
        asyncio.run_coroutine_threadsafe(self._tasks(lines), self.loop).result(10)

    async def _tasks(self, lines: list[tuple[int, str]]) -> None:
        blocker = self.loop.create_future()
        self.tasks = [
            self.loop.create_task(self._park(blocker), name=f"task{i:02d} {line}")
            for i, line in lines
        ]
        self.blocker = blocker

    @staticmethod
    async def _park(blocker: asyncio.Future[None]) -> None:
        await asyncio.shield(blocker)

    def close(self) -> None:
        self.stop.set()
        for child in self.children:
            with contextlib.suppress(OSError):
                assert child.stdin is not None
                child.stdin.close()
        for child in self.children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for handle in self.files:
            handle.close()

        async def finish() -> None:
            self.blocker.set_result(None)
            await asyncio.gather(*self.tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(finish(), self.loop).result(10)
        unregister_loop(self.loop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.loop_thread.join(10)
        self.loop.close()
        for thread in self.threads:
            thread.join(10)
        self.logs.close()
        self.exceptions.close()


@pytest.fixture
def polluted(shell: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Polluted]:
    process = _Polluted(shell, tmp_path, monkeypatch)
    try:
        yield process
    finally:
        process.close()


Calls = list[tuple[str, dict[str, Any]]]


def _script(calls: Calls) -> list[Any]:
    """The model's turns: a snapshot and every call at once, then done."""
    return [
        tool_uses(tool_use("take_snapshot"), *(tool_use(n, **a) for n, a in calls)),
        tool_uses(tool_use("done", summary="checked")),
    ]


def _every_probe(skill: Skill, special: Calls) -> Calls:
    named = {n for n, _ in special}
    return special + [(t.name, {}) for t in skill.probes() if t.name not in named]


def test_no_secret_reaches_a_model_request_or_a_record(
    polluted: _Polluted, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = KernelSkill()
    kernel.share_values = True  # values shown too, redacted: the harder case
    process, system = ProcessSkill(), SystemSkill()
    process.share_command_lines = system.share_command_lines = True
    exc_names = [t.__name__ for t in EXC_TYPES]
    plan: list[tuple[Skill, Calls]] = [
        (
            polluted.logs,
            [("logs_search", {"pattern": f"log{d}", "limit": 50}) for d in range(TENS)]
            + [
                ("logs_recent", {"limit": 100, "min_level": "DEBUG"}),
                ("logs_top_messages", {"limit": 50, "min_level": "DEBUG"}),
                ("logs_summary", {"top": 20}),
            ],
        ),
        (
            polluted.exceptions,
            [("exceptions_recent", {"type_name": n, "limit": 20, "frames": 1}) for n in exc_names]
            + [("exceptions_top", {"limit": 30, "frames": 2}), ("exceptions_summary", {})],
        ),
        (
            kernel,
            [
                *_every_probe(
                    kernel,
                    [
                        ("kernel_variables", {"limit": 100}),
                        ("kernel_variable", {"name": "settings"}),
                    ],
                ),
                ("kernel_variable", {"name": "orders_frame"}),
            ],
        ),
        (
            ThreadsSkill(),
            [
                ("threads_list", {"limit": 200, "stack_depth": 1}),
                ("threads_hot", {"seconds": 0.2}),
                ("threads_deadlocks", {}),
                ("threads_stack", {"thread": "MainThread", "depth": 3}),
            ],
        ),
        (
            AsyncioSkill(),
            [
                ("asyncio_tasks", {"limit": 200, "stack_limit": 1}),
                ("asyncio_stuck", {"min_age_s": 0.0, "limit": 50}),
                ("asyncio_lag", {"pings": 1}),
                ("asyncio_loops", {}),
                ("asyncio_slow_callbacks", {}),
            ],
        ),
        (
            process,
            _every_probe(
                process,
                [
                    ("process_children", {"limit": 200}),
                    ("process_open_files", {"limit": 100}),
                    ("process_activity", {"interval": 0.05}),
                ],
            ),
        ),
        (
            system,
            _every_probe(
                system,
                [
                    ("system_top_processes", {"limit": 30, "interval": 0.1}),
                    ("system_cpu", {"interval": 0.1}),
                ],
            ),
        ),
        (RuntimeSkill(), _every_probe(RuntimeSkill(), [])),
    ]
    requests: list[RecordedRequest] = []
    records: list[str] = []
    try:
        with server_pool() as start:
            for skill, calls in plan:
                server: MessagesServer = start(_script(calls))
                client = AnthropicClient(base_url=server.url, api_key="test-key")
                op = lensbook.Operator.start(skill=skill, client=client, name=f"corpus-{skill.id}")
                result = op.run(reason="check everything").result
                assert result.stop_reason == "done", (skill.id, result.error)
                requests.extend(server.requests)
                path = writer.path_of(result.run_id)
                assert path is not None and path.exists()
                records.append(path.read_text(encoding="utf-8"))
    finally:
        kernel.close()
    sent = "\n".join(json.dumps(r.body, ensure_ascii=False) for r in requests)
    on_disk = "\n".join(records)

    assert leaks(sent) == []
    assert leaks(on_disk) == []
    # every place was read and shown to the model (tags), while its secrets were not
    for tag in ("log", "excl", "exc", "thr", "task", "path", "cmd", "var", "df"):
        seen = {i for i, _ in _lines() if f"{tag}{i:02d}" in sent}
        assert seen, f"nothing of the {tag} place reached the model"
    # every log line and every exception message reached it (the searches cover them all)
    assert all(f"log{i:02d}" in sent for i, _ in _lines())
    assert all(f"exc{i:02d}" in sent for i, _ in _lines())
    assert "LB_CORPUS_ENV_00" in sent or "LB_CORPUS_ENV" not in sent  # names only, if any
    # the model is told what the delimiters mean
    assert all(DATA_NOTE in json.dumps(r.body["system"], ensure_ascii=False) for r in requests)


def test_command_lines_reach_the_model_only_by_opt_in(polluted: _Polluted) -> None:
    ours = {child.pid for child in polluted.children}
    children = ProcessSkill().children(limit=200)
    rows = [r for r in children["listed"] if r["pid"] in ours]
    assert rows and all(r["name"] == "sh" and "cmdline" not in r for r in rows)
    top = SystemSkill().top_processes(limit=30, interval=0.1)
    assert all("cmdline" not in r for r in top["by_cpu"] + top["by_memory"])
    assert "cmd00" not in json.dumps([children, top], default=str)


def test_another_process_seen_from_outside_shows_its_command_line_by_opt_in_only() -> None:
    from lensbook.skills.external import ExternalProcessSkill

    line = next(s for s in SHAPES if s.name == "flag_password").line()
    child = subprocess.Popen(
        ["sh", "-c", "echo started; read x", "sh", *line.split()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # right after fork the child is still this interpreter (its command line may read
        # empty): probe only once sh runs and says so
        assert child.stdout is not None
        assert child.stdout.readline() == "started\n"
        skill = ExternalProcessSkill(child.pid)
        shown = skill.overview()
        assert shown["name"] == "sh" and "cmdline" not in shown
        skill.share_command_lines = True
        shown = skill.overview()
        assert "--password [REDACTED]" in shown["cmdline"] and leaks(str(shown)) == []
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
        child.stdout.close()
