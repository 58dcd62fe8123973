"""The process skill: fd counts and listings by path pattern, sockets, children, limits, rules."""

from __future__ import annotations

import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from lensbook.sampling import store
from lensbook.skills import resolve_skill
from lensbook.skills.base import render_output
from lensbook.skills.process import (
    ChildZombies,
    FdGrowth,
    FdPressure,
    ProcessSkill,
    _open_handles,
    count_fds,
    fd_kind,
    path_pattern,
)
from lensbook.skills.rules import Evidence, ProbeCall
from lensbook.skills.untrusted import undelimit

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def call(skill: ProcessSkill, name: str, **kwargs: Any) -> Any:
    """A probe's result as the model (and the offline investigator) sees it."""
    tool = {t.name: t for t in skill.probes()}[name]
    return undelimit(json.loads(render_output(tool.fn(**tool.validate(kwargs)), tool.max_chars)))


@pytest.fixture
def leaked(tmp_path: Path) -> Iterator[list[IO[str]]]:
    handles: list[IO[str]] = []
    yield handles
    for h in handles:
        h.close()


def open_leaks(directory: Path, handles: list[IO[str]], start: int, n: int) -> None:
    for i in range(start, start + n):
        handles.append(open(directory / f"leak-{i}.log", "w"))  # noqa: SIM115


# -- path patterns ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "pattern"),
    [
        ("/tmp/tmpk3j4_x8q/leak-17.log", "/tmp/tmp*/leak-*.log"),
        ("/tmp/tmpk3j4_x8q/leak-1017.log", "/tmp/tmp*/leak-*.log"),
        ("socket:[881234]", "socket:[*]"),
        ("pipe:[12]", "pipe:[*]"),
        ("anon_inode:[eventpoll]", "anon_inode:[eventpoll]"),
        ("/run/3f2a1b4c-1234-4abc-9def-0123456789ab.sock", "/run/*.sock"),
        ("/data/cache/ab12cd34ef56/chunk.bin", "/data/cache/*/chunk.bin"),
        ("/srv/logs/2026-11-24/app.3.log", "/srv/logs/*-*-*/app.*.log"),
        ("/home/u/notes/deadbeefcafe.txt", "/home/u/notes/deadbeefcafe.txt"),
        ("/usr/lib/libssl.so.3", "/usr/lib/libssl.so.*"),
    ],
)
def test_path_pattern_replaces_variable_parts(path: str, pattern: str) -> None:
    assert path_pattern(path) == pattern


def test_fd_kind() -> None:
    assert fd_kind("socket:[1]") == "socket"
    assert fd_kind("pipe:[1]") == "pipe"
    assert fd_kind("anon_inode:[eventfd]") == "anon_inode"
    assert fd_kind("/dev/null") == "device"
    assert fd_kind("/tmp/x") == "file"
    assert fd_kind("net:[4026531840]") == "other"


# -- counting and the snapshot ------------------------------------------------------------


def test_count_fds_follows_opens_and_closes(tmp_path: Path, leaked: list[IO[str]]) -> None:
    before = count_fds()
    assert before == len(os.listdir("/proc/self/fd")) - 1
    open_leaks(tmp_path, leaked, 0, 25)
    assert count_fds() == before + 25
    for h in leaked[:10]:
        h.close()
    assert count_fds() == before + 15


def test_snapshot_is_flat_numbers_and_feeds_fd_growth(
    tmp_path: Path, leaked: list[IO[str]]
) -> None:
    skill = ProcessSkill()
    first = skill.snapshot()
    assert all(isinstance(v, (int, float)) for v in first.values())
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert first["fd_soft_limit"] == (soft if soft != resource.RLIM_INFINITY else -1)
    assert first["open_fds"] == count_fds()
    assert {"cpu_user_s", "ctx_voluntary", "ctx_involuntary", "block_writes"} <= set(first)
    open_leaks(tmp_path, leaked, 0, 30)
    second = skill.snapshot()
    assert second["open_fds"] == first["open_fds"] + 30
    growth = call(skill, "process_fd_growth", window_s=60)
    assert growth["change"] == 30
    assert growth["first"] == first["open_fds"]
    assert growth["slope_per_min"] > 0


def test_fd_growth_reads_the_metrics_store() -> None:
    skill = ProcessSkill()
    now = time.time()
    fds = count_fds()
    for i in range(10):  # a sampler's history: 10 points, 20 s apart, 5 fds more each time
        store.record("process", {"open_fds": fds - 50 + 5 * i}, at=now - 200 + 20 * i)
    try:
        growth = call(skill, "process_fd_growth", window_s=300)
    finally:
        store.clear()
    assert growth["points"] >= 11
    assert growth["first"] == fds - 50
    assert growth["span_s"] >= 199
    assert 10 < growth["slope_per_min"] < 20  # 5 fds per 20 s is 15 per minute


# -- probes --------------------------------------------------------------------------------


def test_open_files_groups_similar_paths_with_counts(tmp_path: Path, leaked: list[IO[str]]) -> None:
    skill = ProcessSkill()
    open_leaks(tmp_path, leaked, 0, 40)
    r, w = os.pipe()
    try:
        listing = call(skill, "process_open_files", limit=5)
        top = listing["groups"][0]
        assert top["kind"] == "file"
        assert top["pattern"] == path_pattern(str(tmp_path)) + "/leak-*.log"
        assert top["count"] == 40
        assert top["fd_max"] - top["fd_min"] >= 39
        assert len(top["examples"]) == 2 and "leak-" in top["examples"][0]
        assert listing["by_kind"]["pipe"] >= 2
        assert listing["open_fds"] == listing["scanned"] >= 42
        assert len(listing["groups"]) <= 5
        open_leaks(tmp_path, leaked, 40, 7)
        again = call(skill, "process_open_files", limit=5)
        assert again["groups"][0]["count"] == 47
        assert again["groups"][0]["growth_since_last_call"] == 7
        assert again["seconds_since_last_call"] is not None
    finally:
        os.close(r)
        os.close(w)


def test_open_files_caps_the_number_read(tmp_path: Path, leaked: list[IO[str]]) -> None:
    open_leaks(tmp_path, leaked, 0, 30)
    listing = call(ProcessSkill(), "process_open_files", max_fds=10)
    assert listing["scanned"] <= 10
    assert listing["open_fds"] >= 30


def test_sockets_grouped_by_status() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    accepted, _ = server.accept()
    try:
        result = call(ProcessSkill(), "process_sockets")
        assert result["by_status"].get("LISTEN", 0) >= 1
        assert result["by_status"].get("ESTABLISHED", 0) >= 2
        port = server.getsockname()[1]
        endpoints = {g["endpoint"] for g in result["groups"]}
        assert f"local 127.0.0.1:{port}" in endpoints
        assert f"127.0.0.1:{port}" in endpoints
    finally:
        for s in (accepted, client, server):
            s.close()


def test_limits_report_nofile_usage() -> None:
    result = call(ProcessSkill(), "process_limits")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nofile = result["nofile"]
    assert nofile["soft"] == (None if soft == resource.RLIM_INFINITY else soft)
    assert nofile["hard"] == (None if hard == resource.RLIM_INFINITY else hard)
    assert nofile["open_fds"] > 0
    if nofile["soft"]:
        assert nofile["headroom"] == nofile["soft"] - nofile["open_fds"]
    assert "stack" in result and "soft" in result["stack"]


def _zombie_children(n: int) -> list[subprocess.Popen[bytes]]:
    """`n` children that exit at once and are not waited for (zombies until reaped)."""
    kids = [subprocess.Popen(["true"]) for _ in range(n)]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        states = [psutil.Process(k.pid).status() for k in kids]
        if all(s == psutil.STATUS_ZOMBIE for s in states):
            break
        time.sleep(0.02)
    return kids


def test_children_lists_live_and_zombie_children() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    zombies = _zombie_children(3)
    try:
        skill = ProcessSkill()
        result = call(skill, "process_children")
        pids = {c["pid"] for c in result["listed"]}
        assert sleeper.pid in pids
        assert result["zombies"] >= 3
        row = next(c for c in result["listed"] if c["pid"] == sleeper.pid)
        # another process's command line only with the user's opt-in
        assert row["name"] == "sleep" and "cmdline" not in row
        skill.share_command_lines = True
        result = call(skill, "process_children")
        row = next(c for c in result["listed"] if c["pid"] == sleeper.pid)
        assert row["name"] == "sleep" and row["cmdline"] == "sleep 30"
    finally:
        sleeper.kill()
        sleeper.wait()
        for z in zombies:
            z.wait()


def test_activity_counts_io_and_context_switches(tmp_path: Path) -> None:
    skill = ProcessSkill()
    first = call(skill, "process_activity", interval=0.1)
    assert first["window_s"] >= 0.1
    with open(tmp_path / "out.bin", "wb", buffering=0) as fh:
        for _ in range(200):
            fh.write(b"x" * 4096)
    time.sleep(0.06)  # let the next call measure from the first reading
    second = call(skill, "process_activity")
    assert second["totals"]["io_write_calls"] - first["totals"]["io_write_calls"] >= 200
    assert second["rates"]["io_write_calls_per_s"] > 0
    assert second["totals"]["ctx_voluntary"] >= first["totals"]["ctx_voluntary"]


def test_memory_maps_summarises_by_category() -> None:
    result = call(ProcessSkill(), "process_memory_maps", limit=5)
    assert result["mappings"] > 10
    assert "shared_libraries" in result["by_category"]
    rss = [m["rss_mb"] for m in result["largest"]]
    assert rss == sorted(rss, reverse=True) and len(rss) == 5


def test_registered_and_every_probe_states_its_cost() -> None:
    skill = resolve_skill("process")
    assert isinstance(skill, ProcessSkill)
    tools = skill.probes()
    names = {t.name for t in tools}
    assert {
        "process_open_files",
        "process_sockets",
        "process_fd_growth",
        "process_limits",
        "process_children",
        "process_activity",
        "process_memory_maps",
    } <= names
    for tool in tools:
        assert "Cost:" in (tool.fn.__doc__ or ""), tool.name
        assert all(isinstance(p, dict) for p in tool.input_schema["properties"].values())


# -- rules -----------------------------------------------------------------------------------


def evidence(skill: ProcessSkill, snaps: list[dict[str, Any]], reason: str = "") -> Evidence:
    ev = Evidence(context={"reason": reason})
    for i, data in enumerate(snaps):
        at = data.pop("_at", time.time())
        ev.snapshots.append(undelimit(json.loads(render_output(data))))
        ev.snapshot_ids.append(f"s{i}")
        ev.snapshot_times.append(at)
    return ev


def record(ev: Evidence, skill: ProcessSkill, call_: ProbeCall) -> None:
    ev.results.setdefault(call_.name, []).append(
        (call_.arguments, call(skill, call_.name, **call_.arguments))
    )


def run_rules(ev: Evidence, skill: ProcessSkill) -> list[Any]:
    """What the offline investigator does once the snapshots are in: wanted probes, then judge."""
    for _ in range(3):
        for rule in skill.rules():
            for c in rule.wants(ev):
                if not ev.called(c):
                    record(ev, skill, c)
    return [f for rule in skill.rules() for f in rule.judge(ev)]


def test_an_idle_process_raises_nothing() -> None:
    skill = ProcessSkill()
    a = skill.snapshot()
    a["_at"] = time.time()
    time.sleep(0.3)
    b = skill.snapshot()
    b["_at"] = time.time()
    ev = evidence(skill, [a, b], reason="routine check: is anything wrong with file descriptors?")
    assert run_rules(ev, skill) == []
    assert "process_open_files" in ev.results  # the reason named descriptors: it looked


def test_fd_leak_is_named_with_growth_and_pattern(tmp_path: Path, leaked: list[IO[str]]) -> None:
    skill = ProcessSkill()
    t0 = time.time()
    first = skill.snapshot()
    ev = evidence(skill, [{**first, "_at": t0}], reason="open file descriptors keep growing")
    rule = FdGrowth()
    wanted = list(rule.wants(ev))
    assert wanted == [
        ProbeCall("process_fd_growth", {"window_s": 3600.0}),
        ProbeCall("process_open_files", {"limit": 15}),
    ]
    for c in wanted:
        record(ev, skill, c)
    open_leaks(tmp_path, leaked, 0, 60)
    ev.snapshots.append(undelimit(json.loads(render_output(skill.snapshot()))))
    ev.snapshot_ids.append("s1")
    ev.snapshot_times.append(t0 + 2.0)
    wanted = [c for c in rule.wants(ev) if not ev.called(c)]
    # a second listing; once a listing names the top group, also where that kind of descriptor
    # is created in the user's code (which group tops the first listing depends on the process)
    assert wanted[0] == ProbeCall("process_open_files", {"limit": 10})
    assert {c.name for c in wanted[1:]} <= {"process_created", "process_sockets"}
    findings = run_rules(ev, skill)
    assert len(findings) == 1
    f = findings[0]
    assert f.anomaly_type == "fd_leak" and f.severity in ("warning", "critical")
    n0 = first["open_fds"]
    assert f"grew from {n0} to {n0 + 60} (+60 in 2.0 s, 30.0/s)" in f.observation
    assert "leak-*.log" in f.observation and "+60 since the previous listing" in f.observation
    assert "RLIMIT_NOFILE" in f.context
    assert "leak-*.log" in (f.hypothesis or "")


def test_a_socket_leak_is_named_by_its_endpoint() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    held: list[socket.socket] = []
    try:
        skill = ProcessSkill()
        a = {**skill.snapshot(), "_at": time.time()}
        for _ in range(30):  # connections opened per request and never closed
            held.append(socket.create_connection(("127.0.0.1", port)))
            held.append(server.accept()[0])
        b = {**skill.snapshot(), "_at": time.time() + 2}
        ev = evidence(skill, [a, b], reason="routine check")
        findings = run_rules(ev, skill)
        assert "process_sockets" in ev.results
        [f] = findings
        assert "socket 'socket:[*]'" in f.observation
        assert f"30 x INET STREAM ESTABLISHED 127.0.0.1:{port}" in f.observation
    finally:
        for s in held:
            s.close()
        server.close()


def history_evidence(skill: ProcessSkill, rises: list[int]) -> Evidence:
    """Two flat snapshots after a sampled history of open fds 60 s apart (`rises` added)."""
    now = time.time()
    fds = count_fds()
    for i, extra in enumerate(rises):
        store.record("process", {"open_fds": fds + extra}, at=now - 60 * (len(rises) - i))
    a = {**skill.snapshot(), "_at": now}
    b = {**skill.snapshot(), "_at": now + 2}
    return evidence(skill, [a, b], reason="routine check")


def test_a_slow_leak_is_found_in_the_sampled_history() -> None:
    skill = ProcessSkill()
    # 10 minutes of a slow leak: 40 fds fewer each minute back, nothing within the run
    ev = history_evidence(skill, [-400 + 40 * i for i in range(10)])
    try:
        findings = run_rules(ev, skill)
    finally:
        store.clear()
    assert [f.anomaly_type for f in findings] == ["fd_leak"]
    assert "in the sampled history" in findings[0].observation
    assert re.search(r"\+\d+ in 6\d\d s, 4\d\.\d/min", findings[0].observation)


@pytest.mark.parametrize("rises", [[0] * 10, [0, 100, 200, 300, 200, 100, 0, 0, 0, 0]])
def test_a_flat_or_receding_history_is_no_leak(rises: list[int]) -> None:
    skill = ProcessSkill()
    ev = history_evidence(skill, rises)
    try:
        findings = run_rules(ev, skill)
    finally:
        store.clear()
    assert findings == []


def test_small_fd_churn_is_not_a_leak(tmp_path: Path, leaked: list[IO[str]]) -> None:
    skill = ProcessSkill()
    a = {**skill.snapshot(), "_at": time.time()}
    open_leaks(tmp_path, leaked, 0, 5)
    b = {**skill.snapshot(), "_at": time.time() + 2}
    ev = evidence(skill, [a, b], reason="check descriptors")
    assert list(FdGrowth().judge(ev)) == []


def test_fd_pressure_near_the_soft_limit_in_a_child() -> None:
    # lowering RLIMIT_NOFILE in the test process would break other tests: use a child
    script = textwrap.dedent(
        """
        import json, os, resource, sys, tempfile
        from lensbook.skills.process import ProcessSkill
        from lensbook.skills.rules import Evidence
        from lensbook.skills.base import render_output
        from lensbook.skills.untrusted import undelimit
        here = len(os.listdir("/proc/self/fd")) - 1
        resource.setrlimit(resource.RLIMIT_NOFILE, (here + 100, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))
        d = tempfile.mkdtemp()
        held = [open(os.path.join(d, f"conn-{i}.tmp"), "w") for i in range(92)]
        skill = ProcessSkill()
        ev = Evidence(context={"reason": "check"}, snapshots=[skill.snapshot()],
                      snapshot_ids=["s0"], snapshot_times=[0.0])
        for rule in skill.rules():
            for c in rule.wants(ev):
                tool = {t.name: t for t in skill.probes()}[c.name]
                ev.results.setdefault(c.name, []).append(
                    (c.arguments, undelimit(json.loads(render_output(tool.fn(**c.arguments))))))
        out = [f.__dict__ for r in skill.rules() for f in r.judge(ev)]
        sys.stdout.write(json.dumps(out))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    findings = json.loads(done.stdout)
    assert [f["anomaly_type"] for f in findings] == ["fd_pressure"]
    assert findings[0]["severity"] == "critical"  # 92 + the usual few of 100
    assert "conn-*.tmp" in findings[0]["observation"]
    assert "soft limit" in findings[0]["observation"]


def test_zombie_rule_names_the_children() -> None:
    zombies = _zombie_children(3)
    try:
        skill = ProcessSkill()
        ev = evidence(skill, [skill.snapshot()], reason="are subprocesses being reaped?")
        findings = [f for f in run_rules(ev, skill) if f.anomaly_type == "zombie_children"]
        assert len(findings) == 1
        assert "true x 3" in findings[0].observation
        assert isinstance(ChildZombies().wants(ev)[0], ProbeCall)
    finally:
        for z in zombies:
            z.wait()


def test_pressure_rule_is_quiet_far_from_the_limit() -> None:
    skill = ProcessSkill()
    ev = evidence(skill, [skill.snapshot()])
    assert list(FdPressure().wants(ev)) == [] and list(FdPressure().judge(ev)) == []


def test_temp_dir_pattern_matches_mkdtemp() -> None:
    d = tempfile.mkdtemp()
    try:
        assert path_pattern(d + "/leak-3.log") == path_pattern(tempfile.gettempdir()) + (
            "/tmp*/leak-*.log"
        )
    finally:
        os.rmdir(d)


class _LoudSocket(socket.socket):
    """A socket whose Python-level methods record that they ran."""

    called: list[str] = []  # noqa: RUF012

    def fileno(self) -> int:
        _LoudSocket.called.append("fileno")
        return super().fileno()


def test_open_handles_are_found_without_running_their_classes_code() -> None:
    loud = _LoudSocket()
    _LoudSocket.called.clear()
    try:
        sockets = _open_handles("socket")
        called = list(_LoudSocket.called)
    finally:
        loud.close()
    assert called == []
    assert any(s is loud for s in sockets)
    assert not any(s is loud for s in _open_handles("socket"))  # closed: not open


def test_open_sockets_are_found_when_a_library_replaced_the_socket_class() -> None:
    class GreenSocket:  # gevent's socket is no _socket.socket, and its methods are its own
        def fileno(self) -> int:
            raise AssertionError("the library's method ran")

    real = socket.socket()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "socket", GreenSocket)
        green = GreenSocket()
        try:
            found = _open_handles("socket")
        finally:
            real.close()
    assert any(s is real for s in found) and not any(s is green for s in found)


def test_a_buffered_file_over_the_programs_raw_stream_is_not_asked_if_closed() -> None:
    import io

    asked: list[str] = []

    class Raw(io.RawIOBase):
        def readable(self) -> bool:
            return True

        @property
        def closed(self) -> bool:
            asked.append("closed")
            return False

    wrapped = io.BufferedReader(Raw())
    with open(__file__, encoding="utf-8") as own:
        asked.clear()
        found = _open_handles("file")
        assert asked == []
        assert any(f is own for f in found)
        assert not any(f is wrapped for f in found)
