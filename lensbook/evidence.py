"""Evidence that reads: what moved between the snapshots a notification cites, and what it rests on.

A notification cites snapshot ids. Instead of dumping every field of every cited snapshot, the
evidence shows the fields that moved between the first and the last cited snapshot (old -> new,
the change, and the rate per second over the time between them), the probe results of the run
that came before the notification (name, size, first words), and keeps the full snapshots behind
one click (an HTML ``<details>``). The same `Evidence` renders as text for terminals and
notebooks. It is built from plain data (snapshot dicts with their times, probe results) so the
live feed and a recorded run share it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BASE_TOOLS",
    "PROBE_QUOTE_CHARS",
    "Change",
    "Evidence",
    "ProbeResult",
    "SnapshotSeen",
    "changes",
    "number",
]

_esc = html.escape

#: how much of a probe's answer is quoted under a notification
PROBE_QUOTE_CHARS = 160

#: the operator loop's own tools, in the order its model sees them (the skill's probes follow):
#: their results are not evidence a notification rests on
BASE_TOOLS = (
    "take_snapshot",
    "get_snapshot",
    "get_snapshots",
    "get_history",
    "send_notification",
    "get_notifications",
    "set_state",
    "think",
    "wait",
    "done",
)


@dataclass(frozen=True)
class SnapshotSeen:
    """A snapshot as a view saw it: its id, when it was taken (epoch seconds) and its data."""

    id: str
    at: float | None
    data: Mapping[str, Any]


@dataclass(frozen=True)
class ProbeResult:
    """One probe's answer during the run: its name, when, its size and the start of its text."""

    name: str
    at: float
    content: str
    is_error: bool = False

    def quote(self, limit: int = PROBE_QUOTE_CHARS) -> str:
        text = " ".join(self.content.split())
        return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Change:
    """One field that moved between two snapshots."""

    field: str
    old: float
    new: float
    seconds: float | None

    @property
    def delta(self) -> float:
        return self.new - self.old

    @property
    def rate(self) -> float | None:
        """Change per second (None when the snapshots have no time apart)."""
        if not self.seconds:
            return None
        return self.delta / self.seconds

    def text(self) -> str:
        rate = self.rate
        per_s = f", {_fmt(rate, signed=True)}/s" if rate is not None else ""
        ratio = self.delta / self.old if self.old else None
        pct = ""
        if ratio is not None:
            pct = f", {ratio:+.0%}" if abs(ratio) >= 0.01 else f", {ratio:+.2%}"
        return (
            f"{self.field}: {_fmt(self.old)} -> {_fmt(self.new)} "
            f"({_fmt(self.delta, signed=True)}{pct}{per_s})"
        )


def number(value: Any) -> float | None:
    """A snapshot value as a number (booleans and text are not compared as numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def changes(before: SnapshotSeen, after: SnapshotSeen) -> list[Change]:
    """The numeric fields that differ between two snapshots, biggest relative change first."""
    seconds = after.at - before.at if after.at is not None and before.at is not None else None
    moved: list[Change] = []
    for key in after.data:
        old, new = number(before.data.get(key)), number(after.data.get(key))
        if old is None or new is None or old == new or "uptime" in key:
            continue  # (a clock always moves, and says nothing about the incident)
        moved.append(Change(key, old, new, seconds if seconds and seconds > 0 else None))
    return sorted(moved, key=lambda c: -abs(c.delta) / (abs(c.old) or 1.0))


def _fmt(value: float, signed: bool = False) -> str:
    """A number short and exact enough to read: 48.03, 21911, 336911, 0.0042."""
    sign = "+" if signed and value > 0 else ""
    if value == int(value) and abs(value) < 1e15:
        return f"{sign}{int(value)}"
    if abs(value) >= 1000:
        return f"{sign}{value:.0f}"
    return f"{sign}{value:.4g}" if abs(value) >= 0.01 else f"{sign}{value:.2g}"


@dataclass
class Evidence:
    """What a notification rests on: cited snapshots, what moved between them, probe results."""

    snapshot_ids: tuple[str, ...]
    snapshots: list[SnapshotSeen]
    probes: list[ProbeResult] = field(default_factory=list)
    #: cited flight-recorder events (ids "h-...") this view knows, each as one line of text
    history: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        note: Mapping[str, Any],
        snapshots: Mapping[str, SnapshotSeen],
        probes: Sequence[ProbeResult] = (),
        max_probes: int = 6,
        history: Mapping[str, str] | None = None,
    ) -> Evidence:
        """The evidence of one notification (a `Notification.to_dict()`), from what was seen.

        The probes kept are those answered before the notification and after its first cited
        snapshot (the newest `max_probes`), so they are the results it was sent on.
        """
        ids = tuple(str(i) for i in note.get("snapshot_ids") or ())
        seen = [snapshots[i] for i in ids if i in snapshots]
        start = min((s.at for s in seen if s.at is not None), default=None)
        end = _epoch(note.get("detected_at"))
        kept = [
            p for p in probes if (start is None or p.at >= start) and (end is None or p.at <= end)
        ]
        cited = {i: history[i] for i in ids if history and i in history}
        return cls(ids, seen, kept[-max_probes:], cited)

    @property
    def missing(self) -> list[str]:
        """Cited ids this view never saw (a live view started after them, a pruned feed)."""
        have = {s.id for s in self.snapshots} | set(self.history)
        return [i for i in self.snapshot_ids if i not in have]

    @property
    def moved(self) -> list[Change]:
        if len(self.snapshots) < 2:
            return []
        return changes(self.snapshots[0], self.snapshots[-1])

    def text(self, max_changes: int = 8) -> str:
        lines = []
        moved = self.moved
        if len(self.snapshots) >= 2:
            first, last = self.snapshots[0], self.snapshots[-1]
            lines.append(
                f"what moved between snapshots {first.id} and {last.id}"
                + (f" ({last.at - first.at:.1f} s apart):" if last.at and first.at else ":")
            )
            lines += [f"  {c.text()}" for c in moved[:max_changes]] or ["  (nothing moved)"]
            if len(moved) > max_changes:
                lines.append(f"  ... and {len(moved) - max_changes} more field(s)")
        elif self.snapshots:
            only = self.snapshots[0]
            lines.append(f"one snapshot cited ({only.id}): {_compact(only.data)}")
        if self.probes:
            lines.append("probe results it rests on:")
            lines += [
                f"  {p.name}{' (error)' if p.is_error else ''}: {p.quote()}" for p in self.probes
            ]
        if self.history:
            lines.append("history it cites:")
            lines += [f"  {i} {line}" for i, line in self.history.items()]
        if self.missing:
            lines.append(f"snapshots {', '.join(self.missing)} (not seen by this view)")
        return "\n".join(lines)

    def html(self, max_changes: int = 8) -> str:
        parts = []
        moved = self.moved
        if len(self.snapshots) >= 2:
            first, last = self.snapshots[0], self.snapshots[-1]
            apart = ""
            if last.at and first.at:
                apart = f" <small>{last.at - first.at:.1f} s apart</small>"
            rows = "".join(f"<li><code>{_esc(c.text())}</code></li>" for c in moved[:max_changes])
            if len(moved) > max_changes:
                rows += f"<li>... and {len(moved) - max_changes} more field(s)</li>"
            parts.append(
                _html_list(f"<b>what moved</b>{apart}", rows or "<li>(nothing moved)</li>")
            )
        elif self.snapshots:
            only = self.snapshots[0]
            parts.append(
                f"<div><b>one snapshot</b> <code>{_esc(_compact(only.data, 200))}</code></div>"
            )
        if self.probes:
            rows = "".join(
                f"<li><code>{_esc(p.name)}</code>{' <b>error</b>' if p.is_error else ''} "
                f"<small>{_esc(p.quote())}</small></li>"
                for p in self.probes
            )
            parts.append(_html_list("<b>probe results it rests on</b>", rows))
        if self.snapshots:
            full = "".join(
                f'<div><code>{_esc(s.id)}</code><pre style="margin:0;white-space:pre-wrap">'
                f"{_esc(json.dumps(dict(s.data), indent=1, default=str))}</pre></div>"
                for s in self.snapshots
            )
            parts.append(
                f'<details class="lensbook-snapshots"><summary>full snapshots '
                f"({len(self.snapshots)})</summary>{full}</details>"
            )
        if self.history:
            rows = "".join(
                f"<li><code>{_esc(i)}</code> <small>{_esc(line)}</small></li>"
                for i, line in self.history.items()
            )
            parts.append(_html_list("<b>history it cites</b>", rows))
        if self.missing:
            parts.append(
                f'<div style="color:#6b7280">snapshots {_esc(", ".join(self.missing))} '
                "(not seen by this view)</div>"
            )
        return f'<div class="lensbook-evidence">{"".join(parts)}</div>'


def _html_list(head: str, items: str) -> str:
    """One list section of `Evidence.html`: `head` (its bold title), then its `<li>` items."""
    return f'<div>{head}<ul style="margin:0">{items}</ul></div>'


def _compact(data: Mapping[str, Any], limit: int = 400) -> str:
    text = ", ".join(f"{k}={v}" for k, v in data.items())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None
