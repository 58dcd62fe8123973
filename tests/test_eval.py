"""`lensbook eval`: real child processes, the offline investigator and local model servers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lensbook.eval import PRICES, Price, estimate_cost, price_for
from lensbook.scenarios import get_scenario, scenario_names
from tests.fakes.chat_server import (
    ChatRequest,
    ChatServer,
    Delay,
    completion,
    server_error,
    tool_call,
)
from tests.fakes.chat_server import server_pool as chat_pool

Chats = Callable[..., ChatServer]

# the figures that do not depend on timing, for comparing two runs of one scenario
STABLE = ("diagnosed", "false_alarm", "state", "iterations", "tool_calls", "probe_calls")


@pytest.fixture
def chats() -> Iterator[Chats]:
    with chat_pool() as start:
        yield start


def _env(**extra: str) -> dict[str, str]:
    """The environment of a child `lensbook`: no keys or registry of the developer's own."""
    env = dict(os.environ)
    for var in (
        "ANTHROPIC_API_KEY",
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "LENSBOOK_CLIENT_REGISTRY",
    ):
        env.pop(var, None)
    env.update(extra)
    return env


def _lensbook(*args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lensbook.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(**env),
        stdin=subprocess.DEVNULL,
    )


def _record(folder: Path) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(header, result lines, summary lines) of the one eval record saved in `folder`."""
    (path,) = folder.glob("*.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    header, rest = lines[0], lines[1:]
    assert header["kind"] == "eval"
    results = [line for line in rest if line["kind"] == "result"]
    summary = [line for line in rest if line["kind"] == "summary"]
    assert len(results) + len(summary) == len(rest)
    return header, results, summary


def _tables(text: str) -> dict[str, dict[str, list[str]]]:
    """The printed tables: client label -> scenario (and 'total') -> the row's cells."""
    tables: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        head = re.match(r"^== (.+?) \(.*\) ==$", line)
        if head:
            current = tables.setdefault(head.group(1), {})
            continue
        if current is None or not line.strip() or line.startswith(("  ", "costs", "saved")):
            continue
        cells = re.split(r"\s{2,}", line.strip())
        if cells[0] != "scenario":
            current[cells[0]] = cells
    return tables


def _as_cells(row: dict[str, Any]) -> list[str]:
    """A result line as the table prints it."""
    cost = "?" if row["cost_usd"] is None else f"${row['cost_usd']:.4f}"
    return [
        row["scenario"],
        "yes" if row["diagnosed"] else "NO",
        "YES" if row["false_alarm"] else "no",
        str(row["iterations"]),
        str(row["tool_calls"]),
        str(row["input_tokens"]),
        str(row["output_tokens"]),
        f"{row['seconds']:.2f}",
        cost,
    ]


def test_eval_json_matches_the_record_and_a_direct_run(tmp_path: Path) -> None:
    out = _lensbook(
        "eval", "--client", "offline", "--scenarios", "healthy", "--json", "--out", str(tmp_path)
    )

    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    header, results, summary = _record(tmp_path)
    assert report["results"] == results
    assert report["eval_id"] == header["eval_id"]
    assert report["path"] == str(next(tmp_path.glob("*.jsonl")))
    assert header["scenarios"] == ["healthy"]
    assert [c["label"] for c in header["clients"]] == ["offline investigator"]
    ((row,),) = [results]
    assert row["client"] == row["answered_by"] == "offline investigator"
    assert (row["provider"], row["model"]) == ("offline", "rules")
    assert row["diagnosed"] is True
    assert row["false_alarm"] is False
    assert row["error"] is None
    assert (row["input_tokens"], row["output_tokens"], row["cost_usd"]) == (0, 0, 0.0)
    assert row["iterations"] >= 3  # a snapshot, a state, done
    assert row["wall_seconds"] >= row["seconds"] > 0
    # the summary line totals the rows
    (total,) = summary
    assert {k: total[k] for k in report["summary"][0]} == report["summary"][0]
    assert total["diagnosed"] == 1 and total["iterations"] == row["iterations"]
    # the run it names was recorded like any other
    records = Path(os.environ["LENSBOOK_RECORDS_DIR"])
    assert any(row["run_id"] in p.name for p in records.glob("*.jsonl"))

    direct = subprocess.run(
        [sys.executable, "-m", "lensbook.scenarios", "healthy", "--json", "--client", "offline"],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(),
    )
    outcome = json.loads(direct.stdout.splitlines()[-1])
    assert {k: outcome[k] for k in STABLE} == {k: row[k] for k in STABLE}


@pytest.mark.slow
def test_eval_of_a_mixed_suite_prints_the_figures_the_runs_produced(tmp_path: Path) -> None:
    # faults old and new, a one-skill and a many-skill healthy workload: every kind of row and
    # total (each scenario's own diagnosis is tested in tests/scenarios/, and `lensbook eval`
    # over the whole suite is benchmarks/bench_scenarios.py)
    names = ["healthy", "cache_leak", "error_storm", "dead_consumers", "healthy_pool"]
    assert set(names) <= set(scenario_names())

    out = _lensbook(
        "eval", "--client", "offline", "--scenarios", ",".join(names), "--out", str(tmp_path)
    )

    _header, results, (total,) = _record(tmp_path)
    assert [r["scenario"] for r in results] == names
    assert out.returncode == (0 if all(r["diagnosed"] for r in results) else 1), out.stderr
    table = _tables(out.stdout)["offline investigator"]
    for row in results:
        assert table[row["scenario"]] == _as_cells(row)
        scenario = get_scenario(row["scenario"])
        assert row["skill"] == "+".join(scenario.skills or (scenario.skill,))
        assert row["healthy"] is scenario.healthy
        assert row["error"] is None, row
    assert table["total"][1] == f"{total['diagnosed']}/{len(names)}"
    assert table["total"][3:5] == [str(total["iterations"]), str(total["tool_calls"])]
    assert total["iterations"] == sum(r["iterations"] for r in results)
    healthy = next(r for r in results if r["scenario"] == "healthy")
    assert healthy["diagnosed"] and not healthy["false_alarm"]
    # faults and healthy workloads are totalled apart
    faults = [r for r in results if not r["healthy"]]
    assert total["faults"] == len(faults)
    assert total["faults_diagnosed"] == sum(r["diagnosed"] for r in faults)
    assert total["healthy"] + total["faults"] == len(names)
    assert (
        f"faults diagnosed {total['faults_diagnosed']}/{total['faults']}; healthy workloads "
        f"without alarm {total['healthy_quiet']}/{total['healthy']}; "
        f"false alarms {total['false_alarms']}"
    ) in out.stdout
    assert f"saved to {next(tmp_path.glob('*.jsonl'))}" in out.stdout
    # one progress line per run on stderr
    assert len(re.findall(r"^\[\d+/\d+\] ", out.stderr, re.M)) == len(names)


def _healthy_investigation(cached: int) -> list[Any]:
    """A model's investigation of the healthy scenario: a snapshot, then healthy and done."""

    def conclude(request: ChatRequest, _server: ChatServer) -> dict[str, Any]:
        snapshot = request.result_of("take_snapshot")
        return completion(
            tool_call("set_state", state="healthy", reason=f"RSS {snapshot['data']['rss_mb']} MB"),
            tool_call("done", summary="nothing wrong"),
            prompt_tokens=1500,
            completion_tokens=60,
            cached_tokens=cached,
        )

    return [
        completion(tool_call("take_snapshot"), prompt_tokens=1000, completion_tokens=15),
        conclude,
    ]


def test_eval_reports_each_models_tokens_and_cost(chats: Chats, tmp_path: Path) -> None:
    gpt = chats(_healthy_investigation(cached=500))
    local = chats(_healthy_investigation(cached=0))
    registry = {
        "clients": [
            {
                "name": "gpt",
                "provider": "openai",
                "options": {"base_url": gpt.base_url, "model": "gpt-4o-mini", "api_key": "sk-t"},
            },
            {
                "name": "local",
                "provider": "ollama",
                "options": {"base_url": local.base_url, "model": "qwen2.5:7b"},
            },
        ]
    }
    path = tmp_path / "clients.json"
    path.write_text(json.dumps(registry))

    out = _lensbook(
        "eval",
        "--scenarios",
        "healthy",
        "--out",
        str(tmp_path / "evals"),
        timeout=300,
        LENSBOOK_CLIENT_REGISTRY=str(path),
    )

    assert out.returncode == 0, out.stderr + out.stdout
    _header, (by_gpt, by_local), summary = _record(tmp_path / "evals")
    # the tokens are the provider's usage, summed over the turns; cached prompt tokens apart
    assert (by_gpt["client"], by_gpt["answered_by"], by_gpt["model"]) == (
        "gpt",
        "gpt",
        "gpt-4o-mini",
    )
    assert by_gpt["input_tokens"] == 1000 + 1500 - 500
    assert by_gpt["cache_read_input_tokens"] == 500
    assert by_gpt["output_tokens"] == 15 + 60
    price = PRICES["gpt-4o-mini"]
    assert price.cache_read is not None
    expected = (2000 * price.input + 75 * price.output + 500 * price.cache_read) / 1_000_000
    assert by_gpt["cost_usd"] == pytest.approx(expected)
    assert by_gpt["iterations"] == 2 and by_gpt["tool_calls"] == 3 and by_gpt["diagnosed"]
    assert (by_local["provider"], by_local["input_tokens"], by_local["cost_usd"]) == (
        "ollama",
        2500,
        0.0,
    )
    # each client ran alone: each server saw exactly its own investigation
    assert len(gpt.requests) == len(local.requests) == 2
    assert gpt.requests[0].headers["authorization"] == "Bearer sk-t"
    assert "sk-t" not in out.stdout + out.stderr
    tables = _tables(out.stdout)
    assert tables["gpt"]["healthy"] == _as_cells(by_gpt)
    assert tables["local"]["healthy"] == _as_cells(by_local)
    assert [s["client"] for s in summary] == ["gpt", "local"]


def test_eval_of_the_chain_counts_the_fallback(chats: Chats, tmp_path: Path) -> None:
    broken = chats(then=server_error())
    local = chats(_healthy_investigation(cached=0))
    registry = {
        "clients": [
            {
                "name": "first",
                "provider": "openai-generic",
                "options": {"base_url": broken.base_url, "model": "x"},
            },
            {"name": "local", "provider": "ollama", "options": {"base_url": local.base_url}},
        ],
        "retry": {"attempts": 1, "backoff": 0.01},
    }

    out = _lensbook(
        "eval",
        "--scenarios",
        "healthy",
        "--chain",
        "--json",
        "--quiet",
        "--client-registry",
        json.dumps(registry),
        "--out",
        str(tmp_path),
    )

    assert out.returncode == 0, out.stderr
    (row,) = json.loads(out.stdout)["results"]
    assert row["client"] == "chain first -> local"
    assert row["answered_by"] == "local"
    assert row["provider"] == "ollama" and row["cost_usd"] == 0.0
    assert len(broken.requests) == 2  # asked first for each turn, failing each time
    assert "[1/1]" not in out.stderr  # --quiet


def test_eval_refuses_unknown_scenarios_and_clients(tmp_path: Path) -> None:
    unknown = _lensbook("eval", "--scenarios", "healthy,no_such_fault", "--out", str(tmp_path))
    assert unknown.returncode == 2
    assert "no scenario 'no_such_fault'" in unknown.stderr

    nameless = _lensbook(
        "eval", "--client", "nobody", "--client-registry", '{"clients": []}', "--out", str(tmp_path)
    )
    assert nameless.returncode == 2
    assert nameless.stderr.startswith("lensbook eval: ")  # one line, no traceback
    assert "Traceback" not in nameless.stderr
    assert list(tmp_path.iterdir()) == []  # nothing ran, nothing saved


@pytest.mark.slow
def test_a_scenario_that_outlives_its_timeout_is_an_error_row(chats: Chats, tmp_path: Path) -> None:
    slow = chats(then=Delay(30.0))
    registry = {
        "clients": [{"name": "slow", "provider": "ollama", "options": {"base_url": slow.base_url}}]
    }

    out = _lensbook(
        "eval",
        "--scenarios",
        "healthy",
        "--timeout",
        "4",
        "--json",
        "--quiet",
        "--client-registry",
        json.dumps(registry),
        "--out",
        str(tmp_path),
    )

    assert out.returncode == 1
    (row,) = json.loads(out.stdout)["results"]
    assert row["diagnosed"] is False
    assert "no result within 4 s" in row["error"]


def test_prices() -> None:
    assert price_for("anthropic", "claude-sonnet-4-5-20250929") == PRICES["claude-sonnet-4"]
    assert price_for("openai", "gpt-4o-mini-2024-07-18") == PRICES["gpt-4o-mini"]
    assert price_for("openai-generic", "openai/gpt-4.1-mini") == PRICES["gpt-4.1-mini"]
    assert price_for("openai", "some-new-model") is None
    assert price_for("ollama", "gpt-4o") == Price(0.0, 0.0, 0.0, 0.0)
    assert estimate_cost(None, {"input_tokens": 10}) is None
    row = {"input_tokens": 1_000_000, "output_tokens": 1_000_000, "cache_creation_input_tokens": 0}
    assert estimate_cost(Price(3.0, 15.0), row) == 18.0
