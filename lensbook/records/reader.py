"""Reading run records back: `load_run(path)` -> `Run`, and `runs()` to list them.

Every line is checked before it is kept (see `shapes`): a line that is not JSON, is nested too
deeply to parse, or is an event of the wrong shape is listed in `Run.problems` with its line
number and the rest loads; a file whose header cannot be read raises `RecordError`. `runs()`
lists such a file as damaged instead of failing for the whole folder.
"""

from __future__ import annotations

import html
import json
import os
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lensbook._errors import RecordError
from lensbook.records.shapes import check_event, check_header
from lensbook.records.writer import FORMAT_VERSION, HEADER_PREFIX, RECORD_NAME, writer
from lensbook.types import CompletionResult, Notification, Snapshot, TokenUsage

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["RecordError", "Run", "load_run", "runs"]


class Run:
    """A recorded run, read-only: its header, events, and tables for pandas."""

    def __init__(
        self, path: Path, header: dict[str, Any], events: list[dict[str, Any]], problems: list[str]
    ) -> None:
        self.path = path
        self.header = header
        self.events = events
        #: lines that could not be read, with their line numbers
        self.problems = problems

    # -- facts ------------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return str(self.header.get("run_id", ""))

    @property
    def operator(self) -> str:
        return str(self.header.get("operator", ""))

    @property
    def skill(self) -> str:
        return str(self.header.get("skill") or self.operator)

    @property
    def context(self) -> dict[str, Any]:
        return dict(self.header.get("context") or {})

    @property
    def complete(self) -> bool:
        """Whether the run's completion was recorded (False for a run cut short)."""
        return any(e["kind"] == "run_completed" for e in self.events)

    def of_kind(self, *kinds: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] in kinds]

    @property
    def notification_objects(self) -> list[Notification]:
        return [
            Notification.model_validate(e["data"]["notification"])
            for e in self.of_kind("notification")
        ]

    @property
    def snapshot_objects(self) -> list[Snapshot]:
        return [
            Snapshot(
                id=e["data"]["id"],
                data=e["data"].get("data") or {},
                captured_at=datetime.fromtimestamp(e["at"], timezone.utc),
            )
            for e in self.of_kind("snapshot")
        ]

    @property
    def result(self) -> CompletionResult:
        """The run's result as recorded (stop reason ``error`` and a note if it was cut short)."""
        done = self.of_kind("run_completed")
        states = self.of_kind("state_changed")
        info = done[-1]["data"] if done else {}
        state = info.get("state") or (
            states[-1]["data"]["state"] if states else self.header.get("state", "healthy")
        )
        summary = None
        for e in self.of_kind("tool_call"):
            if e["data"].get("name") == "done" and isinstance(e["data"].get("arguments"), dict):
                summary = e["data"]["arguments"].get("summary") or summary
        return CompletionResult(
            operator=self.operator,
            run_id=self.run_id,
            state=state,
            notifications=tuple(self.notification_objects),
            snapshots=tuple(self.snapshot_objects),
            iterations=int(info.get("iterations") or len(self.of_kind("iteration"))),
            stop_reason=info.get("stop_reason") or "error",
            summary=info.get("summary") or summary,
            error=info.get("error") if done else "the record ends before the run completed",
            usage=TokenUsage(**(info.get("usage") or {})),
            client=str(info.get("client") or self.header.get("client", "")),
        )

    # -- tables -----------------------------------------------------------------------------

    @property
    def notifications(self) -> pd.DataFrame:
        import pandas as pd

        rows = [n.to_dict() for n in self.notification_objects]
        cols = [
            "detected_at",
            "severity",
            "anomaly_type",
            "context",
            "observation",
            "hypothesis",
            "snapshot_ids",
            "id",
            "operator",
            "trace_id",
        ]
        df = pd.DataFrame(rows, columns=cols)
        df["detected_at"] = pd.to_datetime(df["detected_at"], utc=True)
        return df

    @property
    def snapshots(self) -> pd.DataFrame:
        import pandas as pd

        rows = [{"id": s.id, "captured_at": s.captured_at, **s.data} for s in self.snapshot_objects]
        return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["id", "captured_at"])

    @property
    def history_events(self) -> list[dict[str, Any]]:
        """The flight recorder's events this run read (``get_history`` results), oldest first,
        each once: id, at, ago_s, time, kind, source, summary, detail."""
        seen: dict[str, dict[str, Any]] = {}
        for e in self.of_kind("tool_result"):
            data = e["data"]
            if data.get("name") != "get_history" or data.get("is_error"):
                continue
            try:
                value = json.loads(str(data.get("content", "")))
            except ValueError:
                continue
            for event in value.get("events", []) if isinstance(value, dict) else []:
                if isinstance(event, dict) and "id" in event:
                    seen.setdefault(str(event["id"]), event)
        return sorted(seen.values(), key=lambda ev: float(ev.get("time") or 0.0))

    @property
    def history(self) -> pd.DataFrame:
        """`history_events` as a DataFrame: id, time (UTC), kind, source, summary, detail."""
        import pandas as pd

        rows = [
            (
                e["id"],
                e.get("time"),
                e.get("kind"),
                e.get("source"),
                e.get("summary"),
                e.get("detail"),
            )
            for e in self.history_events
        ]
        df = pd.DataFrame(rows, columns=["id", "time", "kind", "source", "summary", "detail"])
        df["time"] = pd.to_datetime(df["time"], unit="s", utc=True)
        return df

    @property
    def timeline(self) -> pd.DataFrame:
        import pandas as pd

        t0 = self.events[0]["at"] if self.events else 0.0
        rows = [
            {
                "time": pd.Timestamp(e["at"], unit="s", tz="UTC"),
                "elapsed_s": round(e["at"] - t0, 3),
                "kind": e["kind"],
                "detail": _detail(e),
            }
            for e in self.events
        ]
        return pd.DataFrame(rows, columns=["time", "elapsed_s", "kind", "detail"])

    @property
    def metrics(self) -> pd.DataFrame:
        """Every numeric value of the run's snapshots: time, skill, metric, value."""
        import pandas as pd

        rows = []
        for e in self.of_kind("snapshot"):
            for key, value in (e["data"].get("data") or {}).items():
                if isinstance(value, bool):
                    value = int(value)
                if isinstance(value, (int, float)):
                    rows.append(
                        (
                            pd.Timestamp(e["at"], unit="s", tz="UTC"),
                            e["data"].get("skill", self.skill),
                            key,
                            float(value),
                        )
                    )
        return pd.DataFrame(rows, columns=["time", "skill", "metric", "value"])

    def summary(self) -> str:
        r = self.result
        lines = [
            f"run {self.run_id} of {self.operator} (skill {self.skill}), lensbook "
            f"{self.header.get('lensbook')}, client {r.client}",
            f"context: {json.dumps(self.context)}",
            f"{'completed' if self.complete else 'CUT SHORT'}: state {r.state}, stopped by "
            f"{r.stop_reason}, {r.iterations} iteration(s), {len(r.notifications)} "
            f"notification(s), {len(r.snapshots)} snapshot(s), "
            f"{r.usage.input_tokens}/{r.usage.output_tokens} tokens in/out",
        ]
        lines += [str(n) for n in r.notifications]
        if r.summary:
            lines.append(f"summary: {r.summary}")
        if self.problems:
            lines.append(f"{len(self.problems)} unreadable line(s): " + "; ".join(self.problems))
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.summary()

    def _repr_html_(self) -> str:
        head, *rest = self.summary().splitlines()
        notes = "".join(n._repr_html_() for n in self.result.notifications)
        return (
            f"<div><b>{html.escape(head)}</b><br>{html.escape(rest[0])}<br>"
            f"{html.escape(rest[1])}{notes}</div>"
        )


def _detail(e: dict[str, Any]) -> str:
    d = e["data"]
    kind = e["kind"]
    if kind in ("tool_call",):
        return f"{d.get('name')}({json.dumps(d.get('arguments'), default=str)[:120]})"
    if kind == "tool_result":
        flag = "error " if d.get("is_error") else ""
        return f"{d.get('name')}: {flag}{d.get('bytes')} bytes in {d.get('seconds')} s"
    if kind == "notification":
        n = d.get("notification", {})
        return f"[{n.get('severity')}] {n.get('anomaly_type')}: {n.get('observation')}"
    if kind == "state_changed":
        return f"{d.get('previous')} -> {d.get('state')}: {d.get('reason')}"
    if kind == "iteration":
        return f"{d.get('iteration')}/{d.get('max_iterations')}"
    if kind == "model_response":
        turn = d.get("turn", {})
        names = [b.get("name") for b in turn.get("content", []) if b.get("type") == "tool_call"]
        return f"{d.get('purpose')} by {d.get('client')}: {', '.join(names) or 'text'}"
    if kind == "run_completed":
        return f"{d.get('state')} ({d.get('stop_reason')})"
    return ", ".join(f"{k}={v}" for k, v in list(d.items())[:3])[:160]


def load_run(path: str | os.PathLike[str] | Run) -> Run:
    """Read a run record. Unreadable lines are reported with their line numbers (in
    `Run.problems` and as a warning) and the rest still loads; a file that is not a lensbook
    record, or is from a newer format, raises `RecordError`."""
    if isinstance(path, Run):
        return path
    p = Path(path)
    header: dict[str, Any] | None = None
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    with p.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, RecursionError) as exc:
                cut = "" if line.endswith("\n") else " (truncated last line)"
                what = "nested too deeply to read" if isinstance(exc, RecursionError) else exc
                problems.append(f"line {number}: {str(what)[:80]}{cut}")
                continue
            if header is None:
                if entry.get("type") != "header" or entry.get("format") != "lensbook-run":
                    raise RecordError(f"{p}: line {number} is not a lensbook run header")
                version = entry.get("version")
                if not isinstance(version, int) or version > FORMAT_VERSION:
                    raise RecordError(
                        f"{p}: record format version {version!r} is newer than this lensbook "
                        f"reads (up to {FORMAT_VERSION}); upgrade lensbook to read it"
                    )
                damage = check_header(entry)
                if damage is not None:
                    raise RecordError(f"{p}: line {number}, a damaged header: {damage}")
                header = entry
                continue
            if entry.get("type") != "event":
                problems.append(f"line {number}: not an event")
                continue
            damage = check_event(entry)
            if damage is not None:
                problems.append(f"line {number}: {damage}")
                continue
            entry.setdefault("data", {})
            events.append(entry)
    if header is None:
        raise RecordError(f"{p}: empty, or no readable header")
    if problems:
        warnings.warn(
            f"{p}: {len(problems)} unreadable line(s): {'; '.join(problems[:5])}", stacklevel=2
        )
    return Run(p, header, events, problems)


def runs(directory: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The recorded runs in a directory (default: where records are written), newest first.

    Files that are neither named nor headed like a record are not lensbook's and are not
    listed; a record that cannot be read is listed with ``damaged`` True and the reason in
    ``problems``, and so is one whose lines are partly unreadable (it still loads).
    """
    import pandas as pd

    folder = Path(directory) if directory is not None else writer.directory
    rows: list[dict[str, Any]] = []
    for path in sorted(folder.glob("*.jsonl"), reverse=True):
        if not _claims_to_be_record(path):
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run = load_run(path)
        except (RecordError, OSError) as exc:
            rows.append(
                {"damaged": True, "problems": str(exc), "complete": False, "path": str(path)}
            )
            continue
        r = run.result
        rows.append(
            {
                "started": pd.Timestamp(run.header.get("started_at", 0), unit="s", tz="UTC"),
                "operator": run.operator,
                "skill": run.skill,
                "run_id": run.run_id,
                "reason": run.context.get("reason", ""),
                "state": r.state,
                "stop_reason": r.stop_reason,
                "notifications": len(r.notifications),
                "iterations": r.iterations,
                "client": r.client,
                "complete": run.complete,
                "damaged": bool(run.problems),
                "problems": "; ".join(run.problems[:3]),
                "path": str(path),
            }
        )
    cols = [
        "started",
        "operator",
        "skill",
        "run_id",
        "reason",
        "state",
        "stop_reason",
        "notifications",
        "iterations",
        "client",
        "complete",
        "damaged",
        "problems",
        "path",
    ]
    return pd.DataFrame(rows, columns=cols)


def _claims_to_be_record(path: Path) -> bool:
    """Whether a file is named like a record or begins like one (a copied or renamed record)."""
    if RECORD_NAME.fullmatch(path.name):
        return True
    try:
        with path.open("rb") as handle:
            first = handle.readline(1 << 16)
    except OSError:
        return False
    if first.startswith(HEADER_PREFIX):
        return True
    try:
        entry = json.loads(first)
    except (ValueError, RecursionError):
        return False
    return isinstance(entry, dict) and entry.get("format") == "lensbook-run"
