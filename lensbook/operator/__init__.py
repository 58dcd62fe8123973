"""Operators: the actor, its investigation loop, compaction, and the registry of static ones."""

from __future__ import annotations

from lensbook.operator.actor import Operator
from lensbook.operator.investigation import Investigation, RunSettings

__all__ = ["Investigation", "Operator", "RunSettings"]
