"""Binder: its requirements install into a fresh venv, postBuild installs lensbook and loads the
extension, and the notebooks run there top to bottom."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_binder_environment_runs_the_notebooks(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    bindir = venv / "bin"
    env = {
        **os.environ,
        "PATH": f"{bindir}:{os.environ['PATH']}",
        "HOME": str(tmp_path),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "VIRTUAL_ENV": str(venv),
        "LENSBOOK_RECORDS_DIR": str(tmp_path / "records"),
    }
    env.pop("ANTHROPIC_API_KEY", None)
    env.pop("PYTHONPATH", None)
    pip = [str(bindir / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run(
        [*pip, "-r", str(ROOT / "binder" / "requirements.txt")], check=True, env=env, timeout=900
    )
    subprocess.run(
        ["bash", str(ROOT / "binder" / "postBuild")], check=True, env=env, cwd=ROOT, timeout=600
    )
    config = (tmp_path / "ipython" / "profile_default" / "ipython_kernel_config.py").read_text()
    assert 'extensions = ["lensbook"]' in config
    for name in ("quickstart.ipynb", "leak-postmortem.ipynb", "custom-skill.ipynb"):
        out = subprocess.run(
            [
                str(bindir / "jupyter"),
                "nbconvert",
                "--to",
                "notebook",
                "--execute",
                "--ExecutePreprocessor.timeout=300",
                "--output-dir",
                str(tmp_path / "out"),
                str(ROOT / "notebooks" / name),
            ],
            env=env,
            cwd=ROOT / "notebooks",
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert (tmp_path / "out" / name).exists()
    # postBuild loads the extension in every kernel: %lens works without %load_ext
    import nbformat

    bare = tmp_path / "bare.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("%lens skills")]), str(bare)
    )
    out = subprocess.run(
        [
            str(bindir / "jupyter"),
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            "--inplace",
            str(bare),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    cell = nbformat.read(str(bare), as_version=4).cells[0]
    assert "memory" in str(cell.outputs)
