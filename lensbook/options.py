"""The options of the `lensbook` command and the `%lens` magic, defined and checked once.

Both front ends build their argparse subcommands from the functions here (`add_run_options`,
`add_replay_options`, ...), so a flag means the same thing in a terminal and in a notebook and
is checked by the same code. Only the way a bad input is reported differs, and each front end
owns that: the command line writes one line and exits with status 2 (`lensbook.cli`), the magic
raises a one-line `UsageError` (`lensbook.notebook.magics`).

The checks are argparse `type=` functions (`positive_int`, `positive_seconds`, `existing_pid`),
so a bad value is rejected while parsing, before anything starts; checks that need lensbook's
state (`skill_id`, `event_kinds`) raise `OptionError`, which both front ends turn into their
one-line error. Defaults come from `lensbook.limits`, where they are named once.
"""

from __future__ import annotations

import argparse
from typing import Any

from lensbook import limits
from lensbook._errors import LensbookError, UnknownSkill

__all__ = [
    "OptionError",
    "add_investigate_options",
    "add_postmortem_options",
    "add_replay_options",
    "add_run_options",
    "add_runs_options",
    "add_watch_options",
    "event_kinds",
    "existing_pid",
    "positive_int",
    "positive_number",
    "positive_seconds",
    "postmortem_from",
    "skill_id",
    "skill_list",
    "watch_settings",
]


class OptionError(LensbookError, ValueError):
    """An option value that parsed but means nothing here (an unknown skill or event kind)."""


# -- value checks (argparse `type=` functions) -------------------------------------------------


def positive_int(text: str) -> int:
    """An integer of at least 1 (iteration limits, counts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_number(text: str) -> float:
    """A positive, finite number (thresholds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def positive_seconds(text: str) -> float:
    """A positive, finite number of seconds (time limits, intervals)."""
    try:
        return positive_number(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be a positive number of seconds, got {text!r}"
        ) from None


def existing_pid(text: str) -> int:
    """The pid of a process that exists now (`--pid`)."""
    import psutil

    pid = positive_int(text)
    if not psutil.pid_exists(pid):
        raise argparse.ArgumentTypeError(f"no process with pid {pid}")
    return pid


# -- checks against lensbook's state -----------------------------------------------------------


def skill_id(name: str) -> str:
    """The id of a built-in or registered skill, loaded to prove it can be."""
    from lensbook.skills import resolve_skill

    try:
        return resolve_skill(name).id
    except UnknownSkill as exc:
        raise OptionError(str(exc)) from None
    except Exception as exc:  # a skill module that fails to import
        raise OptionError(
            f"skill {name!r} could not be loaded: {type(exc).__name__}: {exc}"
        ) from None


def skill_list(text: str | None) -> list[str] | None:
    """Comma-separated skill ids (`--skills a,b`), each checked; None when empty."""
    names = [s.strip() for s in (text or "").split(",") if s.strip()]
    return [skill_id(s) for s in names] or None


def event_kinds(text: str | None) -> list[str] | None:
    """Comma-separated flight-recorder event kinds (`--kinds a,b`); None when empty."""
    from lensbook.recorder import KINDS

    kinds = [k.strip() for k in (text or "").split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise OptionError(f"unknown kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    return kinds or None


# -- option definitions ------------------------------------------------------------------------


def add_run_options(parser: argparse.ArgumentParser, *, skill_help: str) -> None:
    """An investigation's options: `SKILL --reason --max-iterations --timeout`."""
    parser.add_argument("skill", metavar="SKILL", help=skill_help)
    parser.add_argument("--reason", metavar="TEXT", help="why you look (quoted)")
    parser.add_argument(
        "--max-iterations",
        metavar="N",
        type=positive_int,
        help=f"iteration limit of this run (default: the operator's, {limits.MAX_ITERATIONS})",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=positive_seconds,
        help=f"stop the run after this (default: {limits.RUN_TIMEOUT:g})",
    )


def add_replay_options(parser: argparse.ArgumentParser) -> None:
    """`PATH --tools rerun|record`."""
    parser.add_argument("path", metavar="PATH", help="a run record (.jsonl), e.g. from `runs`")
    parser.add_argument(
        "--tools",
        choices=("rerun", "record"),
        default="rerun",
        help="run the probes again and report divergences (rerun), or take them from the record",
    )


def add_runs_options(parser: argparse.ArgumentParser) -> None:
    """`[DIR]`."""
    parser.add_argument(
        "directory",
        metavar="DIR",
        nargs="?",
        default=None,
        help="default: $LENSBOOK_RECORDS_DIR or .lensbook/runs",
    )


def add_postmortem_options(parser: argparse.ArgumentParser) -> None:
    """`RUN [RUN...] -o NOTEBOOK --html --no-execute --title`."""
    parser.add_argument(
        "runs", metavar="RUN", nargs="+", help="a run record (.jsonl) or a run id (prefix)"
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="NOTEBOOK",
        default=None,
        help="the notebook to write (default: postmortem-<run id>.ipynb)",
    )
    parser.add_argument(
        "--html", action="store_true", help="also export it as one self-contained HTML file"
    )
    parser.add_argument(
        "--no-execute",
        dest="execute",
        action="store_false",
        help="write the notebook without running it (no outputs saved)",
    )
    parser.add_argument("--title", default=None, help="the notebook's title")


def postmortem_from(args: argparse.Namespace) -> Any:
    """Write the postmortem that `add_postmortem_options` options ask for."""
    from lensbook.review import postmortem

    return postmortem(
        list(args.runs), args.output, html=args.html, execute=args.execute, title=args.title
    )


def add_investigate_options(parser: argparse.ArgumentParser) -> None:
    """A coordinator run's options: `--reason --skills --strategy --deadline`."""
    parser.add_argument("--reason", metavar="TEXT", required=True, help="the question (quoted)")
    parser.add_argument("--skills", metavar="A,B", help="skills it may invoke (default: all)")
    parser.add_argument("--strategy", choices=["agent", "pipeline"], default="agent")
    parser.add_argument(
        "--deadline", metavar="SECONDS", type=positive_seconds, default=limits.INVESTIGATE_DEADLINE
    )


def add_watch_options(parser: argparse.ArgumentParser) -> None:
    """The watcher's options: `start|stop|status` and its thresholds.

    They default to None, meaning `lensbook.watch`'s own defaults (named there only).
    """
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--skills", metavar="A,B", help="skills to watch (default: a cheap set)")
    parser.add_argument("--interval", metavar="SECONDS", type=positive_seconds)
    parser.add_argument("--learning", metavar="SECONDS", type=positive_seconds)
    parser.add_argument("--cooldown", metavar="SECONDS", type=positive_seconds)
    parser.add_argument("--z", metavar="Z", type=positive_number, dest="z_threshold")
    parser.add_argument("--consecutive", metavar="N", type=positive_int)
    parser.add_argument("--max-per-hour", metavar="N", type=positive_int)
    parser.add_argument(
        "--no-trigger", action="store_true", help="flag anomalies without investigating"
    )


#: `add_watch_options` destinations that are `lensbook.watch` keywords
WATCH_SETTINGS = ("interval", "learning", "cooldown", "z_threshold", "consecutive")


def watch_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The `lensbook.watch` keywords the user gave (`add_watch_options`); the rest default."""
    given: dict[str, Any] = {k: getattr(args, k) for k in WATCH_SETTINGS}
    given["max_triggers_per_hour"] = args.max_per_hour
    given = {k: v for k, v in given.items() if v is not None}
    given["auto_trigger"] = not args.no_trigger
    return given
