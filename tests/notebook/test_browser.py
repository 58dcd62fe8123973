"""A real browser: JupyterLab on 127.0.0.1 with a token, headless Debian Chromium driven by
Playwright, runs `%lens run runtime --reason "test"` with the offline investigator and shows the
operator card and a notification. The screenshot is kept under tmp/artifacts/ (or
$LENSBOOK_ARTIFACTS)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("LENSBOOK_ARTIFACTS", REPO / "tmp" / "artifacts"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

CELLS = [
    "%load_ext lensbook",
    "import threading\n"
    "# 210 parked threads: the runtime skill's rules report thread_growth\n"
    "gate = threading.Event()\n"
    "parked = [threading.Thread(target=gate.wait, daemon=True) for _ in range(210)]\n"
    "for t in parked:\n"
    "    t.start()",
    '%lens run runtime --reason "test"',
    "%lens dashboard",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """JupyterLab serving tmp_path on 127.0.0.1, isolated from any user config; yields its URL."""
    port, token = free_port(), secrets.token_hex(16)
    root = tmp_path / "root"
    root.mkdir()
    config = tmp_path / "jupyter-config"
    config.mkdir()
    labconfig = config / "labconfig"
    labconfig.mkdir()
    # no "get notified about Jupyter news?" toast over the page
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    (config / "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "ServerApp": {
                    "ip": "127.0.0.1",
                    "port": port,
                    "port_retries": 0,
                    "open_browser": False,
                    "root_dir": str(root),
                    "allow_root": True,  # CI runs as root
                },
                "IdentityProvider": {"token": token},
                # nothing may reach the network: no news, no update check, no PyPI listing
                "LabApp": {
                    "news_url": None,
                    "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
                    "extension_manager": "readonly",
                    "expose_app_in_browser": True,
                },
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    env.update(
        JUPYTER_CONFIG_DIR=str(config),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "lab-settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "lab-workspaces"),
        IPYTHONDIR=str(tmp_path / "ipython"),
        MPLBACKEND="agg",
    )
    log = (tmp_path / "lab.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser"],
        env=env,
        cwd=root,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if server.poll() is not None:
                raise AssertionError(f"JupyterLab exited: {(tmp_path / 'lab.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        else:
            raise AssertionError("JupyterLab did not answer within 60 s")
        yield f"{url}/lab/tree/lens.ipynb?token={token}", root
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        log.close()


def test_lens_run_in_jupyterlab_shows_the_card_and_a_notification(
    lab: tuple[str, Path], tmp_path: Path
) -> None:
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian chromium is not installed (/usr/bin/chromium): apt-get install chromium"
        )
    from playwright.sync_api import expect, sync_playwright

    url, root = lab
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, root / "lens.ipynb")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "lens-run-jupyterlab.png"

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
            page.wait_for_function(
                "() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                " && window.jupyterapp.shell.currentWidget.sessionContext"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel",
                timeout=120_000,
            )
            page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
            card = page.locator(".lensbook-operator-card").first  # the run cell's
            expect(card).to_be_visible(timeout=120_000)
            expect(card).to_contain_text("finished (done)", timeout=120_000)
            expect(card).to_contain_text("Python runtime")
            expect(card).to_contain_text("warning")
            note = page.locator(".lensbook-notification").first
            expect(note).to_be_visible()
            expect(note).to_contain_text("thread_growth")
            expect(note).to_contain_text("observation")  # the newest entry is expanded
            bar = card.locator(".progress-bar-success, .widget-progress .progress-bar-success")
            expect(bar.first).to_be_attached()
            card.scroll_into_view_if_needed()
            page.screenshot(path=str(shot), full_page=True)
            board = page.locator(".lensbook-dashboard")
            expect(board).to_be_visible(timeout=60_000)
            expect(board.locator(".lensbook-operator-card")).to_contain_text("Python runtime")
            expect(board.locator(".lensbook-notification").first).to_contain_text("thread_growth")
            expect(board.locator(".lensbook-metrics table")).to_contain_text("rss_mb")
            expect(board.locator(".lensbook-metrics img")).to_be_visible()
            page.set_viewport_size({"width": 1280, "height": 2600})  # the whole dashboard
            board.scroll_into_view_if_needed()
            board.screenshot(path=str(ARTIFACTS / "lens-dashboard-jupyterlab.png"))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    docs = os.environ.get("LENSBOOK_SCREENSHOT_COPY")
    if docs:  # how the screenshot in docs/ is refreshed
        shutil.copy(shot, docs)
    folder = os.environ.get("LENSBOOK_SCREENSHOT_DIR")
    if folder:  # or every screenshot at once (README and docs/screenshots/)
        for name in (shot.name, "lens-dashboard-jupyterlab.png"):
            shutil.copy(ARTIFACTS / name, Path(folder) / name)
