"""Skills: the Skill API and the built-in skills, found by id."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lensbook._errors import UnknownSkill
from lensbook.skills.base import ProbeTool, Skill, SkillLike, probe
from lensbook.skills.untrusted import from_process

if TYPE_CHECKING:
    from lensbook.skills.external import ExternalProcessSkill

__all__ = [
    "BUILTIN_SKILLS",
    "ExternalProcessSkill",
    "ProbeTool",
    "Skill",
    "SkillLike",
    "builtin_ids",
    "from_process",
    "probe",
    "register_skill",
    "resolve_skill",
    "skill_ids",
]

#: Built-in skill id -> "module:Class", imported only when first used.
BUILTIN_SKILLS: dict[str, str] = {
    "runtime": "lensbook.skills.runtime:RuntimeSkill",
    "memory": "lensbook.skills.memory:MemorySkill",
    "gc": "lensbook.skills.gc_:GCSkill",
    "threads": "lensbook.skills.threads:ThreadsSkill",
    "asyncio": "lensbook.skills.aio:AsyncioSkill",
    "process": "lensbook.skills.process:ProcessSkill",
    "system": "lensbook.skills.system:SystemSkill",
    "kernel": "lensbook.skills.kernel:KernelSkill",
    "logs": "lensbook.skills.logs:LogsSkill",
    "exceptions": "lensbook.skills.exceptions:ExceptionsSkill",
    "tracer": "lensbook.skills.tracer:TracerSkill",
}

_registered: dict[str, type[Skill] | SkillLike] = {}
_instances: dict[str, SkillLike] = {}


def builtin_ids() -> list[str]:
    """Ids of every built-in skill, in a stable order."""
    return list(BUILTIN_SKILLS)


def skill_ids() -> list[str]:
    """Ids of every skill that can be found by id: built-ins, then registered user skills."""
    return [*BUILTIN_SKILLS, *(s for s in _registered if s not in BUILTIN_SKILLS)]


def register_skill(skill: type[Skill] | SkillLike) -> None:
    """Make a user skill findable by its id (`lensbook.run("myskill")`).

    What it declares (keywords, families, chains, counters: see `Skill`) then reaches triage,
    the coordinator and the watcher as a built-in's does (`lensbook.skills.knowledge`).
    """
    sid = skill.id
    if not sid:
        raise ValueError("a skill needs a non-empty id")
    _registered[sid] = skill
    _instances.pop(sid, None)


def resolve_skill(skill: str | type[Skill] | SkillLike | Any) -> SkillLike:
    """The skill instance for an id, a Skill subclass, or an object meeting `SkillLike`.

    Built-in and registered skills resolve to one shared instance per id, so their state
    (samplers, ring buffers) is kept between runs.
    """
    if isinstance(skill, str):
        if skill in _instances:
            return _instances[skill]
        if skill in _registered:
            instance = _instantiate(_registered[skill])
        elif skill in BUILTIN_SKILLS:
            module_name, cls_name = BUILTIN_SKILLS[skill].split(":")
            cls = getattr(importlib.import_module(module_name), cls_name)
            instance = cls()
        else:
            known = ", ".join(sorted({*BUILTIN_SKILLS, *_registered}))
            raise UnknownSkill(f"no skill {skill!r}; known skills: {known}")
        _instances[skill] = instance
        return instance
    if isinstance(skill, type):
        if not issubclass(skill, Skill):
            raise TypeError(f"{skill!r} is not a Skill subclass")
        existing = _instances.get(skill.id)
        if existing is not None and type(existing) is skill:
            return existing
        return skill()
    if isinstance(skill, SkillLike):
        return skill
    raise TypeError(
        f"expected a skill id, a Skill subclass or a skill object, got {type(skill).__name__}"
    )


def _instantiate(skill: type[Skill] | SkillLike) -> SkillLike:
    if isinstance(skill, type):
        instance: SkillLike = skill()
        return instance
    return skill


def __getattr__(name: str) -> Any:
    # the skill for another process (`lensbook run --pid`) needs psutil: it is imported when
    # first asked for, not with the package
    if name == "ExternalProcessSkill":
        from lensbook.skills.external import ExternalProcessSkill

        return ExternalProcessSkill
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
