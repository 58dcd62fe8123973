"""The package's layers, read from its source with the stdlib `ast` (nothing is imported).

- No import cycle inside `lensbook/`, counting deferred (function-level) imports too and leaving
  out only `if TYPE_CHECKING:` blocks. The package root is the public façade: it is left out of
  the graph, and instead only the front ends may import it.
- The front ends (`notebook/`, `cli.py`) import the public surface and their own modules.
- Every event kind published in the package is an `EventKind`.
- Every public name (`lensbook.__all__`) appears in the README or a shipped notebook.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import lensbook
from lensbook.events import EVENT_KINDS

PACKAGE = Path(lensbook.__file__).parent
ROOT = PACKAGE.parent

#: modules that are front ends: they may import the package root (the public surface)
FRONT_ENDS = ("lensbook.notebook", "lensbook.cli", "lensbook.scenarios.runner")

#: cycles tolerated for now, each with its owner; any other cycle fails the test (none today)
KNOWN_CYCLES: set[frozenset[str]] = set()


#: internal modules the front ends still import, each with why; anything else fails the test (none
#: today: add one only with the reason it cannot go through the public surface)
FRONT_END_EXCEPTIONS: set[str] = set()


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The module `name` is, or is inside (an imported attribute resolves to its module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    """The lensbook modules `module` imports, anywhere but under `if TYPE_CHECKING:`."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets.update(filter(None, (_resolve(a.name) for a in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                target = full if full in MODULES else _resolve(base)
                if target:
                    targets.add(target)
    targets.discard(module)
    return {t for t in targets if t == "lensbook" or t.startswith("lensbook.")}


GRAPH = {module: _imports(module) for module in MODULES}


def _is_front_end(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FRONT_ENDS)


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(frozenset(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [frozenset({"a", "b", "c"})]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_the_package() -> None:
    inner = {m: {t for t in targets if t != "lensbook"} for m, targets in GRAPH.items()}
    inner.pop("lensbook")
    new = [sorted(c) for c in _cycles(inner) if c not in KNOWN_CYCLES]
    assert new == [], f"import cycles: {new}"


def test_only_the_front_ends_import_the_package_root() -> None:
    importers = sorted(m for m, targets in GRAPH.items() if "lensbook" in targets)
    assert importers, "the front ends import the public surface"
    assert [m for m in importers if not _is_front_end(m)] == []


def _public(module: str) -> bool:
    """The root, its non-private modules and subpackages, and documented submodules."""
    if module == "lensbook" or module == "lensbook.review.show":  # postmortems import `show`
        return True
    parts = module.split(".")
    return len(parts) == 2 and not parts[1].startswith("_")


def test_the_front_ends_import_only_the_public_surface_and_their_own_modules() -> None:
    wrong: dict[str, list[str]] = {}
    for module, targets in GRAPH.items():
        if not _is_front_end(module) or module == "lensbook.scenarios.runner":
            continue
        own = "lensbook.notebook" if module.startswith("lensbook.notebook") else module
        for target in targets:
            if target.startswith(own + ".") or target == own or _public(target):
                continue
            if target not in FRONT_END_EXCEPTIONS:
                wrong.setdefault(module, []).append(target)
    assert wrong == {}


def test_the_notebook_views_do_not_import_the_magics() -> None:
    for module, targets in GRAPH.items():
        if module.startswith("lensbook.notebook") and module != "lensbook.notebook":
            assert "lensbook.notebook.magics" not in targets or module == "lensbook.notebook", (
                module
            )


def test_every_published_event_kind_is_an_event_kind() -> None:
    published: dict[str, str] = {}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in ("publish", "_publish", "_emit"):
                continue
            kind = next(
                (
                    a.value
                    for a in node.args[:2]
                    if isinstance(a, ast.Constant) and isinstance(a.value, str)
                ),
                None,
            )
            if kind is not None:
                published[kind] = f"{module}:{node.lineno}"
    assert len(published) > 20  # the operator's, the coordinator's and the watcher's
    assert {k: w for k, w in published.items() if k not in EVENT_KINDS} == {}


def _documentation() -> str:
    texts = [(ROOT / "README.md").read_text(encoding="utf-8")]
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        texts += ["".join(cell["source"]) for cell in cells]
    return "\n".join(texts)


def test_every_public_name_appears_in_the_readme_or_a_notebook() -> None:
    text = _documentation()
    missing = []
    for name in lensbook.__all__:
        # a lower-case name must be used as `lensbook.name` or imported, not just be a word
        pattern = (
            rf"\b{name}\b"
            if name[0].isupper()
            else rf"lensbook\.{name}\b|import [^\n]*\b{name}\b|`{name}`"
        )
        if not re.search(pattern, text):
            missing.append(name)
    assert missing == []
