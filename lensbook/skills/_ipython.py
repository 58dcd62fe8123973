"""The running IPython shell, for skills and observers that read a notebook's state.

IPython is never imported here: a process that did not import it has no shell, and importing
it would cost a second and change the process. A shell half torn down (at exit) answers None.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["shell"]


def shell() -> Any:
    """The running IPython shell, or None (IPython is not imported if nobody imported it)."""
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython

        return get_ipython()
    except Exception:
        return None
