"""The intrusion ledger: every change has an undo that runs once, on time, whoever drains first."""

from __future__ import annotations

import threading

import pytest

from lensbook.skills import intrusion


def test_a_change_is_undone_once_and_leaves_the_ledger() -> None:
    undone: list[str] = []
    change = intrusion.switch_on("flag", lambda: undone.append("x"), max_seconds=60)
    assert change in intrusion.active() and not change.undone
    assert change.undo("first") is True
    assert change.undo("second") is False
    assert undone == ["x"] and change.undone_by == "first"
    assert change not in intrusion.active()


def test_the_time_limit_undoes_a_forgotten_change() -> None:
    done = threading.Event()
    change = intrusion.switch_on("forgotten", done.set, max_seconds=0.2)
    assert done.wait(20) and change.wait(20)
    assert change.undone_by == "time limit"


@pytest.mark.parametrize("limit", [float("nan"), float("inf"), -5.0])
def test_a_time_limit_with_no_bound_ends_the_change_at_once(limit: float) -> None:
    done = threading.Event()
    change = intrusion.switch_on("unbounded", done.set, max_seconds=limit)
    assert change.max_seconds == 0.0
    assert done.wait(20) and change.undone_by == "time limit"


def test_a_run_undoes_what_it_made_and_refuses_later_changes() -> None:
    undone: list[str] = []
    with intrusion.run_scope("run-a"):
        mine = intrusion.switch_on("a", lambda: undone.append("a"), max_seconds=60)
    other = intrusion.switch_on("b", lambda: undone.append("b"), max_seconds=60)
    assert intrusion.undo_owned_by("run-a") == 1
    assert undone == ["a"] and mine.undone and not other.undone
    # a probe its run abandoned asks after the run ended: switched off at once, and told
    with intrusion.run_scope("run-a"), pytest.raises(intrusion.RunEnded):
        intrusion.switch_on("late", lambda: undone.append("late"), max_seconds=60)
    assert undone == ["a", "late"]
    other.undo()


def test_undo_never_raises_and_undo_all_drains_everything() -> None:
    def broken() -> None:
        raise OSError("cannot undo")

    intrusion.switch_on("broken", broken, max_seconds=60)
    session = intrusion.switch_on("observer", lambda: None, max_seconds=None, session=True)
    assert session.owner is None
    assert intrusion.undo_all("test") >= 2
    assert intrusion.active() == []


def test_a_window_is_undone_when_its_block_ends_even_by_an_exception() -> None:
    state = {"on": True}
    with (
        pytest.raises(RuntimeError),
        intrusion.window("w", lambda: state.update(on=False), max_seconds=60),
    ):
        raise RuntimeError("probe failed")
    assert state == {"on": False}
