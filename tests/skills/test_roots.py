"""What keeps objects alive, named in the user's terms with the fix for well-known retainers."""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from lensbook.skills._roots import fix_for
from lensbook.skills.base import render_output
from lensbook.skills.memory import MemorySkill
from lensbook.skills.untrusted import undelimit


class AuditHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        pass


class Ledger:
    def __init__(self, n: int) -> None:
        self.entries = list(range(n))

    @functools.lru_cache(maxsize=None)  # noqa: B019, UP033 - the retainer under test
    def total(self, scale: int) -> int:
        return sum(self.entries) * scale


class Chart:
    def __repr__(self) -> str:
        return "<chart>"


def _chains(type_name: str) -> list[dict[str, Any]]:
    # the process's names in the chains are marked as untrusted text: read them unmarked
    found = undelimit(
        json.loads(render_output(MemorySkill().referrers(type_name, max_depth=8), 100_000))
    )
    chains: list[dict[str, Any]] = found["chains"]
    return chains


@pytest.fixture
def audit_logger() -> Iterator[logging.Logger]:
    log = logging.getLogger("lensbook-test.audit")
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)


def test_handlers_added_per_call_are_held_by_the_loggers_handler_list(
    audit_logger: logging.Logger,
) -> None:
    for _ in range(30):
        audit_logger.addHandler(AuditHandler())  # the bug: a handler per request
    (chain,) = _chains("AuditHandler")
    assert chain["chain"].endswith("held by the handler list of logger 'lensbook-test.audit'")
    assert "removeHandler" in chain["fix"]


def test_instances_in_an_lru_cache_on_a_method_name_the_cache() -> None:
    ledgers = [Ledger(10) for _ in range(20)]
    for ledger in ledgers:
        ledger.total(2)
    del ledgers
    try:
        chains = _chains("Ledger")
    finally:
        Ledger.total.cache_clear()
    assert chains and all("@functools.lru_cache" in c["chain"] for c in chains)
    assert chains[0]["chain"].endswith(f"{__name__}.Ledger.total")
    assert f"{__name__}.Ledger.total.cache_clear()" in chains[0]["fix"]


def test_a_result_held_only_by_ipythons_output_cache_names_out_n() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell: Any = InteractiveShell.instance()
    shell.user_ns["Chart"] = Chart
    with contextlib.redirect_stdout(io.StringIO()):
        for cell in ("c = Chart()", "c", "del c", "1", "2", "3"):
            shell.run_cell(cell, store_history=True).raise_error()
    try:
        chains = _chains(f"{__name__}.Chart")
    finally:
        with contextlib.redirect_stdout(io.StringIO()):
            shell.run_line_magic("reset", "-f out")
    text = " ".join(c["chain"] for c in chains)
    assert "held by IPython's output cache" in text, chains
    assert "%reset -f out" in (fix_for(text) or "")
