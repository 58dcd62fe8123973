"""A failed cell's traceback keeps a large DataFrame alive after the error.

Modelled on ipython/ipython#11572 ("fix a memory leak on exception (caused by the stored
traceback)": after an unhandled exception in a cell, IPython keeps the traceback for ``%debug``,
so every frame of the failed call keeps its locals, and memory held by large intermediates is
not returned; the reporter cut ``sys.last_traceback`` to recover). A real `InteractiveShell`
runs a cell that defines ``load_orders``, which builds a ~150 MB DataFrame and then fails on a
missing column; nothing but the kept traceback refers to the frame any more.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable
from typing import Any

from lensbook.scenarios import scenario

#: rows x 10 float64 columns: 2,000,000 rows are 152.6 MB
ROWS = 2_000_000

CELLS = (
    "import numpy as np\nimport pandas as pd",
    "def load_orders(n):\n"
    "    orders = pd.DataFrame(np.random.default_rng(0).random((n, 10)),\n"
    "                          columns=[f'f{i}' for i in range(10)])\n"
    "    return orders['discount'].sum()\n",
    f"total = load_orders({ROWS})",  # raises KeyError: 'discount'
)


@scenario(
    skill="kernel",
    reason="memory did not go down after my cell failed",
    expect=(
        r"load_orders",
        r"<ipython-input-\d+-[0-9a-f]+>:\d+",
        r"'orders'",
        r"DataFrame",
        r"sys\.last_traceback = ",
    ),
    settle=0.2,
)
def induce() -> Callable[[], None]:
    from IPython.core.interactiveshell import InteractiveShell

    shell: Any = InteractiveShell.instance()
    # the error's traceback is printed: keep the runner's stdout for its JSON line
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for cell in CELLS:
            shell.run_cell(cell, store_history=True)

    def cleanup() -> None:
        sys.last_traceback = sys.last_value = sys.last_type = None
        if hasattr(sys, "last_exc"):
            sys.last_exc = None
        with contextlib.redirect_stdout(io.StringIO()):
            shell.run_cell("None", store_history=True)

    return cleanup
