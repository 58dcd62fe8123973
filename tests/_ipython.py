"""A real IPython shell for the tests: the process's `InteractiveShell` singleton, with its
history in memory and its profile folder under the test's temporary folder (so no test writes
to the user's ``~/.ipython``)."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def ipython_shell(home: Path, *, fresh: bool = True) -> Iterator[Any]:
    """The process's InteractiveShell for the duration of the block.

    `fresh`: a new singleton (one that earlier tests left mid-history is cleared first);
    otherwise an existing one is reused as it is. A shell made here has its namespace reset and
    is cleared at the end; one that was already there is left to its owner.
    """
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    if fresh:
        InteractiveShell.clear_instance()
    created = not InteractiveShell.initialized()
    previous = os.environ.get("IPYTHONDIR")
    if created:
        os.environ["IPYTHONDIR"] = str(home / "ipython")
        config = Config()
        config.HistoryManager.hist_file = ":memory:"
        InteractiveShell.instance(config=config)
    try:
        yield InteractiveShell.instance()
    finally:
        if created:
            with contextlib.redirect_stdout(io.StringIO()):
                InteractiveShell.instance().run_line_magic("reset", "-f")
            InteractiveShell.clear_instance()
            if previous is None:
                os.environ.pop("IPYTHONDIR", None)
            else:
                os.environ["IPYTHONDIR"] = previous
