"""Writing a postmortem notebook from recorded runs, executing it, exporting it to HTML.

`postmortem(runs, output)` copies the records into a folder beside the notebook
(``review.records/``; a coordinator run brings the records of its operator runs), so the
notebook and its evidence travel together and outlive the records folder's retention. It then
writes an nbformat notebook whose cells load those copies: for each run, what was asked, when and
where (facts from the record, as Markdown), the summary, the timeline chart, each finding with
its evidence, a coordinator's insights, the history around the incident when the record has one,
and the replay cell that proves the record still gives the same notifications (offline: the
model's turns and the probes' answers both come from the record). By default the notebook is
executed once with nbclient in a fresh kernel, so it is saved with its outputs; `html=True`
also exports it through nbconvert as one self-contained HTML file (images inline).

The list of runs is generic: operator runs, coordinator runs, and any future group of records
(a cluster run's worker records) are sections of one notebook, in the order given.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lensbook._errors import LensbookError
from lensbook.records._writer import create_private, is_own_record
from lensbook.records.reader import RecordError, Run, load_run

__all__ = [
    "Postmortem",
    "PostmortemError",
    "export_html",
    "find_record",
    "postmortem",
]

#: seconds a cell of the generated notebook may run when it is executed
CELL_TIMEOUT = 120


class PostmortemError(LensbookError):
    """The notebook was written but could not be executed (its path is in the message)."""


@dataclass
class Postmortem:
    """A written postmortem: the notebook's path, the HTML export's (if any), the runs."""

    path: Path
    html_path: Path | None
    runs: list[Run]
    executed: bool

    def __repr__(self) -> str:
        lines = [
            f"postmortem notebook {self.path} ({len(self.runs)} run(s)"
            f"{', executed' if self.executed else ''})"
        ]
        if self.html_path is not None:
            lines.append(f"HTML export {self.html_path}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        import html

        link = f'<a href="{html.escape(self.path.name)}">{html.escape(str(self.path))}</a>'
        extra = ""
        if self.html_path is not None:
            extra = (
                f' · <a href="{html.escape(self.html_path.name)}">'
                f"{html.escape(self.html_path.name)}</a>"
            )
        return f"<div>postmortem notebook {link}{extra} ({len(self.runs)} run(s))</div>"


def find_record(
    name: str | os.PathLike[str], directory: str | os.PathLike[str] | None = None
) -> Path:
    """A record by path, or by run id (or a unique prefix of one) in the records folder."""
    path = Path(name)
    if path.exists():
        return path
    from lensbook.records import writer

    folder = Path(directory) if directory is not None else writer.directory
    text = str(name)
    found = sorted(folder.glob(f"*-{text}*.jsonl")) if folder.is_dir() and text else []
    found = [p for p in found if p.stem.rsplit("-", 1)[-1].startswith(text)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise RecordError(f"run id {text!r} matches {len(found)} records in {folder}; give more")
    raise RecordError(f"no record {text!r}: not a file, nor a run id in {folder}")


def _as_runs(runs: Run | str | os.PathLike[str] | Iterable[Any]) -> list[Run]:
    if isinstance(runs, (Run, str, os.PathLike)):
        items: list[Any] = [runs]
    else:
        items = list(runs)
    if not items:
        raise ValueError("postmortem needs at least one recorded run")
    loaded: list[Run] = []
    for item in items:
        if isinstance(item, Run):
            loaded.append(item)
        elif Path(item).is_dir():  # a folder of grouped runs (a Dask cluster run): each of them
            members = sorted(p for p in Path(item).glob("*.jsonl") if is_own_record(p))
            if not members:
                raise RecordError(f"no records in the folder {item}")
            loaded += [load_run(m) for m in members]
        else:
            loaded.append(load_run(find_record(item)))
    return loaded


def _secure_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # mkdir's mode is cut by the umask, and the folder may exist


def _write_private(path: Path, nb: Any, nbformat: Any) -> None:
    """The notebook, 0600 like the records it shows (its outputs hold what they hold)."""
    with create_private(path, replace=True) as out:
        nbformat.write(nb, out)


def _copy_record(source: Path, folder: Path) -> Path:
    target = folder / source.name
    if source.resolve() != target.resolve():
        shutil.copyfile(source, target)
        os.chmod(target, 0o600)
    return target


def _related(run: Run) -> list[Path]:
    """The records a run needs beside it to replay: a coordinator's operator runs."""
    needed = []
    for entry in run.operator_records:
        name = entry.get("record")
        path = run.beside(name)
        if path is not None:
            if not path.exists():
                raise RecordError(
                    f"{run.path}: the coordinator run cites operator record {name}, which is "
                    f"not beside it in {run.path.parent}"
                )
            needed.append(path)
    return needed


def postmortem(
    runs: Run | str | os.PathLike[str] | Sequence[Any],
    output: str | os.PathLike[str] | None = None,
    *,
    html: bool = False,
    execute: bool = True,
    title: str | None = None,
) -> Postmortem:
    """Write a postmortem notebook of one or more recorded runs (see the module docstring).

    `runs`: a `Run`, a record path or run id, or a list of them. `output`: the notebook's
    path (default ``postmortem-<run id>.ipynb``; its records go to ``<stem>.records/`` beside
    it). `execute`: run it once so it is saved with
    its outputs (needs a Python kernel; a few seconds). `html`: also write ``<stem>.html``.
    """
    nbformat = _nbformat()

    loaded = _as_runs(runs)
    path = Path(output) if output is not None else Path(f"postmortem-{loaded[0].run_id}.ipynb")
    if path.suffix != ".ipynb":
        raise ValueError(f"the postmortem notebook's name must end in .ipynb, not {path.name!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    # each run given, then the runs it groups (a coordinator's operator runs), in order; all
    # found before anything is copied, so a missing one leaves nothing half-written
    sources: list[tuple[Path, str | None]] = []
    for run in loaded:
        sources.append((run.path, None))
        sources += [(p, run.run_id) for p in _related(run)]
    folder = path.with_name(path.stem + ".records")
    _secure_dir(folder)
    copies = [(_copy_record(source, folder), parent) for source, parent in sources]
    local = [load_run(c) for c, _ in copies]
    relative = [os.path.relpath(c, path.parent) for c, _ in copies]
    nb = _notebook(local, relative, [parent for _, parent in copies], title)
    _write_private(path, nb, nbformat)  # first without outputs: a failed execution loses nothing
    if execute:
        try:
            _execute(nb, path.parent)
        except Exception as exc:
            first = str(exc).strip().splitlines()[-1:] or [type(exc).__name__]
            raise PostmortemError(
                f"{path} is written, but running it failed ({type(exc).__name__}: {first[0]}); "
                "open it to see where, or write it with execute=False (--no-execute)"
            ) from exc
        _write_private(path, nb, nbformat)
    html_path = export_html(path, nb) if html else None
    return Postmortem(path, html_path, local, execute)


#: variables the kernel that runs a postmortem does not get: it runs offline by construction
_KEYS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "LENSBOOK_CLIENT_REGISTRY")


def _execute(nb: Any, where: Path) -> None:
    from nbclient import NotebookClient

    # the kernel's own environment (this process's stays as it is: a live run may need a key)
    env = {k: v for k, v in os.environ.items() if k not in _KEYS}
    env.setdefault("MPLBACKEND", "agg")
    NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(where)}},
    ).execute(env=env)


#: nbconvert's lab template without the scripts it fetches from a CDN (require.js, MathJax,
#: mermaid): a postmortem has no widgets, maths or diagrams, and the file must open offline
_SELF_CONTAINED = """{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def export_html(path: Path, nb: Any | None = None) -> Path:
    """The notebook as one self-contained HTML file beside it: styles and images inline, no
    script fetched from anywhere."""
    import jinja2
    import nbconvert

    nbformat = _nbformat()
    exporter_class: Any = nbconvert.HTMLExporter  # nbconvert is untyped
    notebook = nb if nb is not None else nbformat.read(path, as_version=4)
    exporter = exporter_class(
        extra_loaders=[jinja2.DictLoader({"lensbook-postmortem.html.j2": _SELF_CONTAINED})],
        template_file="lensbook-postmortem.html.j2",
        embed_images=True,
    )
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(notebook)
    target = path.with_suffix(".html")
    with create_private(target, replace=True) as out:
        out.write(body)
    return target


# -- the notebook ---------------------------------------------------------------------------


def _nbformat() -> Any:
    """nbformat, untyped: its calls are confined to this module."""
    import nbformat

    module: Any = nbformat
    return module


def _md(text: str) -> Any:
    return _nbformat().v4.new_markdown_cell(text)


def _code(text: str) -> Any:
    return _nbformat().v4.new_code_cell(text)


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


def _quote(text: str) -> str:
    return "\n".join("> " + line for line in (text or "(no reason given)").splitlines())


def _notebook(
    runs: list[Run], paths: list[str], parents: list[str | None], title: str | None
) -> Any:
    from lensbook._version import __version__

    first = runs[0]
    heading = title or f"Postmortem: {first.context.get('reason') or first.operator}"
    cells = [
        _md(
            f"# {heading}\n\n"
            f"Written by `lensbook postmortem` ({__version__}) on {_when(time.time())} from "
            f"{len(runs)} recorded run(s), copied beside this notebook. It runs top to bottom "
            "offline, with no API key: every cell reads the records, and the replay cells take "
            "the model's turns and the probes' answers from them."
        ),
        _code(
            "import lensbook\n"
            "from lensbook.review import show\n\n"
            "lensbook.records.configure(enabled=False)  # replaying here records nothing new\n"
            f"runs = [lensbook.load_run(p) for p in {paths!r}]"
        ),
    ]
    for i, run in enumerate(runs):
        cells += _section(i, run, len(runs), parents[i])
    nb = _nbformat().v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["lensbook"] = {"postmortem_of": [r.run_id for r in runs]}
    return nb


def _section(i: int, run: Run, total: int, parent: str | None) -> list[Any]:
    where = run.where
    kind = "coordinator" if run.kind == "coordinator" else "operator"
    ended = run.events[-1]["at"] if run.events else run.started_at
    number = f"{i + 1}. " if total > 1 else ""
    facts = "\n".join(
        [
            "| | |",
            "|---|---|",
            f"| run | `{run.run_id}` ({kind} `{run.operator}`, skill `{run.skill}`) |"
            if kind == "operator"
            else f"| run | `{run.run_id}` (coordinator `{run.operator}`) |",
            f"| when | {_when(run.started_at)}, {ended - run.started_at:.1f} s |",
            f"| host | `{where['host']}` (pid {where['pid']}) |",
            f"| Python | {where['python']} |",
            f"| lensbook | {where['lensbook']} |",
            f"| client | {where['client'] or '(not recorded)'} |",
            f"| record | `{run.path.name}`{'' if run.complete else ' (CUT SHORT)'} |",
        ]
    )
    if parent is not None:
        heading = f"## {number}Operator run `{run.operator}`, started by coordinator run `{parent}`"
    else:
        label = "Coordinator run" if kind == "coordinator" else "Run"
        heading = f"## {number}{label} `{run.run_id}`"
    cells = [
        _md(
            f"{heading}\n\n### What was asked\n\n{_quote(str(run.context.get('reason') or ''))}\n\n"
            f"### When and where\n\n{facts}"
        ),
        _md("### Summary"),
        _code(f"# NBVAL_CHECK_OUTPUT\nrun = runs[{i}]\nprint(run.summary())"),
        _md(
            "### Timeline\n\nThe run's metrics over time. Size metrics keep zero on their axis and "
            "each panel's title states the change; notifications (dashed) and state changes "
            "(dotted) are marked on the time axis. The text alternative is under the chart."
        ),
        _code(f"show.timeline(runs[{i}])"),
    ]
    if run.kind == "coordinator":
        cells += [
            _md("### Insights\n\nHow the coordinator linked its operators' notifications."),
            _code(f"# NBVAL_CHECK_OUTPUT\nshow.insights(runs[{i}])"),
        ]
    cells += [
        _md(
            "### Findings\n\nEach notification, with what moved between the snapshots it cites "
            "(old -> new, rate), the probe results it rests on, and the full snapshots one "
            "click away."
        ),
        _code(f"# NBVAL_CHECK_OUTPUT\nshow.findings(runs[{i}])"),
        _md("### History around the incident"),
        _code(f"show.history(runs[{i}])"),
        _md(
            "### Replay\n\nThe record replayed with `tools='record'`: the model's turns and the "
            "probes' answers come from the record, so this proves, offline, that the record "
            "still gives the same notifications."
        ),
        _code(
            f"# NBVAL_CHECK_OUTPUT\nagain = lensbook.replay(runs[{i}], tools='record')\n"
            "print('same notifications:', again.same_notifications)"
        ),
    ]
    return cells
