"""The Skill API: what an operator knows about one domain of the runtime.

A skill has an `id` (the prefix of its tools), a `title`, a one-line `description`, a
`system_prompt`, a cheap `snapshot()` and probes: typed methods marked with `@probe`, whose
tool schemas are generated from their signatures and docstrings. Probes run under a time budget
and their output is made JSON-safe, redacted, delimited where it is the process's own text
(`lensbook.skills.untrusted`) and only then capped.

    class Queue(Skill):
        id = "queue"
        title = "Work queue"
        description = "Depth and age of the job queue"
        system_prompt = "You watch the job queue..."

        def snapshot(self) -> dict[str, Any]:
            return {"depth": len(jobs)}

        @probe
        def oldest(self, limit: int = 5) -> list[dict[str, Any]]:
            \"\"\"The oldest jobs waiting. Cost: O(limit), no locks.\"\"\"
            ...

What the coordinator and the watcher need to know of a skill it declares too, as class
attributes: the `keywords` of a question that point at it, the `families` of symptoms its
findings belong to and those it `investigates`, the causal `chains` that start there, and for
the watcher its `counters`, its `unwatched` snapshot keys and whether it is `watched` by
default. `lensbook.skills.knowledge` gathers them from every known skill, built-in or
registered, so a user skill takes part in coordination and watching like a built-in one.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, ClassVar, Protocol, TypeVar, overload, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from pydantic_core import to_jsonable_python

from lensbook.skills.redact import clip, redact, redact_text
from lensbook.skills.rules import Chain
from lensbook.skills.untrusted import ProcessText, delimit, from_process

__all__ = [
    "DEFAULT_BUDGET",
    "DEFAULT_MAX_CHARS",
    "PROBE_ATTR",
    "ProbeTool",
    "Skill",
    "SkillLike",
    "build_args_model",
    "jsonable",
    "outgoing",
    "probe",
    "raised",
    "render_output",
]

DEFAULT_BUDGET = 5.0
DEFAULT_MAX_CHARS = 6000

_PROBE_ATTR = "__lensbook_probe__"
#: the attribute `probe` sets on a function (its options), for code that lists probes cheaply
PROBE_ATTR = _PROBE_ATTR


@dataclass(frozen=True)
class _ProbeOptions:
    budget: float
    max_chars: int
    name: str | None
    intrusive: str | None = None
    #: microseconds, no heap walk, no waiting: triage may call it on every sweep
    cheap: bool = False


F = TypeVar("F", bound=Callable[..., Any])


@overload
def probe(fn: F, /) -> F: ...


@overload
def probe(
    *,
    budget: float = ...,
    max_chars: int = ...,
    name: str | None = ...,
    intrusive: str | None = ...,
    cheap: bool = ...,
) -> Callable[[F], F]: ...


def probe(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    budget: float = DEFAULT_BUDGET,
    max_chars: int = DEFAULT_MAX_CHARS,
    name: str | None = None,
    intrusive: str | None = None,
    cheap: bool = False,
) -> Any:
    """Mark a skill method (or a plain function) as a probe the model may call.

    Its parameters must be typed; its docstring's first paragraph becomes the tool description
    and an ``Args:`` section describes the parameters. `budget` is the wall-time limit in
    seconds, `max_chars` the cap on the JSON output the model sees. `cheap` declares that it
    costs microseconds with its defaults (no heap walk, no waiting), so triage
    (`lensbook.triage()`) may call it when a rule asks for it.

    `intrusive` declares that the probe changes the process (what it changes, e.g.
    ``"tracemalloc"``). Such a probe must enter each change in `lensbook.skills.intrusion`
    with its undo callable and a bounded life, so the run's end, `stop()` and exit undo it.
    """

    def mark(f: Callable[..., Any]) -> Callable[..., Any]:
        if not (f.__doc__ or "").strip():
            raise TypeError(
                f"probe {f.__qualname__} needs a docstring: it is the tool's description"
            )
        options = _ProbeOptions(
            budget=budget, max_chars=max_chars, name=name, intrusive=intrusive, cheap=cheap
        )
        setattr(f, _PROBE_ATTR, options)
        return f

    return mark(fn) if fn is not None else mark


@runtime_checkable
class SkillLike(Protocol):
    """What lensbook needs of a skill; `Skill` subclasses meet it, other objects may too."""

    @property
    def id(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def description(self) -> str: ...

    @property
    def system_prompt(self) -> str: ...

    def snapshot(self) -> dict[str, Any]: ...

    def probes(self) -> list[ProbeTool]: ...


class Skill:
    """Base class of built-in and user skills. Subclasses set the class attributes."""

    id: ClassVar[str] = ""
    title: ClassVar[str] = ""
    description: ClassVar[str] = ""
    system_prompt: ClassVar[str] = ""
    #: Opt-in to sending values (not only names, types, sizes) of user data this skill sees.
    share_values: bool = False
    #: Opt-in to sending other processes' command lines (redacted, then cut); None follows
    #: ``$LENSBOOK_SHARE_COMMAND_LINES``. Without it a process is its executable name and pid.
    share_command_lines: bool | None = None

    # -- what the coordinator and the watcher know of this skill (`lensbook.skills.knowledge`)
    #: words of a question that point at this skill (matched as word prefixes)
    keywords: ClassVar[tuple[str, ...]] = ()
    #: family of symptoms -> the anomaly types of this skill's findings in it
    families: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: the families this skill's operator investigates: the coordinator invokes it for them
    investigates: ClassVar[tuple[str, ...]] = ()
    #: known causal chains that start with a family this skill investigates
    chains: ClassVar[tuple[Chain, ...]] = ()
    #: patterns naming a culprit in this skill's notifications (besides file:line, quoted and
    #: dotted names); the pattern's first group, when it has one, is the culprit
    culprit_patterns: ClassVar[tuple[re.Pattern[str], ...]] = ()
    #: snapshot keys that only grow: watched as per-second rates (as every ``*_total`` is)
    counters: ClassVar[frozenset[str]] = frozenset()
    #: snapshot keys not watched: clocks, limits, host-wide figures other processes move
    unwatched: ClassVar[frozenset[str]] = frozenset()
    #: whether `lensbook.watch()` with no skills watches this one
    watched: ClassVar[bool] = False

    def snapshot(self) -> dict[str, Any]:
        """A flat map of the key numbers. Must be cheap: it never walks the heap."""
        return {}

    def probes(self) -> list[ProbeTool]:
        """The probes of this skill, as tools named ``<id>_<method>``."""
        found: list[ProbeTool] = []
        for attr in sorted(dir(type(self))):
            member = getattr(type(self), attr, None)
            if callable(member) and hasattr(member, _PROBE_ATTR):
                found.append(ProbeTool.from_function(getattr(self, attr), prefix=self.id))
        return found

    def rules(self) -> Sequence[Any]:
        """Rules the offline investigator applies for this skill (see `lensbook.rules`)."""
        return ()

    def command_line(self, argv: Sequence[str], limit: int = 300) -> ProcessText | None:
        """Another process's command line as it may be shown, or None without the opt-in.

        A command line is where passwords go (``mysql -pX``, ``--api-key X``): it is shown
        only when the user opted in (`share_command_lines`), and then redacted before it is cut.
        """
        if not self.shares_command_lines():
            return None
        return from_process(clip(" ".join(argv), limit))

    def shares_command_lines(self) -> bool:
        """Whether other processes' command lines may be shown (see `share_command_lines`)."""
        if self.share_command_lines is not None:
            return self.share_command_lines
        flag = os.environ.get("LENSBOOK_SHARE_COMMAND_LINES", "")
        return flag.strip().lower() in ("1", "true", "yes", "on")

    def __repr__(self) -> str:
        return f"<skill {self.id!r}: {self.title}>"


@dataclass(eq=False)
class ProbeTool:
    """A probe bound to its skill: name, description, argument model, and options."""

    fn: Callable[..., Any]
    _: KW_ONLY
    name: str
    description: str
    args_model: type[BaseModel]
    budget: float
    max_chars: int
    #: what the probe changes in the process (None: it only observes)
    intrusive: str | None = None
    cheap: bool = False
    is_async: bool = field(init=False)

    def __post_init__(self) -> None:
        self.is_async = inspect.iscoroutinefunction(self.fn)

    @classmethod
    def from_function(
        cls, fn: Callable[..., Any], *, prefix: str = "", name: str | None = None
    ) -> ProbeTool:
        options: _ProbeOptions = getattr(fn, _PROBE_ATTR, None) or _ProbeOptions(
            DEFAULT_BUDGET, DEFAULT_MAX_CHARS, None
        )
        base = name or options.name or fn.__name__
        full = base if not prefix or base.startswith(prefix + "_") else f"{prefix}_{base}"
        description, arg_docs = parse_docstring(fn.__doc__ or "")
        return cls(
            fn,
            name=full,
            description=description,
            args_model=build_args_model(fn, arg_docs, model_name=full),
            budget=options.budget,
            max_chars=options.max_chars,
            intrusive=options.intrusive,
            cheap=options.cheap,
        )

    @property
    def input_schema(self) -> dict[str, Any]:
        return tool_schema(self.args_model)

    def validate(self, arguments: Any) -> dict[str, Any]:
        """Validated keyword arguments; raises `ValueError` with a readable message."""
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise ValueError(f"arguments must be a JSON object, got {type(arguments).__name__}")
        try:
            parsed = self.args_model.model_validate(arguments)
        except ValidationError as exc:
            raise ValueError(_validation_message(exc)) from None
        return {k: getattr(parsed, k) for k in type(parsed).model_fields}


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a docstring into its description and its ``Args:`` entries."""
    doc = inspect.cleandoc(doc)
    parts = re.split(r"^\s*(?:Args|Arguments|Parameters):\s*$", doc, maxsplit=1, flags=re.M)
    description = parts[0].strip()
    args: dict[str, str] = {}
    if len(parts) == 2:
        current = ""
        for line in parts[1].splitlines():
            match = re.match(r"^\s{0,8}(\w+)\s*(?:\([^)]*\))?:\s*(.*)$", line)
            if match:
                current = match.group(1)
                args[current] = match.group(2).strip()
            elif current and line.strip():
                if re.match(r"^\S", line):  # a new section (Returns:, Cost:, ...)
                    current = ""
                    continue
                args[current] += " " + line.strip()
    return description, args


def build_args_model(
    fn: Callable[..., Any], arg_docs: dict[str, str] | None = None, *, model_name: str = "Args"
) -> type[BaseModel]:
    """A pydantic model of `fn`'s parameters (all must be annotated), extra keys forbidden,
    numbers finite: a NaN (which JSON text from a model may carry) passes every ``min``/``max``
    clamp and would make a time limit or a wait never end, or end at once."""
    arg_docs = arg_docs or {}
    hints = typing.get_type_hints(fn)
    fields: dict[str, Any] = {}
    for pname, param in inspect.signature(fn).parameters.items():
        if pname in ("self", "cls") or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if pname not in hints:
            raise TypeError(f"parameter {pname!r} of {fn.__qualname__} needs a type annotation")
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[pname] = (hints[pname], Field(default, description=arg_docs.get(pname)))
    model: type[BaseModel] = create_model(
        model_name, __config__=ConfigDict(extra="forbid", allow_inf_nan=False), **fields
    )
    return model


def tool_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of an argument model, without pydantic's titles (noise for a model)."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        if isinstance(prop, dict):
            prop.pop("title", None)
    schema.setdefault("properties", {})
    return schema


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ())) or "arguments"
        parts.append(f"{loc}: {err.get('msg')}")
    return "invalid arguments: " + "; ".join(parts)


def jsonable(value: Any) -> Any:
    """Any value made JSON-safe (unknown objects become their repr, bounded)."""
    return to_jsonable_python(value, fallback=lambda v: _short_repr(v), serialize_unknown=True)


def _short_repr(value: Any, limit: int = 200) -> str:
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<unrepresentable {type(value).__name__}: {exc}>"
    return clip(text, limit)


def outgoing(value: Any) -> Any:
    """`value` as it may leave the process: JSON-safe, redacted, process text delimited.

    The one preparation of what a probe or snapshot returns, before anything cuts it. Strings
    marked with `lensbook.skills.untrusted.from_process` (in dicts, their keys too, lists and
    tuples) are redacted, then wrapped in the data delimiters.
    """
    return redact(jsonable(_delimit_marked(value)))


def _delimit_marked(value: Any) -> Any:
    if isinstance(value, ProcessText):
        return delimit(redact_text(value))
    if isinstance(value, dict):
        # a key can be process text too (counts by type name, by thread name)
        return {_delimit_marked(k): _delimit_marked(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_delimit_marked(v) for v in value]
    return value


def raised(tool: str, exc: BaseException) -> str:
    """The error result of a tool that raised: its message is the process's text, delimited."""
    try:
        message = str(exc)
    except Exception:
        message = "<str() failed>"
    return f"{tool} raised {type(exc).__name__}: " + delimit(clip(message, 2000))


def render_output(value: Any, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """JSON text of a result (see `outgoing`), capped at `max_chars`.

    Everything is redacted before the cap cuts it; non-ASCII text (and the data delimiters)
    is kept as it is rather than escaped, so the model reads what the process wrote.
    """
    text = json.dumps(outgoing(value), separators=(",", ":"), default=str, ensure_ascii=False)
    if len(text) > max_chars:
        cut = len(text) - max_chars
        text = text[:max_chars] + f"...[truncated {cut} chars]"
    return text
