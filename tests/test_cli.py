"""The `lensbook` command in real child processes: run, skills, providers (and eval's refusals)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import messages_server as anthropic_fake
from tests.fakes.chat_server import ChatServer, completion, text_reply, tool_call
from tests.fakes.chat_server import server_pool as chat_pool
from tests.fakes.messages_server import MessagesServer
from tests.fakes.messages_server import server_pool as messages_pool

Chats = Callable[..., ChatServer]
Servers = Callable[..., MessagesServer]


@pytest.fixture
def chats() -> Iterator[Chats]:
    with chat_pool() as start:
        yield start


@pytest.fixture
def servers() -> Iterator[Servers]:
    with messages_pool() as start:
        yield start


def _lensbook(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    child_env = dict(os.environ)
    for var in (
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "LENSBOOK_CLIENT_REGISTRY",
    ):
        child_env.pop(var, None)
    child_env.update(env)
    return subprocess.run(
        [sys.executable, "-m", "lensbook.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=child_env,
        stdin=subprocess.DEVNULL,
    )


def test_run_json_with_the_offline_investigator() -> None:
    out = _lensbook("run", "runtime", "--reason", "routine check", "--json", "--client", "offline")

    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["operator"] == "runtime"
    assert result["client"] == "offline investigator"
    assert result["stop_reason"] == "done"
    assert result["state"] in ("healthy", "observing")
    assert len(result["snapshots"]) >= 1
    assert len(out.stdout.splitlines()) == 1
    assert "[runtime] iteration" not in out.stderr  # no progress line with --json


def test_run_with_a_provider_named_on_the_command_line(chats: Chats) -> None:
    server = chats(
        [completion(tool_call("take_snapshot")), completion(tool_call("done", summary="fine"))]
    )

    out = _lensbook(
        "run", "runtime", "--reason", "check", "--json",
        "--client", "ollama", "--model", "llama3.1:8b", "--base-url", server.base_url,
    )  # fmt: skip

    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["client"], result["summary"], result["iterations"]) == ("ollama", "fine", 2)
    assert [r.body["model"] for r in server.requests] == ["llama3.1:8b"] * 2


def test_run_with_a_registry_from_the_environment(chats: Chats, tmp_path: Path) -> None:
    server = chats([completion(tool_call("done", summary="from the registry"))])
    registry = {
        "clients": [{"name": "box", "provider": "vllm", "options": {"base_url": server.base_url}}]
    }
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(registry))

    out = _lensbook("run", "runtime", "--json", LENSBOOK_CLIENT_REGISTRY=str(path))

    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["client"] == "box"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--client-registry", "{not json"), "not valid JSON"),
        (("--client-registry", "/no/such/registry.json"), "cannot read /no/such/registry.json"),
        (("--client", "nobody"), "no client registry given"),
        (("--client-registry", '{"clients": []}', "--model", "m"), "--model and --base-url"),
    ],
    ids=["bad-json", "no-file", "unknown-client", "model-without-provider"],
)
def test_run_refuses_a_bad_client_configuration(args: tuple[str, ...], message: str) -> None:
    out = _lensbook("run", "runtime", "--json", *args)

    assert out.returncode == 2
    assert message in out.stderr
    assert out.stdout == ""


def test_skills_lists_each_skill_and_its_probes() -> None:
    out = _lensbook("skills")

    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert any(line.startswith("runtime: ") for line in lines)
    assert any(line.strip().startswith("runtime_memory_info(") for line in lines)


def test_providers_shows_the_default_chain() -> None:
    out = _lensbook("providers")

    assert out.returncode == 0, out.stderr
    assert "no ANTHROPIC_API_KEY, so the offline investigator" in out.stdout
    assert "offline investigator" in out.stdout.splitlines()[1]


def _registry(claude: MessagesServer, local: ChatServer) -> dict[str, Any]:
    return {
        "primary": "claude",
        "clients": [
            {
                "name": "local",
                "provider": "ollama",
                "options": {"base_url": local.base_url, "model": "qwen2.5:7b"},
            },
            {
                "name": "claude",
                "provider": "anthropic",
                "options": {
                    "base_url": claude.url,
                    "api_key": "sk-ant-secret-key",
                    "model": "claude-haiku-4-5",
                },
            },
        ],
        "retry": {"attempts": 2, "backoff": 0.25},
    }


def test_providers_describes_the_registry_chain_without_keys(
    chats: Chats, servers: Servers, tmp_path: Path
) -> None:
    claude, local = servers(), chats()
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(_registry(claude, local)))

    out = _lensbook("providers", "--client-registry", str(path))
    as_json = _lensbook("providers", "--json", LENSBOOK_CLIENT_REGISTRY=str(path))

    assert out.returncode == as_json.returncode == 0, out.stderr + as_json.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "client chain of --client-registry:"
    # the primary first, then the rest in the order given
    assert lines[1].split()[:4] == ["1.", "claude", "anthropic", "claude-haiku-4-5"]
    assert lines[1].split()[4] == claude.url
    assert lines[2].split() == ["2.", "local", "ollama", "qwen2.5:7b", local.base_url]
    assert "2 attempt(s) per client, backoff 0.25 s, then the next client" in lines[3]
    assert "sk-ant-secret-key" not in out.stdout + as_json.stdout
    report = json.loads(as_json.stdout)
    (chain,) = report["chains"]
    assert chain["label"] == "$LENSBOOK_CLIENT_REGISTRY"
    assert [c["name"] for c in chain["clients"]] == ["claude", "local"]
    assert report["checks"] == []
    assert claude.requests == [] and local.requests == []  # describing sends nothing


def test_providers_check_asks_each_client_once(
    chats: Chats, servers: Servers, tmp_path: Path
) -> None:
    claude = servers(
        [anthropic_fake.tool_uses(anthropic_fake.tool_use("ping", ok=True), input_tokens=42)]
    )
    local = chats([text_reply("Sure! ping(ok=true)")])
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(_registry(claude, local)))

    out = _lensbook("providers", "--check", "--json", "--client-registry", str(path))

    assert out.returncode == 0, out.stderr
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["claude"]["ok"] is True
    assert checks["claude"]["tool_call"] is True
    assert checks["claude"]["input_tokens"] == 42
    assert checks["claude"]["detail"] == "called ping"
    assert checks["local"]["ok"] is True
    assert checks["local"]["tool_call"] is False  # it answered, but not with a tool call
    assert "no tool call" in checks["local"]["detail"]
    (sent,) = claude.requests
    assert [t["name"] for t in sent.body["tools"]] == ["ping"]
    assert len(local.requests) == 1


def test_providers_check_fails_when_no_client_can_call_tools(chats: Chats) -> None:
    broken = chats(then=anthropic_fake.bad_request())  # any 4xx: refused, not retried

    out = _lensbook("providers", "--check", "--client", "ollama", "--base-url", broken.base_url)

    assert out.returncode == 1
    assert "FAILED" in out.stdout
    assert "the chain would be answered by: no client" in out.stdout


def test_demo_runs_the_scenario_with_the_client_named(chats: Chats) -> None:
    server = chats(
        [
            completion(tool_call("take_snapshot")),
            completion(
                tool_call("set_state", state="healthy", reason="nothing stands out"),
                tool_call("done", summary="healthy"),
            ),
        ]
    )

    out = _lensbook("demo", "healthy", "--client", "ollama", "--base-url", server.base_url)

    assert out.returncode == 0, out.stderr + out.stdout
    assert "healthy: diagnosed by the ollama in 2 iterations" in out.stdout
    assert len(server.requests) == 2


def test_eval_is_in_the_help() -> None:
    out = _lensbook("--help")

    assert out.returncode == 0
    for command in ("run", "demo", "skills", "providers", "eval"):
        assert command in out.stdout


def test_replay_and_runs_commands(tmp_path: Path) -> None:
    """`lensbook replay` re-runs the shipped postmortem record; `lensbook runs` lists records."""
    import shutil

    record = tmp_path / "cache-leak.jsonl"
    shutil.copy(Path(__file__).parents[1] / "notebooks" / "records" / "cache-leak.jsonl", record)
    env = {**os.environ, "LENSBOOK_RECORDS_DIR": str(tmp_path / "new")}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lensbook.cli",
            "replay",
            str(record),
            "--tools",
            "record",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["same_notifications"] is True and data["divergences"] == []
    assert data["result"]["notifications"][0]["anomaly_type"] == "memory_leak"
    listed = subprocess.run(
        [sys.executable, "-m", "lensbook.cli", "runs", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert "cache-leak.jsonl" in listed.stdout and "memory" in listed.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "lensbook.cli", "replay", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and "nope.jsonl" in bad.stderr


@pytest.mark.slow
def test_run_with_pid_investigates_another_process_from_outside() -> None:
    """`lensbook run --pid`: a child that grows by ~20 MB/s is seen growing, from outside."""
    grower = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nheld = []\nfor n in range(3000):\n"
            "    held.append(bytearray(1_000_000)); time.sleep(0.05)\n"
            "    if n == 0: print('growing', flush=True)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert grower.stdout is not None
        assert grower.stdout.readline() == "growing\n"  # it runs and grows: look at it now
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "lensbook.cli",
                "run",
                "x",
                "--pid",
                str(grower.pid),
                "--reason",
                "is it leaking?",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"},
        )
    finally:
        grower.kill()
        grower.wait(10)
        if grower.stdout is not None:
            grower.stdout.close()
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    assert result["client"] == "offline investigator"
    kinds = [n["anomaly_type"] for n in result["notifications"]]
    assert "memory_growth" in kinds
    note = result["notifications"][kinds.index("memory_growth")]
    assert f"pid {grower.pid}" in note["context"]


def test_triage_prints_the_sweep_and_json() -> None:
    out = _lensbook("triage", "--skills", "runtime,gc,process", "--json")
    assert out.returncode == 0, out.stderr
    sweep = json.loads(out.stdout)
    assert set(sweep) >= {"signals", "seconds", "skipped", "history_recording"}
    assert isinstance(sweep["signals"], list)
    bad = _lensbook("triage", "--skills", "nope")
    assert bad.returncode == 2 and "no skill 'nope'" in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "memory", "--max-iterations", "-3"), "must be at least 1, got -3"),
        (("run", "memory", "--pid", "999999999"), "no process with pid 999999999"),
        (("run", "memory", "--timeout", "0"), "must be a positive number of seconds"),
        (("run", "nosuchskill"), "no skill 'nosuchskill'"),
        (("run",), "the following arguments are required: SKILL"),
        (("triage", "--skills", "nope"), "no skill 'nope'"),
        (("eval", "--max-iterations", "zero"), "not an integer: 'zero'"),
        (("providers", "--timeout", "-1"), "must be a positive number of seconds"),
        (("replay", "/no/such/run.jsonl"), "lensbook replay: "),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v),
)
def test_every_bad_input_is_one_line_and_exit_status_2(
    args: tuple[str, ...], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from lensbook.cli import main

    assert main(list(args)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    "args",
    [("--max-iterations", "-3"), ("--pid", "999999999")],
    ids=["negative-iterations", "no-such-pid"],
)
def test_the_issue_s_bad_inputs_end_without_a_traceback(args: tuple[str, ...]) -> None:
    out = _lensbook("run", "memory", *args)

    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stdout == ""


#: a user skill, registered in a child process so that it does not join this session's
#: coordinations and triage sweeps
LISTED_SKILL = """
import lensbook

class Listed(lensbook.Skill):
    id = "cli_listed"
    title = "Listed skill"
    description = "A user skill registered for the listing"
    system_prompt = "You look after a test."

    def snapshot(self):
        return {}

    @lensbook.probe
    def ping(self, times: int = 1) -> dict:
        \"\"\"Answer pong. Cost: nothing.\"\"\"
        return {"pong": times}

lensbook.register_skill(Listed)
"""


def test_skills_lists_registered_user_skills() -> None:
    code = LISTED_SKILL + "from lensbook.cli import main\nraise SystemExit(main(['skills']))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)

    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "cli_listed: Listed skill — A user skill registered for the listing" in lines
    assert any(line.strip().startswith("cli_listed_ping(times)") for line in lines), lines
