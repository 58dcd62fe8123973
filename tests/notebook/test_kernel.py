"""A real IPython kernel: a notebook with %lens run executes through nbclient, and the saved
widget state shows the finished run; Kernel > Interrupt stops a run and keeps what it found."""

from __future__ import annotations

import os
import queue
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

pytestmark = pytest.mark.slow

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

PARK_THREADS = """\
import threading
# 210 parked threads: the runtime skill's rules report "thread_growth" (the recorder saw them)
gate = threading.Event()
parked = [threading.Thread(target=gate.wait, daemon=True) for _ in range(210)]
for t in parked:
    t.start()
"""


def kernel_env(tmp_path: Path) -> dict[str, str]:
    """The kernel's environment: offline (no API key), no user profile or config."""
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    env["IPYTHONDIR"] = str(tmp_path / "ipython")
    env["JUPYTER_CONFIG_DIR"] = str(tmp_path / "jupyter-config")
    env["JUPYTER_RUNTIME_DIR"] = str(tmp_path / "jupyter-runtime")
    env["MPLBACKEND"] = "agg"
    return env


def stdout(cell: Any) -> str:
    """A cell's printed text (the kernel may send one print in several stream messages)."""
    return "".join(o.text for o in cell.outputs if o.output_type == "stream")


def widget_models(nb: Any) -> list[dict[str, Any]]:
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    return list(state.values())


def test_notebook_with_lens_run_saves_the_finished_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in kernel_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    cells = [
        "%load_ext lensbook",
        PARK_THREADS,
        '%lens run runtime --reason "test"',
        "notes = lensbook.notebook.last()\n"
        "print(notes.result.stop_reason, notes.result.state, notes.result.client, "
        "[n.anomaly_type for n in notes])",
        '%lens run runtime --background --reason "second look"',
        "import time\n"
        "from lensbook.notebook.widgets import OperatorCard, views\n"
        "again = lensbook.notebook.last('runtime', wait=True, timeout=60)\n"
        "card = [v for v in views() if isinstance(v, OperatorCard)][-1]\n"
        "for _ in range(500):\n"
        "    if not card.listening:\n"
        "        break\n"
        "    time.sleep(0.01)\n"
        "print(again.result.stop_reason, card.bar.bar_style, card.listening)",
        "gate.set()\n%lens status runtime",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    # lensbook is imported by the extension; the cells use it by name
    nb.cells.insert(1, nbformat.v4.new_code_cell("import lensbook, lensbook.notebook"))
    client = NotebookClient(
        nb,
        timeout=180,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    nbformat.write(nb, tmp_path / "lens.ipynb")

    run_cell = nb.cells[3]
    displays = [o for o in run_cell.outputs if o.output_type == "display_data"]
    assert len(displays) == 1  # the update replaced the card's text in place
    card_text = displays[0].data["text/plain"]
    assert card_text.startswith("Python runtime [runtime] | WARNING | idle")
    # 210 parked threads the flight recorder saw start: one thread_growth, by kind (the
    # snapshot rule's many_threads steps aside for it)
    assert "finished (done)" in card_text
    assert "thread_growth" in card_text and "many_threads" not in card_text
    assert WIDGET_VIEW in displays[0].data
    (result,) = [o for o in run_cell.outputs if o.output_type == "execute_result"]
    assert re.match(r"runtime: warning, 1 notification\(s\) after", result.data["text/plain"])

    printed = stdout(nb.cells[4]).split(" ", 3)
    assert printed[:3] == ["done", "warning", "offline"]
    assert printed[3].rstrip().endswith("['thread_growth']")  # one notification, the history's
    assert stdout(nb.cells[6]).split() == ["done", "success", "False"]

    models = widget_models(nb)
    bars = [m["state"] for m in models if m["model_name"] == "IntProgressModel"]
    assert len(bars) == 2
    assert all(b["bar_style"] == "success" and b["value"] == b["max"] for b in bars), bars
    htmls = [m["state"]["value"] for m in models if m["model_name"] == "HTMLModel"]
    cards = [h for h in htmls if "lensbook-card" in h]
    assert len(cards) == 2
    assert all("Python runtime" in h and "finished (done)" in h for h in cards)
    assert all("#d97706" in h for h in cards)  # the warning badge
    # each notification is an Accordion of its own (its open/closed state survives refreshes)
    feeds = [
        m["state"]
        for m in models
        if m["model_name"] == "AccordionModel"
        and "lensbook-notification" in m["state"].get("_dom_classes", ())
    ]
    titles = " ".join(" ".join(f["titles"]) for f in feeds)
    assert feeds and "thread_growth" in titles and "many_threads" not in titles, feeds
    status = nb.cells[7].outputs[-1].data["text/plain"]
    assert status.startswith("Python runtime [runtime] | WARNING | idle")


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[tuple[KernelManager, BlockingKernelClient]]:
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=kernel_env(tmp_path), cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        yield km, kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run(kc: BlockingKernelClient, code: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Execute `code`; the iopub messages of the request until it went idle."""
    msg_id = kc.execute(code)
    return collect(kc, msg_id, timeout)


def collect(
    kc: BlockingKernelClient, msg_id: str, timeout: float, until: Any = None
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            msg = kc.get_iopub_msg(timeout=1)
        except queue.Empty:
            continue
        messages.append(msg)
        if until is not None and until(msg):
            return messages
        if (
            msg["parent_header"].get("msg_id") == msg_id
            and msg["msg_type"] == "status"
            and msg["content"]["execution_state"] == "idle"
        ):
            return messages
    raise AssertionError(f"no end of {msg_id} within {timeout} s: {messages[-5:]}")


def texts(messages: list[dict[str, Any]], kind: str) -> list[str]:
    out = []
    for msg in messages:
        if msg["msg_type"] == kind:
            content = msg["content"]
            out.append(content.get("text") or content.get("data", {}).get("text/plain", ""))
    return out


def test_interrupt_ends_the_run_and_keeps_what_it_found(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    km, kc = kernel
    setup = run(
        kc,
        "%load_ext lensbook\n"
        "import lensbook.notebook\n"
        "from lensbook.clients import ScriptedClient, call\n"
        "sc = ScriptedClient([call('take_snapshot'), call('wait', seconds=30), call('done')])",
    )
    assert not [m for m in setup if m["msg_type"] == "error"]

    msg_id = kc.execute("%lens run runtime --client sc")

    def waiting(msg: dict[str, Any]) -> bool:
        state = msg["content"].get("data", {}).get("state", {})
        return msg["msg_type"] == "comm_msg" and "calling wait" in str(state.get("value", ""))

    collect(kc, msg_id, 60, until=waiting)  # the card shows the model waiting: interrupt now
    km.interrupt_kernel()
    messages = collect(kc, msg_id, 60)
    assert not [m for m in messages if m["msg_type"] == "error"], texts(messages, "error")
    (result,) = texts(messages, "execute_result")
    assert "stopped by interrupted" in result
    cards = [
        str(m["content"]["data"]["state"].get("value", ""))
        for m in messages
        if m["msg_type"] == "comm_msg" and "lensbook-card" in str(m["content"].get("data", {}))
    ]
    assert cards and "finished (interrupted)" in cards[-1]
    reply = _reply_to(kc, msg_id)  # after the setup's (and any early kernel_info's)
    assert reply["content"]["status"] == "ok"

    after = run(
        kc,
        "notes = lensbook.notebook.last()\n"
        "print(notes.result.stop_reason, len(notes.result.snapshots), "
        "lensbook.get_operator('runtime').started)",
    )
    assert "".join(texts(after, "stream")) == "interrupted 1 True\n"  # the operator stays up
    again = run(kc, "sc = ScriptedClient([call('done')])\n%lens run runtime --client sc")
    assert "stopped by done" in texts(again, "execute_result")[0]


def test_interrupting_a_blocking_run_on_a_model_that_never_answers(
    kernel: tuple[KernelManager, BlockingKernelClient],
) -> None:
    from tests.fakes.messages_server import Delay, MessagesServer

    km, kc = kernel
    with MessagesServer(then=Delay(90.0)) as hang:
        setup = run(
            kc,
            "import lensbook\n"
            "from lensbook.clients import ScriptedClient, call\n"
            "registry = {'clients': [{'name': 'hang', 'provider': 'anthropic', 'options': "
            f"{{'base_url': {hang.url!r}, 'api_key': 'k'}}}}]}}\n"
            "lensbook.start(['runtime'], client_registry=registry, sample_interval=None)",
        )
        assert not [m for m in setup if m["msg_type"] == "error"], texts(setup, "error")
        msg_id = kc.execute("notes = lensbook.run('runtime', reason='is it stuck?')")
        deadline = time.monotonic() + 60
        while not hang.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert hang.requests, "the run never asked the model"
        km.interrupt_kernel()
        messages = collect(kc, msg_id, 60)
        assert any("KeyboardInterrupt" in t for t in texts(messages, "error") + _enames(messages))
        began = time.monotonic()
        after = run(
            kc,
            "op = lensbook.get_operator('runtime')\n"
            "print(op.wait(timeout=30).stop_reason)\n"
            "print(lensbook.run('runtime', client=ScriptedClient([call('done')])).result"
            ".stop_reason)",
        )
        assert "".join(texts(after, "stream")) == "interrupted\ndone\n"
        assert time.monotonic() - began < 30  # not behind the hanging call (90 s)
        assert len(hang.requests) == 1


def _reply_to(kc: BlockingKernelClient, msg_id: str) -> dict[str, Any]:
    """The shell reply to `msg_id`, skipping the replies to earlier requests."""
    for _ in range(10):
        reply: dict[str, Any] = kc.get_shell_msg(timeout=10)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply
    raise AssertionError(f"no shell reply to {msg_id}")


def _enames(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"].get("ename", "") for m in messages if m["msg_type"] == "error"]
