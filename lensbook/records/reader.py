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
from lensbook.charts import Mark, Series
from lensbook.evidence import BASE_TOOLS, Evidence, ProbeResult, SnapshotSeen, number
from lensbook.records._writer import FORMAT_VERSION, HEADER_PREFIX, RECORD_NAME, writer
from lensbook.records.shapes import check_event, check_header
from lensbook.skills.untrusted import undelimit
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
    def kind(self) -> str:
        """``operator`` or ``coordinator`` (records before coordinators were recorded: operator)."""
        return str(self.header.get("kind") or "operator")

    @property
    def started_at(self) -> float:
        return float(self.header.get("started_at") or (self.events[0]["at"] if self.events else 0))

    @property
    def where(self) -> dict[str, str]:
        """Where and with what the run happened: host, pid, Python, lensbook, client."""
        return {
            "host": str(self.header.get("host") or "(not recorded)"),
            "pid": str(self.header.get("pid") or "(not recorded)"),
            "python": str(self.header.get("python") or "(not recorded)"),
            "lensbook": str(self.header.get("lensbook") or "(not recorded)"),
            "client": self.result.client if self.kind == "operator" else self.coordinator_client,
        }

    @property
    def coordinator_client(self) -> str:
        done = self.of_kind("coordinator_completed")
        info = done[-1]["data"] if done else {}
        return str(info.get("client") or self.header.get("client") or "")

    @property
    def complete(self) -> bool:
        """Whether the run's completion was recorded (False for a run cut short)."""
        return any(e["kind"] in ("run_completed", "coordinator_completed") for e in self.events)

    def of_kind(self, *kinds: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] in kinds]

    @property
    def notification_objects(self) -> list[Notification]:
        """The run's notifications (for a coordinator run: those its operators sent it)."""
        return [
            Notification.model_validate(e["data"]["notification"])
            for e in self.of_kind("notification", "coordinator_notification")
        ]

    @property
    def insights(self) -> list[dict[str, Any]]:
        """A coordinator run's insights, as recorded (empty for an operator run)."""
        return [dict(e["data"]["insight"]) for e in self.of_kind("insight")]

    @property
    def operator_records(self) -> list[dict[str, Any]]:
        """A coordinator run's operator runs: skill, run id, record file name, state, findings."""
        return [dict(e["data"]) for e in self.of_kind("coordinator_operator_finished")]

    def beside(self, name: Any) -> Path | None:
        """A record this one names (a coordinator's operator run), in this record's folder.

        Only the file name counts: a record cannot point outside its own folder."""
        if not name:
            return None
        return self.path.parent / Path(str(name)).name

    @property
    def history(self) -> Any:
        """The flight recorder's history around the run, when the record has one (else None):
        a history section, else the events the run read with ``get_history``."""
        found = self.header.get("history")
        for e in self.of_kind("history"):
            found = e["data"].get("history", e["data"])
        if found is None:
            found = self.history_events or None
        return found

    def evidence(self, note: Notification | dict[str, Any]) -> Evidence:
        """What a notification of this run rests on (see `lensbook.evidence`)."""
        data = note.to_dict() if isinstance(note, Notification) else note
        if self.kind == "coordinator":
            # the evidence is in the record of the operator run that sent it, beside this one
            for entry in self.operator_records:
                path = self.beside(entry.get("record"))
                if path is not None and path.exists():
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        operator_run = load_run(path)
                    if any(n.id == data.get("id") for n in operator_run.notification_objects):
                        return operator_run.evidence(data)
        seen = {
            e["data"]["id"]: SnapshotSeen(e["data"]["id"], e["at"], e["data"].get("data") or {})
            for e in self.of_kind("snapshot")
        }
        calls = {e["data"].get("id"): e["data"].get("name") for e in self.of_kind("tool_call")}
        probes = [
            ProbeResult(
                str(e["data"].get("name") or calls.get(e["data"].get("id")) or "?"),
                e["at"],
                str(e["data"].get("content") or ""),
                bool(e["data"].get("is_error")),
            )
            for e in self.of_kind("tool_result")
            if e["data"].get("name") not in BASE_TOOLS
        ]
        history = {
            str(e["id"]): f"{e.get('at', '')} UTC {e.get('kind')}: {e.get('summary', '')}"
            for e in self.history_events
        }
        return Evidence.of(data, seen, probes, history=history)

    def series(self, metrics: list[str] | None = None) -> list[Series]:
        """The numeric snapshot fields as chart series (`metrics`: which, in order)."""
        points: dict[str, list[tuple[float, float]]] = {}
        for e in self.of_kind("snapshot"):
            for key, value in (e["data"].get("data") or {}).items():
                v = number(value)
                if v is not None:
                    points.setdefault(key, []).append((e["at"], v))
        names = metrics if metrics is not None else list(points)
        return [Series(n, points[n]) for n in names if n in points]

    def marks(self) -> list[Mark]:
        """Notifications and state changes, for a chart's time axis."""
        marks = [
            Mark(
                e["at"],
                f"[{n.get('severity')}] {n.get('anomaly_type')}",
                "notification",
                str(n.get("severity")),
            )
            for e in self.of_kind("notification", "coordinator_notification")
            for n in [e["data"].get("notification") or {}]
        ]
        marks += [
            Mark(
                e["at"],
                f"{e['data'].get('previous')} -> {e['data'].get('state')}",
                "state",
                str(e["data"].get("state")),
            )
            for e in self.of_kind("state_changed")
        ]
        return sorted(marks, key=lambda m: m.at)

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
                # the process's text was delimited for the model: read it back as it was
                value = undelimit(json.loads(str(data.get("content", ""))))
            except ValueError:
                continue
            for event in value.get("events", []) if isinstance(value, dict) else []:
                if isinstance(event, dict) and "id" in event:
                    seen.setdefault(str(event["id"]), event)
        return sorted(seen.values(), key=lambda ev: float(ev.get("time") or 0.0))

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
        if self.kind == "coordinator":
            return self._coordinator_summary()
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

    def _coordinator_summary(self) -> str:
        done = self.of_kind("coordinator_completed")
        info = done[-1]["data"] if done else {}
        notes = self.notification_objects
        ops = ", ".join(
            f"{o.get('skill')}: {o.get('state')} ({o.get('stop_reason')}, "
            f"{o.get('notifications')} notif.)"
            for o in self.operator_records
        )
        lines = [
            f"coordinator run {self.run_id} of {self.operator}, lensbook "
            f"{self.header.get('lensbook')}, client {self.coordinator_client}",
            f"context: {json.dumps(self.context)}",
            (
                f"completed: stopped by {info.get('stop_reason')}"
                if done
                else "CUT SHORT: the record ends before the coordination completed"
            )
            + f", {len(self.of_kind('coordinator_iteration'))} iteration(s), "
            f"{len(self.insights)} insight(s), {len(notes)} notification(s)",
            f"operators: {ops or 'none'}",
        ]
        lines += [str(n) for n in notes]
        lines += [f"insight: [{i.get('confidence')}] {i.get('summary')}" for i in self.insights]
        if info.get("summary"):
            lines.append(f"summary: {info['summary']}")
        if info.get("error"):
            lines.append(f"error: {info['error']}")
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


def _outcome(run: Run) -> dict[str, Any]:
    """How a run ended, for the runs table (a coordinator's state: the worst of its operators)."""
    if run.kind == "coordinator":
        done = run.of_kind("coordinator_completed")
        info = done[-1]["data"] if done else {}
        order = ["healthy", "observing", "warning", "critical"]
        states = [str(o.get("state")) for o in run.operator_records if o.get("state") in order]
        return {
            "state": max(states, key=order.index) if states else "healthy",
            "stop_reason": info.get("stop_reason") or "error",
            "notifications": len(run.notification_objects),
            "iterations": len(run.of_kind("coordinator_iteration")),
            "client": run.coordinator_client,
        }
    r = run.result
    return {
        "state": r.state,
        "stop_reason": r.stop_reason,
        "notifications": len(r.notifications),
        "iterations": r.iterations,
        "client": r.client,
    }


def runs(directory: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """The recorded runs in a directory (default: where records are written), newest first.

    Runs grouped in a folder one level down (a Dask cluster run's workers) are listed too, with
    the folder's name in ``group``. Files that are neither named nor headed like a record are
    not lensbook's and are not listed; a record that cannot be read is listed with ``damaged``
    True and the reason in ``problems``, and so is one whose lines are partly unreadable (it
    still loads).
    """
    import pandas as pd

    folder = Path(directory) if directory is not None else writer.directory
    rows: list[dict[str, Any]] = []
    found = [*folder.glob("*.jsonl"), *folder.glob("*/*.jsonl")]
    for path in sorted(found, key=lambda p: p.name, reverse=True):
        if not _claims_to_be_record(path):
            continue
        group = path.parent.name if path.parent != folder else ""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run = load_run(path)
        except (RecordError, OSError) as exc:
            rows.append(
                {
                    "damaged": True,
                    "problems": str(exc),
                    "complete": False,
                    "group": group,
                    "path": str(path),
                }
            )
            continue
        rows.append(
            {
                "started": pd.Timestamp(run.header.get("started_at", 0), unit="s", tz="UTC"),
                "kind": run.kind,
                "operator": run.operator,
                "skill": run.skill,
                "run_id": run.run_id,
                "reason": run.context.get("reason", ""),
                **_outcome(run),
                "complete": run.complete,
                "damaged": bool(run.problems),
                "problems": "; ".join(run.problems[:3]),
                "group": group,
                "path": str(path),
            }
        )
    cols = [
        "started",
        "kind",
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
        "group",
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
