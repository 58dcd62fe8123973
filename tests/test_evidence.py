"""Evidence that reads: the fields that moved between cited snapshots (old -> new, rate), the
probe results before the notification, and the full snapshots one click away."""

from __future__ import annotations

from lensbook.evidence import Evidence, ProbeResult, SnapshotSeen, changes


def test_what_moved_old_new_change_and_rate_biggest_first() -> None:
    before = SnapshotSeen("a", 100.0, {"rss_mb": 68.2, "threads": 225, "uptime_s": 3.0, "ok": True})
    after = SnapshotSeen("b", 104.0, {"rss_mb": 70.2, "threads": 450, "uptime_s": 7.0, "ok": False})
    moved = changes(before, after)
    assert [c.field for c in moved] == ["threads", "rss_mb"]  # no clock, no booleans
    assert moved[0].text() == "threads: 225 -> 450 (+225, +100%, +56.25/s)"
    assert moved[1].text() == "rss_mb: 68.2 -> 70.2 (+2, +3%, +0.5/s)"


def test_evidence_of_a_notification_keeps_its_probes_and_snapshots() -> None:
    note = {
        "snapshot_ids": ["a", "b", "gone"],
        "detected_at": "1970-01-01T00:01:50+00:00",  # 110 s after the epoch
    }
    seen = {
        "a": SnapshotSeen("a", 100.0, {"open_fds": 20}),
        "b": SnapshotSeen("b", 105.0, {"open_fds": 90}),
    }
    probes = [
        ProbeResult("fd_list", 99.0, "before the first snapshot: not evidence"),
        ProbeResult("fd_targets", 103.0, '{"top": "socket:[123] x 70"}'),
        ProbeResult("fd_later", 120.0, "after the notification: not evidence"),
    ]
    evidence = Evidence.of(note, seen, probes)
    assert [p.name for p in evidence.probes] == ["fd_targets"]
    assert evidence.missing == ["gone"]
    text = evidence.text()
    assert "what moved between snapshots a and b (5.0 s apart):" in text
    assert "open_fds: 20 -> 90 (+70, +350%, +14/s)" in text
    assert 'fd_targets: {"top": "socket:[123] x 70"}' in text
    assert "snapshots gone (not seen by this view)" in text
    page = evidence.html()
    assert '<details class="lensbook-snapshots"><summary>full snapshots (2)' in page
    assert "&quot;open_fds&quot;: 90" in page  # escaped JSON of the full snapshot
