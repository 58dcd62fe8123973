"""What the skills declare about themselves, gathered for the coordinator, triage and the watcher.

A skill states what others need to know of it as class attributes (see `Skill`): the keywords
of a question that point at it, the families of symptoms its findings belong to (its rules may
add theirs, `Rule.families`), the families it investigates, the causal chains that start with
them, the culprit patterns of its notifications, and for the watcher its counters, its
unwatched keys and whether it is watched by default. `gather()` reads them from every skill
`skill_ids()` knows, built-ins first, then registered ones, so a `register_skill` skill is a
full citizen: the offline coordinator dispatches it from evidence and follows its chains, and
the watcher reads its snapshot as it reads a built-in's.

Knowledge is read from the skill instances `resolve_skill` shares (their rules need one); the
result is cached until the set of registered skills changes. A skill that cannot be resolved
is left out rather than breaking coordination.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lensbook.skills import _registered, resolve_skill, skill_ids
from lensbook.skills.rules import Chain

__all__ = ["Knowledge", "gather"]


@dataclass(frozen=True)
class Knowledge:
    """Every known skill's declarations, merged in skill order."""

    #: family of symptoms -> anomaly types in it
    families: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: family -> the skills whose operators investigate it, in skill order
    family_skills: dict[str, tuple[str, ...]] = field(default_factory=dict)
    chains: tuple[Chain, ...] = ()
    #: skill id -> the words of a question that point at it
    keywords: dict[str, tuple[str, ...]] = field(default_factory=dict)
    culprit_patterns: tuple[re.Pattern[str], ...] = ()
    counters: frozenset[str] = frozenset()
    unwatched: frozenset[str] = frozenset()
    #: skill ids watched when `lensbook.watch()` is given none
    watched: tuple[str, ...] = ()

    def family_of(self, anomaly_type: str) -> str | None:
        """The family an anomaly type belongs to (the first that declares it), or None."""
        for family, types in self.families.items():
            if anomaly_type in types:
                return family
        return None

    def investigators(self, anomaly_type: str) -> tuple[str, ...]:
        """The skills whose operators investigate an anomaly type's family (none if unknown)."""
        family = self.family_of(anomaly_type)
        return self.family_skills.get(family, ()) if family else ()

    def named(self, words: Iterable[str]) -> list[str]:
        """The skills whose keywords start one of `words`, in skill order."""
        words = list(words)
        return [
            skill
            for skill, keys in self.keywords.items()
            if any(w.startswith(k) for w in words for k in keys)
        ]


_cache: tuple[tuple[tuple[str, int], ...], Knowledge] | None = None


def gather() -> Knowledge:
    """The knowledge of every skill known now (cached while the registered skills stay)."""
    global _cache
    # the built-ins never change: only registrations (a new id, or an id registered again) do
    key = tuple((sid, id(skill)) for sid, skill in _registered.items())
    if _cache is not None and _cache[0] == key:
        return _cache[1]
    knowledge = _merge(skill_ids())
    _cache = (key, knowledge)
    return knowledge


def _merge(ids: Iterable[str]) -> Knowledge:
    families: dict[str, list[str]] = {}
    family_skills: dict[str, list[str]] = {}
    chains: list[Chain] = []
    keywords: dict[str, tuple[str, ...]] = {}
    patterns: list[re.Pattern[str]] = []
    counters: set[str] = set()
    unwatched: set[str] = set()
    watched: list[str] = []
    for sid in ids:
        try:
            skill = resolve_skill(sid)
            declared = [_families(skill)]
            declared += [_families(rule) for rule in getattr(skill, "rules", lambda: ())()]
        except Exception:  # a user skill that fails to build must not break coordination
            continue
        for found in declared:
            for family, types in found.items():
                kept = families.setdefault(family, [])
                kept.extend(t for t in types if t not in kept)
        for family in getattr(skill, "investigates", ()):
            families.setdefault(family, [])
            family_skills.setdefault(family, []).append(sid)
        chains.extend(c for c in getattr(skill, "chains", ()) if c not in chains)
        if getattr(skill, "keywords", ()):
            keywords[sid] = tuple(skill.keywords)  # type: ignore[attr-defined]
        patterns.extend(getattr(skill, "culprit_patterns", ()))
        counters.update(getattr(skill, "counters", ()))
        unwatched.update(getattr(skill, "unwatched", ()))
        if getattr(skill, "watched", False):
            watched.append(sid)
    return Knowledge(
        families={f: tuple(t) for f, t in families.items()},
        family_skills={f: tuple(s) for f, s in family_skills.items()},
        chains=tuple(chains),
        keywords=keywords,
        culprit_patterns=tuple(patterns),
        counters=frozenset(counters),
        unwatched=frozenset(unwatched),
        watched=tuple(watched),
    )


def _families(declarer: Any) -> Mapping[str, tuple[str, ...]]:
    found = getattr(declarer, "families", None)
    return found if isinstance(found, Mapping) else {}
