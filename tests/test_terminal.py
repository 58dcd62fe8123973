"""The terminal's status lines: redrawn in place in a real pseudo-terminal, plain lines (each
once) when the output is not a terminal, nothing with --quiet; the final report unchanged."""

from __future__ import annotations

import io
import itertools
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import lensbook
from lensbook.clients import ScriptedClient, call
from lensbook.terminal import StatusLines


def finding_run() -> ScriptedClient:
    return ScriptedClient(
        [
            call("take_snapshot"),
            call("take_snapshot"),
            call("think", thought="fds look fine"),
            call("set_state", state="observing", reason="worth a look"),
            call("done", summary="nothing grew"),
        ],
        name="scripted",
    )


def test_piped_output_is_one_plain_line_per_thing_that_matters() -> None:
    stream = io.StringIO()  # not a TTY, like a pipe or a CI log
    (op,) = lensbook.start(["runtime"], client=finding_run())
    with StatusLines(stream) as lines:
        op.run(reason="check")
        op.run(reason="again", client=finding_run())
    text = stream.getvalue()
    assert "\x1b" not in text and "\r" not in text  # no terminal control codes in a log
    out = text.splitlines()
    assert all(a != b for a, b in itertools.pairwise(out))  # never the same line twice in a row
    assert [line.split(" ", 2)[1] for line in out] == ["started", "state", "finished:"] * 2
    assert out[1] == "[runtime] state healthy -> observing: worth a look"
    assert out[2] == "[runtime] finished: observing (done) after 5 iteration(s), 0 notification(s)"
    assert out[4] == "[runtime] state observing -> observing: worth a look"
    assert lines.models["runtime"].iteration == 5


def test_quiet_writes_nothing() -> None:
    stream = io.StringIO()
    (op,) = lensbook.start(["runtime"], client=finding_run())
    with StatusLines(stream, quiet=True):
        op.run(reason="check")
    assert stream.getvalue() == ""


def test_a_terminal_gets_one_live_line_redrawn_in_place_and_the_report_stays(
    tmp_path: Path,
) -> None:
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    env.update(LENSBOOK_RECORDS_DIR=str(tmp_path), COLUMNS="120", TERM="xterm")
    child = subprocess.Popen(
        [sys.executable, "-m", "lensbook.cli", "run", "runtime", "--client", "offline"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    screen = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if not ready:
            if child.poll() is not None:
                break
            continue
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed its end
            break
        if not chunk:
            break
        screen += chunk
    report, _ = child.communicate(timeout=60)
    os.close(leader)
    assert child.returncode == 0
    text = screen.decode(errors="replace")
    # rich redraws the same line: carriage return + erase line, never a new line per update
    assert text.count("\r\x1b[2K") >= 2
    frames = [f for f in text.replace("\r\n", "\n").split("\r\x1b[2K") if f.strip()]
    assert all(f.count("\n") <= 1 for f in frames)  # one operator: one line per frame
    assert "runtime" in frames[-1] and "finished (done)" in frames[-1]
    # stdout (piped) keeps the final report as before
    assert "runtime: healthy after" in report.decode() or "runtime: observing" in report.decode()
    assert "[client: offline investigator]" in report.decode()
