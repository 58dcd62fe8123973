"""Records do no harm: private files, pruning of lensbook's own files only, write errors that
end one record quietly, on a real full filesystem."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lensbook
from lensbook.clients import ScriptedClient, call
from lensbook.records import configure, writer
from lensbook.records._writer import RECORD_NAME, is_own_record


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "runs"
    configure(target)
    yield target
    writer._directory = None
    writer.retention = 200


def _run_once() -> lensbook.CompletionResult:
    op = lensbook.Operator.start(skill="runtime", client=ScriptedClient([call("done")] * 20))
    return op.run(reason="check").result


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_records_are_0600_in_a_0700_folder_lensbook_creates(folder: Path) -> None:
    result = _run_once()
    path = writer.path_of(result.run_id)
    assert path is not None and path.parent == folder
    assert _mode(folder) == 0o700
    assert _mode(path) == 0o600
    assert RECORD_NAME.fullmatch(path.name) and is_own_record(path)


def test_an_existing_folder_of_records_is_made_private(folder: Path) -> None:
    _run_once()
    folder.chmod(0o755)
    writer._checked.clear()  # as a new process would find it
    _run_once()
    assert _mode(folder) == 0o700
    assert all(_mode(p) == 0o600 for p in folder.iterdir())


def test_a_shared_folder_keeps_its_mode_with_one_warning(
    folder: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    (folder / "notes.txt").write_text("someone else's")
    with caplog.at_level(logging.WARNING, logger="lensbook.records"):
        first, second = _run_once(), _run_once()
    assert _mode(folder) == 0o755  # not ours to change
    shared = [r for r in caplog.records if "leaves its mode alone" in r.getMessage()]
    assert len(shared) == 1
    for result in (first, second):
        path = writer.path_of(result.run_id)
        assert path is not None and _mode(path) == 0o600


def test_pruning_deletes_only_files_lensbook_wrote(folder: Path) -> None:
    folder.mkdir()
    others: dict[Path, str] = {}
    for i in range(250):
        # other tools' logs, files named like records but not records, and a record-looking
        # header under another name: none of them is lensbook's to delete
        if i % 3 == 0:
            name = f"2020010{i % 9 + 1}T000000000-app-{i:016x}.jsonl"
            text = json.dumps({"type": "header", "format": "other"}) + "\n"
        elif i % 3 == 1:
            name = f"events-{i:03d}.jsonl"
            text = '{"level": "info"}\n'
        else:
            name = f"copy-{i:03d}.jsonl"
            text = '{"type":"header","format":"lensbook-run","version":1}\n'
        others[folder / name] = text
    for path, text in others.items():
        path.write_text(text)
    link_target = folder / "target.jsonl"
    link_target.write_text("{}\n")
    (folder / "20200101T000000000-link-00000000000000ff.jsonl").symlink_to(link_target)
    configure(retention=2)
    results = [_run_once() for _ in range(4)]
    assert all(p.read_text() == t for p, t in others.items())  # every one still there
    assert link_target.exists() and (folder / "20200101T000000000-link-00000000000000ff.jsonl")
    own = sorted(p for p in folder.iterdir() if is_own_record(p))
    assert own == sorted(writer.path_of(r.run_id) for r in results[-2:])  # type: ignore[type-var]


def test_an_unusable_folder_costs_one_warning_and_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the folder should be")
    configure(blocked)
    try:
        with caplog.at_level(logging.WARNING, logger="lensbook.records"):
            result = _run_once()
    finally:
        writer._directory = None
    assert result.stop_reason == "done"
    warned = [r for r in caplog.records if r.name == "lensbook.records"]
    assert len(warned) == 1 and result.run_id in warned[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert writer.path_of(result.run_id) is None


CHILD = textwrap.dedent("""
    import json, logging, os, subprocess, sys
    folder, fault = sys.argv[1], sys.argv[2]
    if fault == "full":
        options = "size=64k,mode=0700"
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "lensbook-full", folder], check=True)
        filler = os.path.join(folder, "filler.bin")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill the disk, then leave room for
        try:                                           # the first few lines of the record
            while True:
                os.write(fd, b"x" * 4096)
        except OSError:
            os.close(fd)
        os.truncate(filler, os.path.getsize(filler) - 8192)

    seen = []
    class Keep(logging.Handler):
        def emit(self, record):
            seen.append((record.levelname, record.name, record.getMessage()))
    logging.getLogger("lensbook").addHandler(Keep())
    logging.getLogger("lensbook").setLevel(logging.WARNING)

    import lensbook
    from lensbook.clients import ScriptedClient, call
    steps = [call("take_snapshot"), call("runtime_threads"), call("take_snapshot"),
             call("runtime_gc"), call("take_snapshot"), call("done", summary="ok")]
    op = lensbook.Operator.start(skill="runtime", client=ScriptedClient(steps))
    result = op.run(reason="disk is full").result
    try:
        lensbook.stop()
        stop_error = None
    except BaseException as exc:
        stop_error = repr(exc)
    try:
        records = [n for n in os.listdir(folder) if n.endswith(".jsonl")]
        lines = open(os.path.join(folder, records[0])).read().count("\\n") if records else 0
    except OSError:
        records, lines = [], 0
    print(json.dumps({"seen": seen, "stop_error": stop_error, "stop_reason": result.stop_reason,
                      "run_id": result.run_id, "records": records, "lines": lines}))
""")


def _isolated_mount(probe: Path) -> list[str]:
    """A command prefix giving the child its own mount namespace (root or not), or a skip that
    says why this machine cannot give one."""
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("needs util-linux unshare and mount to make a small full filesystem")
    if os.geteuid() == 0:
        prefix = ["unshare", "--mount", "--propagation", "private"]
    else:
        prefix = ["unshare", "--user", "--map-root-user", "--mount"]
    tried = subprocess.run(
        [*prefix, "mount", "-t", "tmpfs", "-o", "size=4k", "lensbook-probe", str(probe)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if tried.returncode != 0:
        pytest.skip(f"this machine refuses a private tmpfs mount: {tried.stderr.strip()[-200:]}")
    return prefix


def _run_child(prefix: list[str], folder: Path, mode: str) -> dict[str, Any]:
    """Run `CHILD` (behind `prefix`) with its records in `folder`; its outcome, once checked
    that the child ended well: status 0, no traceback, the run done and `stop()` quiet."""
    env = {**os.environ, "LENSBOOK_RECORDS_DIR": str(folder)}
    child = subprocess.run(
        [*prefix, sys.executable, "-c", CHILD, str(folder), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr
    outcome: dict[str, Any] = json.loads(child.stdout.splitlines()[-1])
    assert outcome["stop_reason"] == "done" and outcome["stop_error"] is None
    assert "Traceback" not in child.stderr
    return outcome


def test_a_full_disk_ends_the_record_with_one_warning_and_stop_does_not_raise(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "full"
    folder.mkdir()
    outcome = _run_child(_isolated_mount(tmp_path), folder, "full")
    warnings = [s for s in outcome["seen"] if s[1] == "lensbook.records"]
    assert len(warnings) == 1, outcome["seen"]
    assert "ENOSPC" in warnings[0][2] and outcome["run_id"] in warnings[0][2]
    assert not [s for s in outcome["seen"] if s[0] in ("ERROR", "CRITICAL")]
    assert len(outcome["records"]) == 1 and outcome["lines"] >= 1  # readable up to the disk's end


def _without_override() -> list[str]:
    """As root, run the child without the capabilities that ignore file permissions."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("root needs util-linux setpriv to be refused a folder")
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def test_a_folder_without_permission_costs_one_warning_per_run(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    locked.chmod(0o500)  # no writing, even for root without its override capabilities
    folder = locked / "runs"
    outcome = _run_child(_without_override(), folder, "locked")
    warnings = [s for s in outcome["seen"] if s[1] == "lensbook.records"]
    assert len(warnings) == 1 and "EACCES" in warnings[0][2], outcome["seen"]
    assert outcome["run_id"] in warnings[0][2]
