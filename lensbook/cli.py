"""The `lensbook` command: investigate from a terminal, run the demo, list skills, choose a model.

lensbook run SKILL --reason "..." [--pid PID] [--max-iterations N] [--json] [--quiet]
    [CLIENT OPTIONS]  (a live status line per operator on a TTY, plain lines when piped)
lensbook demo [SCENARIO|all] [CLIENT OPTIONS]
lensbook skills
lensbook providers [--check] [--json] [CLIENT OPTIONS]
lensbook eval [--scenarios a,b] [--chain] [--json] [--out DIR] [CLIENT OPTIONS]
lensbook replay PATH [--tools rerun|record]; lensbook runs [DIR]
lensbook postmortem RUN [RUN...] [-o review.ipynb] [--html] [--no-execute]

Options are defined and checked in `lensbook.options`, with the `%lens` magic's: every bad input
is one line on stderr and exit status 2 (argparse's usage block is left out; `--help` has it).

CLIENT OPTIONS: --client NAME (offline, a client of the registry, or a provider such as ollama),
--client-registry JSON|FILE (default: $LENSBOOK_CLIENT_REGISTRY), --model and --base-url (with
--client PROVIDER). With none of them: Anthropic when ANTHROPIC_API_KEY is set, else the offline
investigator.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO

import lensbook
from lensbook import options
from lensbook.clients import (
    REGISTRY_ENV,
    load_registry,
    provider_names,
    resolve_client,
    single_client_registry,
)
from lensbook.limits import MAX_ITERATIONS
from lensbook.terminal import StatusLines

__all__ = ["client_config", "main"]


class _BadInput(Exception):
    """A bad input: `main` writes its one line on stderr and returns exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (`_BadInput`), not a usage block."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{self.prog}: {message} (see {self.prog} --help)")


def _fail(message: str) -> NoReturn:
    """End the command for a bad input: one line on stderr, exit status 2."""
    raise _BadInput(message)


def _print_result(result: Any, out: TextIO) -> None:
    out.write("\n" + str(result) + "\n")


def cmd_run(args: argparse.Namespace) -> int:
    context: dict[str, Any] = {"reason": args.reason} if args.reason else {}
    if args.pid is not None:
        from lensbook.skills import ExternalProcessSkill

        skill: Any = ExternalProcessSkill(args.pid)
        context["pid"] = args.pid
    else:
        skill = args.skill
    settings: dict[str, Any] = {"max_iterations": args.max_iterations or MAX_ITERATIONS}
    if args.timeout is not None:
        settings["timeout"] = args.timeout
    try:
        registry, name = client_config(args)
        client = resolve_client(name, registry)
        op = lensbook.Operator.start(skill=skill, client=client, **settings)
    except (lensbook.LensbookError, ValueError) as exc:
        _fail(f"lensbook run: {exc}")
    try:
        # live status lines on stderr; none with --json or --quiet (jobs parse stdout)
        with StatusLines(quiet=args.quiet or args.json):
            try:
                result = op.run(context).result
            except lensbook.RunFailed as exc:
                sys.stderr.write(f"lensbook: {exc}\n")
                if exc.result is None:
                    return 1
                result = exc.result
    finally:
        lensbook.stop()
    if args.json:
        sys.stdout.write(result.model_dump_json() + "\n")
    else:
        _print_result(result, sys.stdout)
    return 0 if result.stop_reason != "error" else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from lensbook.scenarios import get_scenario, scenario_names

    names = scenario_names()
    if args.scenario != "all" and args.scenario not in scenario_names():
        _fail(f"lensbook demo: no scenario {args.scenario!r}; known: {', '.join(names)}, all")
    try:
        registry, client = client_config(args)
        resolve_client(client, registry)  # a bad configuration stops here, not in each child
    except lensbook.LensbookError as exc:
        _fail(f"lensbook demo: {exc}")
    env = _child_env()
    env.pop(REGISTRY_ENV, None)
    client_args = ["--client", client] if client else []
    if registry is not None:
        # through the environment: API keys on a command line would show in `ps`
        env[REGISTRY_ENV] = json.dumps(registry)
    rows = []
    for name in names if args.scenario == "all" else [args.scenario]:
        scenario = get_scenario(name)
        sys.stdout.write(
            f"\n=== {scenario.title}: inducing it in a child process, then "
            f"`lensbook.run({scenario.skill!r}, reason={scenario.reason!r})`\n"
        )
        sys.stdout.flush()
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "lensbook.scenarios",
                name,
                "--progress",
                "--json",
                *client_args,
            ],
            stdout=subprocess.PIPE,
            text=True,
            timeout=300,
            env=env,
        )
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            sys.stdout.write(f"{name}: the child process gave no result (exit {out.returncode})\n")
            rows.append((name, False, 0, 0, 0.0))
            continue
        outcome = json.loads(lines[-1])
        for note in outcome["notifications"]:
            sys.stdout.write(
                f"\n[{note['severity'].upper()}] {note['operator']}: {note['anomaly_type']}\n"
                f"  context:     {note['context']}\n  observation: {note['observation']}\n"
                + (f"  hypothesis:  {note['hypothesis']}\n" if note.get("hypothesis") else "")
            )
        verdict = "diagnosed" if outcome["diagnosed"] else "NOT diagnosed"
        sys.stdout.write(
            f"\n{name}: {verdict} by the {outcome['client']} in {outcome['iterations']} "
            f"iterations, {outcome['probe_calls']} probe calls, "
            f"{outcome['tool_output_bytes']} bytes of tool output, {outcome['seconds']:.1f} s; "
            f"final state {outcome['state']}\n"
        )
        rows.append(
            (
                name,
                outcome["diagnosed"],
                outcome["iterations"],
                outcome["tool_output_bytes"],
                outcome["seconds"],
            )
        )
    if len(rows) > 1:
        sys.stdout.write("\nscenario          diagnosed  iterations  bytes   seconds\n")
        for name, ok, it, size, secs in rows:
            sys.stdout.write(f"{name:<17} {ok!s:<10} {it:<11} {size:<7} {secs:.1f}\n")
    return 0 if all(r[1] for r in rows) else 1


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def cmd_skills(args: argparse.Namespace) -> int:
    from lensbook.skills import resolve_skill, skill_ids

    for sid in skill_ids():
        try:
            skill = resolve_skill(sid)
        except Exception as exc:
            sys.stdout.write(f"{sid}: unavailable ({type(exc).__name__}: {exc})\n")
            continue
        sys.stdout.write(f"{sid}: {skill.title} — {skill.description}\n")
        for tool in skill.probes():
            params = ", ".join(tool.args_model.model_fields)
            first = tool.description.splitlines()[0] if tool.description else ""
            sys.stdout.write(f"    {tool.name}({params})  {first}\n")
    return 0


def cmd_triage(args: argparse.Namespace) -> int:
    try:
        found = lensbook.triage(options.skill_list(args.skills))
    except lensbook.LensbookError as exc:
        _fail(f"lensbook triage: {exc}")
    if args.json:
        sys.stdout.write(json.dumps(found.to_dict(), default=str) + "\n")
    else:
        sys.stdout.write(found.text() + "\n")
    return 0


def client_config(args: argparse.Namespace) -> tuple[dict[str, Any] | None, str | None]:
    """(registry, client name) from the client options; a provider name alone makes a
    one-client registry (``--client ollama --model qwen2.5:7b``)."""
    registry = load_registry(args.client_registry)
    name: str | None = args.client
    in_registry = registry is not None and any(
        (e.get("name") or e.get("provider")) == name
        for e in registry.get("clients") or []
        if isinstance(e, dict)
    )
    if name in provider_names() and not in_registry:
        one = single_client_registry(name, model=args.model, base_url=args.base_url)
        return one, name
    if args.model or args.base_url:
        raise lensbook.ClientNotConfigured(
            "--model and --base-url go with --client PROVIDER "
            f"({', '.join(provider_names())}); set a registry client's options in the registry"
        )
    return registry, name


def _add_client_options(parser: argparse.ArgumentParser, many: bool = False) -> None:
    group = parser.add_argument_group("client options")
    group.add_argument(
        "--client",
        default=None,
        help=("comma-separated clients to evaluate, each alone: " if many else "the client: ")
        + "'offline', a client of the registry, or a provider ("
        + ", ".join(provider_names())
        + ")",
    )
    group.add_argument(
        "--client-registry",
        default=None,
        metavar="JSON|FILE",
        help="a client registry as JSON text or a JSON file (default: $LENSBOOK_CLIENT_REGISTRY)",
    )
    group.add_argument("--model", default=None, help="the model, with --client PROVIDER")
    group.add_argument("--base-url", default=None, help="the server, with --client PROVIDER")


def cmd_providers(args: argparse.Namespace) -> int:
    import asyncio

    from lensbook.clients import ProvidersReport, check_clients, describe_chain

    try:
        registry, name = client_config(args)
        chain = resolve_client(name, registry)
    except lensbook.LensbookError as exc:
        _fail(f"lensbook providers: {exc}")
    if args.client_registry is not None:
        source = "--client-registry"
    elif registry is not None and name in provider_names():
        source = f"--client {name}"
    elif registry is not None:
        source = "$LENSBOOK_CLIENT_REGISTRY"
    elif name:
        source = f"--client {name}"
    else:
        source = "the default: " + (
            "ANTHROPIC_API_KEY is set"
            if os.environ.get("ANTHROPIC_API_KEY")
            else "no ANTHROPIC_API_KEY, so the offline investigator"
        )
    checks = asyncio.run(check_clients(chain.clients, args.timeout)) if args.check else []
    report = ProvidersReport([describe_chain(chain, label=source)], checks=checks)
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict()) + "\n")
    else:
        sys.stdout.write(report.text() + "\n")
    if args.check and not any(c.ok and c.tool_call for c in checks):
        return 1
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from lensbook.eval import format_report, run_eval, targets_for
    from lensbook.scenarios import scenario_names

    known = scenario_names()
    wanted = [s.strip() for s in (args.scenarios or "").split(",") if s.strip()] or known
    unknown = [s for s in wanted if s not in known]
    if unknown:
        _fail(
            f"lensbook eval: no scenario {', '.join(map(repr, unknown))}; known: {', '.join(known)}"
        )
    try:
        names = [n.strip() for n in (args.client or "").split(",") if n.strip()]
        registry = load_registry(args.client_registry)
        if len(names) == 1:
            registry, _ = client_config(args)
        elif args.model or args.base_url:
            raise lensbook.ClientNotConfigured(
                "--model and --base-url go with one --client PROVIDER"
            )
        targets = targets_for(registry, names, chain=args.chain)
    except lensbook.LensbookError as exc:
        _fail(f"lensbook eval: {exc}")

    def progress(row: dict[str, Any], done: int, total: int) -> None:
        if args.quiet:
            return
        verdict = "diagnosed" if row["diagnosed"] else "NOT diagnosed"
        if row["error"]:
            verdict += f" ({row['error'][:120]})"
        sys.stderr.write(
            f"[{done}/{total}] {row['client']} · {row['scenario']}: {verdict} in "
            f"{row['iterations']} iterations, {row['seconds']:.1f} s\n"
        )
        sys.stderr.flush()

    report = run_eval(
        wanted,
        targets,
        max_iterations=args.max_iterations,
        timeout=args.timeout,
        out_dir=args.out,
        on_result=progress,
    )
    if args.json:
        sys.stdout.write(json.dumps(report.to_dict(), default=str) + "\n")
    else:
        sys.stdout.write(format_report(report) + "\n")
    return 0 if report.passed else 1


def _command(
    sub: Any,
    name: str,
    func: Callable[[argparse.Namespace], int],
    *,
    json: str | None = None,
    quiet: str | None = None,
    **kwargs: Any,
) -> argparse.ArgumentParser:
    """The subcommand `name` running `func`, with `--json` and `--quiet` when given their help."""
    parser: argparse.ArgumentParser = sub.add_parser(name, **kwargs)
    parser.set_defaults(func=func)
    if json:
        parser.add_argument("--json", action="store_true", help=json)
    if quiet:
        parser.add_argument("--quiet", action="store_true", help=quiet)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="lensbook",
        description="Investigate a live Python process with an LLM operator "
        "(or the offline investigator when no API key is set).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = _command(
        sub,
        "run",
        cmd_run,
        json="print the result as JSON",
        quiet="no status lines on stderr, only the final report",
        help="investigate this or another local process",
    )
    options.add_run_options(run, skill_help="skill id (runtime, memory, ...); ignored with --pid")
    run.add_argument(
        "--pid",
        type=options.existing_pid,
        default=None,
        help="investigate another local process from outside (psutil, py-spy)",
    )
    _add_client_options(run)
    demo = _command(
        sub, "demo", cmd_demo, help="induce a real fault in a child process and investigate"
    )
    demo.add_argument(
        "scenario",
        nargs="?",
        default="cache_leak",
        help="a scenario name, or 'all' (default: cache_leak)",
    )
    _add_client_options(demo)
    _command(sub, "skills", cmd_skills, help="list the skills (yours too) and their probes")
    sweep = _command(
        sub,
        "triage",
        cmd_triage,
        json="print the result as JSON",
        help="a cheap sweep of every skill's snapshot, rules and history in this process, "
        "ranked (mostly useful in scripts and jobs, after `import lensbook`)",
    )
    sweep.add_argument("--skills", default="", help="comma-separated skill ids (default: all)")
    providers = _command(
        sub,
        "providers",
        cmd_providers,
        json="print as JSON",
        help="show the client chain a run uses; --check asks each client once",
    )
    providers.add_argument(
        "--check",
        action="store_true",
        help="send each client one small request offering one tool (costs a few tokens)",
    )
    providers.add_argument(
        "--timeout", type=options.positive_seconds, default=30.0, help="seconds per check"
    )
    _add_client_options(providers)
    evaluate = _command(
        sub,
        "eval",
        cmd_eval,
        json="print the report as JSON",
        quiet="no progress lines on stderr",
        help="run the fault-scenario suite against each client and score it",
        description="Run the fault scenarios (each in a child process) against each client "
        "alone, and print a table per client: diagnosed, false alarms, iterations, tool calls, "
        "tokens, seconds and estimated cost. Exit 0 when every scenario was diagnosed with no "
        "false alarm, 1 otherwise, 2 for a bad configuration.",
    )
    evaluate.add_argument(
        "--scenarios", default="", help="comma-separated scenario names (default: all)"
    )
    evaluate.add_argument(
        "--chain",
        action="store_true",
        help="evaluate the registry's whole chain (with fallback) instead of each client alone",
    )
    evaluate.add_argument("--max-iterations", type=options.positive_int, default=None)
    evaluate.add_argument(
        "--timeout",
        type=options.positive_seconds,
        default=300.0,
        help="seconds per scenario before it is killed",
    )
    evaluate.add_argument(
        "--out",
        default=None,
        help="where to save the results (default: $LENSBOOK_EVALS_DIR or .lensbook/evals)",
    )
    _add_client_options(evaluate, many=True)
    replay = _command(
        sub,
        "replay",
        cmd_replay,
        json="print the outcome as JSON",
        help="re-run a recorded investigation; the model's turns come from the record",
    )
    options.add_replay_options(replay)
    runs = _command(sub, "runs", cmd_runs, help="list the recorded runs, newest first")
    options.add_runs_options(runs)
    review = _command(
        sub,
        "postmortem",
        cmd_postmortem,
        help="write a postmortem notebook from recorded runs (offline; --html to export)",
        description="Write a notebook from one or more recorded runs (operator or coordinator): "
        "what was asked, when and where, the summary, a timeline chart, each finding with its "
        "evidence, the history, and a replay cell. It runs top to bottom offline.",
    )
    options.add_postmortem_options(review)
    return parser


def cmd_postmortem(args: argparse.Namespace) -> int:
    try:
        written = options.postmortem_from(args)
    except (OSError, ValueError, lensbook.LensbookError) as exc:
        _fail(f"lensbook postmortem: {exc}")
    sys.stdout.write(repr(written) + "\n")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from lensbook.records import RecordError

    try:
        record = lensbook.load_run(args.path)
        outcome = lensbook.replay(record, tools=args.tools)
    except (OSError, RecordError, lensbook.LensbookError) as exc:
        _fail(f"lensbook replay: {exc}")
    finally:
        lensbook.stop()
    if args.json:
        sys.stdout.write(
            json.dumps(
                {
                    "run_id": record.run_id,
                    "tools": args.tools,
                    "same_notifications": outcome.same_notifications,
                    "divergences": [vars(d) for d in outcome.divergences],
                    "result": outcome.result.to_dict(),
                },
                default=str,
            )
            + "\n"
        )
    else:
        sys.stdout.write(repr(outcome) + "\n\n" + str(outcome.result) + "\n")
    return 0 if outcome.same_notifications else 1


def cmd_runs(args: argparse.Namespace) -> int:
    table = lensbook.runs(args.directory)
    if table.empty:
        sys.stdout.write("no recorded runs\n")
        return 0
    cols = [
        "started",
        "kind",
        "operator",
        "state",
        "stop_reason",
        "notifications",
        "reason",
        "damaged",
        "path",
    ]
    sys.stdout.write(table[cols].to_string(index=False) + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        code: int = args.func(args)
    except _BadInput as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
