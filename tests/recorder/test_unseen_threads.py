"""Threads started before the recorder: their start was never seen, so the threads skill says
what they run and where they were when lensbook loaded (a real child process whose threads
start before its first `recorder.start`)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.scenarios._children import run_python
from tests.skills._probes import unmarked

_CHILD = textwrap.dedent(
    """
    import json
    import threading

    stop = threading.Event()
    ready = threading.Barrier(3)


    def poll_feed(started):
        started.wait()
        while not stop.wait(0.05):  # the poller's wait
            pass


    def poll_late(started):  # (a stack of its own: list_threads groups threads by stack)
        poll_feed(started)


    class Uploader(threading.Thread):
        def run(self):
            ready.wait()
            stop.wait()  # the uploader's wait


    threading.Thread(target=poll_feed, args=(ready,), name="feed-poller", daemon=True).start()
    Uploader(name="uploader", daemon=True).start()
    ready.wait(30)

    from lensbook import recorder
    from lensbook.skills.base import render_output
    from lensbook.skills.threads import ThreadsSkill

    recorder.start("child", sample_interval=None)
    late = threading.Barrier(2)
    later = threading.Thread(target=poll_late, args=(late,), name="late-poller", daemon=True)
    later.start()  # seen starting: named by its starter, as before
    late.wait(30)
    listed = render_output(ThreadsSkill().list_threads(limit=50), 100_000)
    stop.set()
    recorder.stop("child")
    print(listed)
    """
)


def _line(marker: str) -> int:
    return next(i for i, line in enumerate(_CHILD.splitlines(), 1) if marker in line)


def test_threads_alive_before_the_recorder_say_what_they_run_and_where(tmp_path: Path) -> None:
    script = tmp_path / "feeds.py"
    script.write_text(_CHILD)
    listed = json.loads(unmarked(run_python([str(script)], cwd=tmp_path)))
    groups = {g["threads"][0]["name"]: g for g in listed["groups"]}
    # a target function: where it is defined, and the user's frame it was waiting in
    assert groups["feed-poller"]["started_by"] == (
        f"started before lensbook loaded; runs poll_feed at feeds.py:{_line('def poll_feed')} "
        f"(was at feeds.py:{_line('# the poller')} in poll_feed then)"
    )
    # a subclass overriding run(): its run method
    assert groups["uploader"]["started_by"] == (
        f"started before lensbook loaded; runs Uploader.run at feeds.py:{_line('def run')} "
        f"(was at feeds.py:{_line('# the uploader')} in Uploader.run then)"
    )
    # started after: the recorder saw who started it
    assert groups["late-poller"]["started_by"] == f"<module> at feeds.py:{_line('later.start()')}"
    # which of the two each is, as a field rules read (not from the text)
    assert [groups[name]["start_seen"] for name in ("feed-poller", "uploader", "late-poller")] == [
        False,
        False,
        True,
    ]
