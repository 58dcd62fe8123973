"""A 61 MB DataFrame held only by IPython's output cache, in a kernel of about 200 MB.

Modelled on ipython/ipython#11204 ("Memory leak when printing value": a displayed array stays
in ``Out`` after ``del``; the answer was ``%reset out`` or ``%xdel``) and scipp/scipp#2737
("IPython output history prevents objects from being deleted"). The same cells as
`out_cache`, with an 800,000 x 10 frame: 61 MB, under the old absolute 64 MiB threshold but a
third of the kernel's memory, so it must be reported.
"""

from __future__ import annotations

from collections.abc import Callable

from lensbook.scenarios import scenario
from lensbook.scenarios.out_cache import induce_with

#: 800,000 rows x 10 float64 columns: 61.0 MB
ROWS = 800_000


@scenario(
    skill="kernel",
    reason="memory stays high after I deleted my DataFrame",
    expect=(r"Out\[3\]", r"DataFrame", r"61(\.\d)? MB", r"\d+% of the process's RSS"),
    settle=0.2,
)
def induce() -> Callable[[], None]:
    return induce_with(ROWS)
