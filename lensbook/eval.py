"""`lensbook eval`: the fault-scenario suite run against each client, scored, timed and priced.

    report = run_eval(["healthy", "cache_leak"], targets_for(registry, ["local"]))
    print(format_report(report))          # a table per client
    report.rows                           # one dict per (client, scenario), as saved

Each scenario runs in a child process of its own (``python -m lensbook.scenarios NAME --json``),
so one induced fault (a deadlock, a leak, a spinning thread) never touches another run. A client
is evaluated alone, with no fallback, so its figures are its own; `chain=True` evaluates the
whole chain instead. The client configuration reaches the child through $LENSBOOK_CLIENT_REGISTRY,
never its command line, where API keys would show in `ps`.

Every row says whether the diagnosis was right (the scenario's expected culprit named, or no
false alarm on a healthy process), the iterations, tool and probe calls, the tokens the provider
reported, the wall time of the investigation, and a cost estimated from `PRICES` (None where the
model's price is not known; zero for local servers and the offline investigator). Results are
saved as they come to ``.lensbook/evals/<eval_id>.jsonl`` (or $LENSBOOK_EVALS_DIR): a header
line, one ``"kind": "result"`` line per run, and a summary line, all plain JSON.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lensbook.clients.providers import REGISTRY_ENV, ClientInfo, describe_client, registry_clients
from lensbook.clients.registry import single_client_registry
from lensbook.types import new_id, utcnow

__all__ = [
    "PRICES",
    "PRICES_AS_OF",
    "EvalReport",
    "Price",
    "Target",
    "estimate_cost",
    "format_report",
    "price_for",
    "run_eval",
    "targets_for",
]

FORMAT_VERSION = 1

# -- prices --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Price:
    """US dollars per million tokens; cache prices default to the input price."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None


#: the month the list prices below were taken; they change, so costs are estimates
PRICES_AS_OF = "2025-11"

#: model name prefix -> list price; the longest matching prefix wins
PRICES: dict[str, Price] = {
    "claude-opus-4-5": Price(5.0, 25.0, 0.5, 6.25),
    "claude-opus-4": Price(15.0, 75.0, 1.5, 18.75),
    "claude-sonnet-4": Price(3.0, 15.0, 0.3, 3.75),
    "claude-3-7-sonnet": Price(3.0, 15.0, 0.3, 3.75),
    "claude-haiku-4-5": Price(1.0, 5.0, 0.1, 1.25),
    "claude-3-5-haiku": Price(0.8, 4.0, 0.08, 1.0),
    "gpt-5-nano": Price(0.05, 0.4, 0.005),
    "gpt-5-mini": Price(0.25, 2.0, 0.025),
    "gpt-5": Price(1.25, 10.0, 0.125),
    "gpt-4.1-nano": Price(0.1, 0.4, 0.025),
    "gpt-4.1-mini": Price(0.4, 1.6, 0.1),
    "gpt-4.1": Price(2.0, 8.0, 0.5),
    "gpt-4o-mini": Price(0.15, 0.6, 0.075),
    "gpt-4o": Price(2.5, 10.0, 1.25),
    "o4-mini": Price(1.1, 4.4, 0.275),
}

# the model runs on the user's own machine (or there is no model at all)
_FREE_PROVIDERS = ("offline", "ollama", "vllm", "scripted")


def price_for(provider: str, model: str, prices: Mapping[str, Price] | None = None) -> Price | None:
    """The price of a model, zero for local providers, None when unknown."""
    if provider in _FREE_PROVIDERS:
        return Price(0.0, 0.0, 0.0, 0.0)
    table = PRICES if prices is None else prices
    name = model.lower()
    # a provider prefix such as "openai/gpt-4o" (OpenRouter, LiteLLM) does not change the price
    candidates = {name, name.rsplit("/", 1)[-1]}
    best: str | None = None
    for prefix in table:
        if any(c.startswith(prefix.lower()) for c in candidates) and (
            best is None or len(prefix) > len(best)
        ):
            best = prefix
    return table[best] if best is not None else None


def estimate_cost(price: Price | None, row: Mapping[str, Any]) -> float | None:
    """Dollars for a row's tokens (input excludes cache reads and writes, as providers count)."""
    if price is None:
        return None
    cache_read = price.input if price.cache_read is None else price.cache_read
    cache_write = price.input if price.cache_write is None else price.cache_write
    dollars = (
        int(row.get("input_tokens", 0)) * price.input
        + int(row.get("output_tokens", 0)) * price.output
        + int(row.get("cache_read_input_tokens", 0)) * cache_read
        + int(row.get("cache_creation_input_tokens", 0)) * cache_write
    ) / 1_000_000
    return round(dollars, 10)


# -- what to evaluate ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One client (or one chain) to run the suite against, and how the child gets it."""

    label: str
    clients: tuple[ClientInfo, ...]
    #: the registry the child reads from $LENSBOOK_CLIENT_REGISTRY (None: no registry)
    registry: dict[str, Any] | None = None
    #: extra arguments for ``python -m lensbook.scenarios``
    args: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "clients": [c.to_dict() for c in self.clients]}


def _offline_target() -> Target:
    from lensbook.clients.offline import OfflineInvestigator

    info = describe_client(OfflineInvestigator())
    return Target(label=info.name, clients=(info,), args=("--client", "offline"))


def targets_for(
    registry: Mapping[str, Any] | None,
    names: Sequence[str] = (),
    *,
    chain: bool = False,
) -> list[Target]:
    """The clients to evaluate: those named (``offline`` included), else every registry client,
    else lensbook's default (Anthropic when ANTHROPIC_API_KEY is set, else offline).

    Building the clients checks the configuration (providers known, SDKs installed) before any
    child starts; it sends no request.
    """
    if registry is None:
        names = list(names) or (["anthropic"] if os.environ.get("ANTHROPIC_API_KEY") else [])
        if not names or names == ["offline"]:
            return [_offline_target()]
        targets = []
        for name in names:
            if name == "offline":
                targets.append(_offline_target())
                continue
            one = single_client_registry(name)
            targets.append(Target(name, tuple(registry_clients(one)), one))
        return targets
    retry = registry.get("retry")
    entries: list[dict[str, Any]] = [dict(e) for e in registry.get("clients") or []]
    infos = registry_clients(registry)  # primary first; raises for a bad configuration
    by_name = {str(e.get("name") or e.get("provider")): e for e in entries}
    if chain:
        whole = dict(registry)
        if names:
            whole["primary"] = names[0]
        ordered = sorted(infos, key=lambda c: c.name != whole.get("primary", infos[0].name))
        label = "chain " + " -> ".join(c.name for c in ordered)
        return [Target(label, tuple(ordered), whole)]
    wanted = list(names) or [c.name for c in infos]
    targets = []
    for name in wanted:
        if name == "offline":
            targets.append(_offline_target())
            continue
        if name not in by_name:
            from lensbook._errors import ClientNotConfigured

            raise ClientNotConfigured(f"no client named {name!r} in the registry ({list(by_name)})")
        alone: dict[str, Any] = {"clients": [by_name[name]]}
        if retry is not None:
            alone["retry"] = retry
        info = next(c for c in infos if c.name == name)
        targets.append(Target(name, (info,), alone))
    return targets


# -- running -------------------------------------------------------------------------------------


@dataclass
class EvalReport:
    """The rows of one evaluation, where they were saved, and per-client totals."""

    eval_id: str
    path: Path | None
    scenarios: list[str]
    targets: list[Target]
    rows: list[dict[str, Any]] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""

    def summary(self) -> list[dict[str, Any]]:
        """Totals per client, in the order the clients were evaluated."""
        totals: list[dict[str, Any]] = []
        for target in self.targets:
            rows = [r for r in self.rows if r["client"] == target.label]
            costs = [r["cost_usd"] for r in rows]
            known = [c for c in costs if c is not None]
            totals.append(
                {
                    "kind": "summary",
                    "client": target.label,
                    "scenarios": len(rows),
                    "diagnosed": sum(1 for r in rows if r["diagnosed"]),
                    "false_alarms": sum(1 for r in rows if r["false_alarm"]),
                    # faults (a culprit to name) apart from healthy workloads (no alarm to raise)
                    "faults": sum(1 for r in rows if not r.get("healthy")),
                    "faults_diagnosed": sum(
                        1 for r in rows if not r.get("healthy") and r["diagnosed"]
                    ),
                    "healthy": sum(1 for r in rows if r.get("healthy")),
                    "healthy_quiet": sum(1 for r in rows if r.get("healthy") and r["diagnosed"]),
                    "errors": sum(1 for r in rows if r["error"]),
                    "iterations": sum(r["iterations"] for r in rows),
                    "tool_calls": sum(r["tool_calls"] for r in rows),
                    "probe_calls": sum(r["probe_calls"] for r in rows),
                    "input_tokens": sum(r["input_tokens"] for r in rows),
                    "output_tokens": sum(r["output_tokens"] for r in rows),
                    "seconds": round(sum(r["seconds"] for r in rows), 3),
                    "cost_usd": round(sum(known), 10)
                    if known and len(known) == len(costs)
                    else None,
                }
            )
        return totals

    @property
    def passed(self) -> bool:
        """Every scenario diagnosed, no false alarm, no failed run."""
        return bool(self.rows) and all(
            r["diagnosed"] and not r["false_alarm"] and not r["error"] for r in self.rows
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "eval_id": self.eval_id,
            "path": str(self.path) if self.path is not None else None,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "scenarios": self.scenarios,
            "clients": [t.to_dict() for t in self.targets],
            "results": self.rows,
            "summary": self.summary(),
            "prices_as_of": PRICES_AS_OF,
        }


def evals_dir() -> Path:
    """$LENSBOOK_EVALS_DIR, else ``.lensbook/evals`` under the working directory."""
    return Path(os.environ.get("LENSBOOK_EVALS_DIR") or Path.cwd() / ".lensbook" / "evals")


def run_eval(
    scenarios: Sequence[str],
    targets: Sequence[Target],
    *,
    max_iterations: int | None = None,
    timeout: float = 300.0,
    out_dir: str | os.PathLike[str] | None = None,
    save: bool = True,
    prices: Mapping[str, Price] | None = None,
    on_result: Callable[[dict[str, Any], int, int], None] | None = None,
) -> EvalReport:
    """Run every scenario against every target, one child process at a time.

    One at a time because the faults are real (a spinning thread takes a core): runs side by
    side would disturb each other's figures. `on_result(row, done, total)` follows progress.
    """
    started = utcnow()
    eval_id = f"{started:%Y%m%d-%H%M%S}-{new_id()[:6]}"
    path = Path(out_dir or evals_dir()) / f"{eval_id}.jsonl" if save else None
    report = EvalReport(
        eval_id, path, list(scenarios), list(targets), started_at=started.isoformat()
    )
    handle: IO[str] | None = None
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a", encoding="utf-8")
    try:
        _write(
            handle,
            {
                "kind": "eval",
                "format": FORMAT_VERSION,
                "eval_id": eval_id,
                "started_at": report.started_at,
                "lensbook": _version(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "scenarios": report.scenarios,
                "clients": [t.to_dict() for t in targets],
                "max_iterations": max_iterations,
                "prices_as_of": PRICES_AS_OF,
            },
        )
        total = len(targets) * len(scenarios)
        for target in targets:
            for scenario in scenarios:
                row = _run_one(eval_id, target, scenario, max_iterations, timeout, prices)
                report.rows.append(row)
                _write(handle, row)
                if on_result is not None:
                    on_result(row, len(report.rows), total)
        report.finished_at = utcnow().isoformat()
        for total_row in report.summary():
            _write(handle, {**total_row, "eval_id": eval_id, "finished_at": report.finished_at})
    finally:
        if handle is not None:
            handle.close()
    return report


def _run_one(
    eval_id: str,
    target: Target,
    scenario: str,
    max_iterations: int | None,
    timeout: float,
    prices: Mapping[str, Price] | None,
) -> dict[str, Any]:
    command = [sys.executable, "-m", "lensbook.scenarios", scenario, "--json", *target.args]
    if max_iterations is not None:
        command += ["--max-iterations", str(max_iterations)]
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.pop(REGISTRY_ENV, None)
    if target.registry is not None:
        env[REGISTRY_ENV] = json.dumps(target.registry)
    started = time.perf_counter()
    outcome: dict[str, Any] | None = None
    problem: str | None = None
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        problem = f"the child process gave no result within {timeout:g} s (killed)"
    else:
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if lines:
            try:
                outcome = json.loads(lines[-1])
            except ValueError:
                problem = f"the child process printed unreadable JSON: {lines[-1][:200]}"
        else:
            tail = " | ".join(done.stderr.strip().splitlines()[-3:])
            problem = f"the child process gave no result (exit {done.returncode}): {tail}"
    wall = round(time.perf_counter() - started, 3)
    return _row(eval_id, target, scenario, outcome, problem, wall, prices)


def _row(
    eval_id: str,
    target: Target,
    scenario: str,
    outcome: Mapping[str, Any] | None,
    problem: str | None,
    wall: float,
    prices: Mapping[str, Price] | None,
) -> dict[str, Any]:
    got: Mapping[str, Any] = outcome or {}
    answered_by = str(got.get("client") or "")
    client = next((c for c in target.clients if c.name == answered_by), target.clients[0])
    row: dict[str, Any] = {
        "kind": "result",
        "eval_id": eval_id,
        "client": target.label,
        "provider": client.provider,
        "model": client.model,
        "scenario": scenario,
        "healthy": _is_healthy(scenario),
        "skill": got.get("skill", ""),
        "diagnosed": bool(got.get("diagnosed", False)),
        "false_alarm": bool(got.get("false_alarm", False)),
        "state": got.get("state", ""),
        "iterations": int(got.get("iterations", 0)),
        "tool_calls": int(got.get("tool_calls", 0)),
        "probe_calls": int(got.get("probe_calls", 0)),
        "tool_output_bytes": int(got.get("tool_output_bytes", 0)),
        "input_tokens": int(got.get("input_tokens", 0)),
        "output_tokens": int(got.get("output_tokens", 0)),
        "cache_read_input_tokens": int(got.get("cache_read_input_tokens", 0)),
        "cache_creation_input_tokens": int(got.get("cache_creation_input_tokens", 0)),
        "seconds": float(got.get("seconds", 0.0)),
        "wall_seconds": wall,
        "answered_by": answered_by,
        "notifications": len(got.get("notifications") or []),
        "missing": list(got.get("missing") or []),
        "run_id": got.get("run_id"),
        "error": problem or got.get("error"),
    }
    row["cost_usd"] = estimate_cost(price_for(client.provider, client.model, prices), row)
    return row


def _is_healthy(scenario: str) -> bool:
    """Whether a scenario is a healthy workload (its diagnosis is: no alarm)."""
    from lensbook.scenarios import get_scenario

    try:
        return get_scenario(scenario).healthy
    except KeyError:
        return False


def _write(handle: IO[str] | None, line: Mapping[str, Any]) -> None:
    if handle is not None:
        handle.write(json.dumps(line, default=str) + "\n")
        handle.flush()


def _version() -> str:
    from lensbook._version import __version__

    return __version__


# -- the table -----------------------------------------------------------------------------------

_COLUMNS = (
    "scenario",
    "diagnosed",
    "false alarm",
    "iterations",
    "tool calls",
    "input tokens",
    "output tokens",
    "seconds",
    "cost",
)


def _table_row(
    label: str, diagnosed: str, alarms: str, figures: Mapping[str, Any]
) -> tuple[str, ...]:
    """One line of a client's table: a scenario's or the total's (the same figures)."""
    return (
        label,
        diagnosed,
        alarms,
        str(figures["iterations"]),
        str(figures["tool_calls"]),
        str(figures["input_tokens"]),
        str(figures["output_tokens"]),
        f"{figures['seconds']:.2f}",
        _dollars(figures["cost_usd"]),
    )


def format_report(report: EvalReport) -> str:
    """A table per client: one line per scenario and a total line."""
    blocks: list[str] = []
    totals = {t["client"]: t for t in report.summary()}
    for target in report.targets:
        rows = [r for r in report.rows if r["client"] == target.label]
        described = []
        for c in target.clients:
            parts = [c.provider, c.model]
            if c.base_url not in ("in process", "provider default"):
                parts.append(c.base_url)
            named = c.name != target.label or len(target.clients) > 1
            described.append((f"{c.name}: " if named else "") + ", ".join(p for p in parts if p))
        head = "; ".join(described)
        lines = [f"== {target.label} ({head}) =="]
        table: list[tuple[str, ...]] = [_COLUMNS]
        for r in rows:
            diagnosed = "yes" if r["diagnosed"] else "NO"
            alarm = "YES" if r["false_alarm"] else "no"
            table.append(_table_row(r["scenario"], diagnosed, alarm, r))
        t = totals[target.label]
        table.append(
            _table_row("total", f"{t['diagnosed']}/{t['scenarios']}", str(t["false_alarms"]), t)
        )
        widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
        for row in table:
            cells = [row[0].ljust(widths[0])] + [
                cell.rjust(widths[i]) for i, cell in enumerate(row) if i
            ]
            lines.append("  ".join(cells))
        lines.append(
            f"faults diagnosed {t['faults_diagnosed']}/{t['faults']}; healthy workloads "
            f"without alarm {t['healthy_quiet']}/{t['healthy']}; false alarms {t['false_alarms']}"
        )
        for r in rows:
            if r["error"]:
                lines.append(f"  {r['scenario']}: error: {r['error']}")
            elif r["missing"]:
                lines.append(f"  {r['scenario']}: the diagnosis did not name {r['missing']}")
        blocks.append("\n".join(lines))
    tail = f"costs estimated from list prices of {PRICES_AS_OF}; '?' where the price is unknown"
    if report.path is not None:
        tail += f"\nsaved to {report.path}"
    return "\n\n".join([*blocks, tail])


def _dollars(value: float | None) -> str:
    if value is None:
        return "?"
    return f"${value:.4f}"
