"""A large DataFrame kept alive only by IPython's output cache (``Out[N]``, ``_N``).

A real `InteractiveShell` runs cells: one builds a ~150 MB DataFrame, the next displays it (so
the displayhook stores it as Out[2] and _2), then the variable is deleted and a few small
results push it out of ``_``, ``__`` and ``___``. Nothing but the cache refers to it any more.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from typing import Any

from lensbook.scenarios import scenario

#: rows x 10 float64 columns: 2,000,000 rows are 152.6 MB
ROWS = 2_000_000


def cells(rows: int) -> tuple[str, ...]:
    """The cells the shell runs: build a DataFrame of `rows` x 10, display it, delete it."""
    return (
        "import numpy as np\nimport pandas as pd",
        f"orders = pd.DataFrame(np.random.default_rng(0).random(({rows}, 10)),\n"
        "                      columns=[f'f{i}' for i in range(10)])",
        "orders",  # displayed: Out[3] and _3 now hold the frame
        "del orders",
        "summary = {'rows': 2}\nlen(summary)",
        "'done'",
        "3 * 7",
    )


def induce_with(rows: int) -> Callable[[], None]:
    """Run the cells in a real InteractiveShell; returns the cleanup (%reset -f out)."""
    # IPython is imported here only: the scenario needs a shell, lensbook's import does not
    from IPython.core.interactiveshell import InteractiveShell

    shell: Any = InteractiveShell.instance()
    # the displayhook prints each result; keep the runner's stdout for its JSON line
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in cells(rows):
            result = shell.run_cell(cell, store_history=True)
            result.raise_error()

    def cleanup() -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            shell.run_line_magic("reset", "-f out")

    return cleanup


@scenario(
    skill="kernel",
    reason="the kernel's memory stays high after I deleted my big DataFrame",
    expect=(r"Out\[3\]", r"DataFrame", r"1[45]\d(\.\d)? MB", r"del Out\[3\]|%reset -f out"),
    settle=0.2,
)
def induce() -> Callable[[], None]:
    return induce_with(ROWS)
