"""Calling a skill's probes in the tests as the operator does: from a thread of their own, with
the answer rendered to the model's JSON text and parsed back."""

from __future__ import annotations

import concurrent.futures
import json
from collections.abc import Callable
from typing import Any

from lensbook.skills.base import render_output
from lensbook.skills.untrusted import undelimit


def probe_caller(thread_name_prefix: str) -> Callable[..., Any]:
    """A function that calls ``fn(*args, **kwargs)`` on a thread named after
    `thread_name_prefix` (off the main thread, as the operator does) and returns its parsed
    answer, delimiters taken off."""

    def off_main(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        with concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=thread_name_prefix
        ) as pool:
            answer = pool.submit(fn, *args, **kwargs).result(30)
        return undelimit(json.loads(render_output(answer, 20000)))

    return off_main


def unmarked(text: str) -> str:
    """JSON text without the markers around the process's own text (thread names...)."""
    return (
        text.replace("\\u27e6", "")
        .replace("\\u27e7", "")
        .replace("\u27e6", "")
        .replace("\u27e7", "")
    )
