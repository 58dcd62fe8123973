"""What the notebook remembers between cells: the notifications seen while the extension is loaded.

`%lens notifications` and `%lens dashboard` seed their feed from the journal, which listens
while the extension is loaded. (The results of runs, for `lensbook.last()`, are the operators'
own `last_result`.)
"""

from __future__ import annotations

import threading
from typing import Any

from lensbook import events
from lensbook.notebook._models import FeedModel

__all__ = ["Journal", "journal"]


class Journal:
    """Every notification (and the snapshots they cite) published while it listens, bounded."""

    def __init__(self, max_entries: int = 500) -> None:
        self.model = FeedModel(max_entries=max_entries, max_snapshots=1024)
        self._lock = threading.Lock()
        self._token: int | None = None

    def listen(self) -> None:
        if self._token is None:
            self._token = events.subscribe(self._on_event, kinds=["snapshot", "notification"])

    def stop(self) -> None:
        """Stop listening and forget what was seen."""
        token, self._token = self._token, None
        if token is not None:
            events.unsubscribe(token)
        with self._lock:
            self.model = FeedModel(
                max_entries=self.model.max_entries, max_snapshots=self.model.max_snapshots
            )

    @property
    def listening(self) -> bool:
        return self._token is not None

    def _on_event(self, event: events.Event) -> None:
        with self._lock:
            self.model.apply(event)

    def copy_into(self, feed: FeedModel) -> None:
        """Add what the journal saw to `feed` (oldest first; the feed filters by operator)."""
        with self._lock:
            snapshots: list[tuple[str, dict[str, Any]]] = list(self.model.snapshots.items())
            entries = list(self.model.entries)
        for sid, data in snapshots:
            feed.add_snapshot(sid, data)
        for note in entries:
            feed.add(note)


journal = Journal()
