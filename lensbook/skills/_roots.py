"""What keeps an object alive, named in the user's terms, with the fix for well-known retainers.

The memory skill walks referrers from a sample of a growing type up to a root. Most roots are
generic (a module global, a class attribute, a local variable of a running frame), but a few
retainers are well known and have a known fix: a ``functools.lru_cache``/``cache`` decorator's
cache (its keys hold every argument, ``self`` included), matplotlib's pyplot figure managers
(figures stay until ``plt.close``), a logger's handler list, IPython's output cache ``Out`` and
its ``_N`` aliases, and ``sys.modules``. `known_root` recognises them from the holder object
itself (types and identities only: no user code runs), and `fix_for` gives the fix for a chain
that ends at one, or at a class attribute (shared by every instance, it lives as long as its
class: the classic mutable class attribute that only grows).

The tooling's own structures are never the answer: lensbook's objects, classes and modules,
tracemalloc's and linecache's caches are skipped (`is_tooling`, `is_tooling_type`).
"""

from __future__ import annotations

import functools
import linecache
import logging
import sys
import types
from typing import Any

from lensbook.skills._frames import type_module
from lensbook.skills._ipython import shell as ipython_shell
from lensbook.skills._static import stored_attr

__all__ = ["fix_for", "global_root", "is_tooling", "is_tooling_module", "known_root"]

_FIXES: tuple[tuple[str, str], ...] = (
    (
        "the cache of @functools.lru_cache",
        "the cache keys hold every argument (self included), so each instance passed stays "
        "alive until evicted: bound it (maxsize), call {name}.cache_clear(), or cache per "
        "instance (functools.cached_property, or a cache keyed by weak reference)",
    ),
    (
        "matplotlib's pyplot figure managers",
        "pyplot keeps every figure it created until it is closed: call plt.close(fig) after "
        "saving (or build figures with matplotlib.figure.Figure, which pyplot does not track)",
    ),
    (
        "the handler list of logger",
        "a handler is added on every call and never removed: add handlers once at start-up, "
        "or logger.removeHandler(h) when done",
    ),
    (
        "IPython's output cache",
        "a displayed result stays in Out[N] and _N after its variable is deleted: "
        "del Out[N] (and _N), or %reset -f out; end cells with ; to not cache a result",
    ),
    (
        "sys.modules",
        "a module stays loaded for the process's lifetime, with its globals: clear the "
        "module-level structure, or del sys.modules[name] if it is reloaded on purpose",
    ),
    (
        # (last: a generic root; a well-known retainer named in the same chain comes first)
        "held by class attribute",
        "{name} belongs to the class, not to an instance: it lives as long as the class and "
        "is shared by every instance, so what is put in it stays. Keep the data on the "
        "instance (set it in __init__), bound it (collections.deque(maxlen=...), an LRU), or "
        "remove entries when done",
    ),
)


def known_root(holder: Any, held: Any) -> str | None:
    """The name of a well-known retainer, if `holder` is one (``held`` is what it keeps)."""
    if type(holder) is functools._lru_cache_wrapper:  # (the C wrapper itself: no code of theirs)
        namespace = getattr(holder, "__dict__", {})
        module = namespace.get("__module__", "?")
        qualname = namespace.get("__qualname__", "?")
        return f"the cache of @functools.lru_cache {module}.{qualname}"
    if holder is sys.modules:
        return "sys.modules"
    if issubclass(type(holder), logging.Logger) and stored_attr(holder, "handlers") is held:
        return f"the handler list of logger {stored_attr(holder, 'name', '?')!r}"
    helpers = sys.modules.get("matplotlib._pylab_helpers")
    gcf = getattr(helpers, "Gcf", None)
    if gcf is not None and holder is vars(gcf).get("figs"):
        return "matplotlib's pyplot figure managers (matplotlib._pylab_helpers.Gcf.figs)"
    out = _ipython_out()
    # (identities first: no method of `holder`, a heap object of any make, is called)
    namespace = _ipython_ns() if out is not None else None
    if namespace is not None and holder is namespace:
        aliases = list(dict.items(namespace))
        key = next((k for k, v in aliases if v is held and _is_out_alias(k)), None)
        if key is not None:
            return f"IPython's output cache alias {key}"
    if out is not None and holder is out:
        key = next((k for k, v in list(dict.items(out)) if v is held), None)
        return f"IPython's output cache Out[{key}]" if key is not None else "IPython's Out"
    return None


def global_root(name: str) -> str | None:
    """A module global's name in the user's terms, when it is a well-known retainer: IPython's
    ``_N`` aliases and ``Out`` in the notebook's namespace (``__main__``)."""
    module, _, attr = name.rpartition(".")
    if module != "__main__" or _ipython_out() is None:
        return None
    if attr == "Out":
        return "IPython's output cache Out"
    if attr[1:].isdigit() and attr.startswith("_"):
        return f"IPython's output cache Out[{attr[1:]}] (and its alias {attr})"
    if attr in ("_", "__", "___"):
        return f"IPython's output cache alias {attr} (the last results)"
    return None


def _ipython_ns() -> dict[str, Any] | None:
    shell = ipython_shell()
    namespace = getattr(shell, "user_ns", None) if shell is not None else None
    return namespace if isinstance(namespace, dict) else None


def _ipython_out() -> dict[Any, Any] | None:
    out = (_ipython_ns() or {}).get("Out")
    return out if isinstance(out, dict) else None


def _is_out_alias(key: Any) -> bool:
    return (
        isinstance(key, str)
        and (key in ("_", "__", "___") or key[1:].isdigit())
        and (key.startswith("_"))
    )


def fix_for(chain: str) -> str | None:
    """The fix for a referrer chain that ends at a well-known retainer (None otherwise)."""
    for marker, fix in _FIXES:
        if marker in chain:
            name = chain.rsplit(marker, 1)[1].split()[0] if "{name}" in fix else ""
            return fix.format(name=name.strip(" ,.;()") or "the function")
    return None


def is_tooling(obj: Any) -> bool:
    """lensbook's own objects, classes and modules, and tracemalloc's/linecache's caches:
    never the answer (a chain that climbs to one of lensbook's classes is lensbook's)."""
    if obj is linecache.cache:
        return True
    kind = type(obj)
    if issubclass(kind, type):
        return is_tooling_type(obj)
    if issubclass(kind, types.ModuleType):
        name = stored_attr(obj, "__name__", "")
        return type(name) is str and is_tooling_module(name)
    return is_tooling_type(kind)


def is_tooling_type(kind: type) -> bool:
    """Whether objects of `kind` are lensbook's or tracemalloc's own."""
    module = type_module(kind) or ""
    return module == "tracemalloc" or is_tooling_module(module)


def is_tooling_module(name: str) -> bool:
    """Whether the module called `name` is the tooling's (lensbook's but its scenarios,
    tracemalloc, linecache): what its globals hold is never the answer."""
    if name in ("tracemalloc", "linecache"):
        return True
    return name.startswith("lensbook.") and not name.startswith("lensbook.scenarios")
