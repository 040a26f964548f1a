"""Approximate-time synchronisation of 2-4 message streams (message_filters is not on PyPI).

ROS-free: items are pushed with their stamp and the index of their stream; a matched set (one
item per stream, stamps within ``max_interval_ns`` of each other) is returned as soon as every
stream has an item that can belong to it, so streams with identical stamps (RGB, depth and
camera_info of one camera) match with no added latency.

Rule, for streams whose stamps increase: let ``p`` be the latest of the oldest queued stamps.
Nothing older than ``p - max_interval`` can still match (the stream holding ``p`` only gets newer
items), so it is dropped; then each stream's newest item not after ``p`` forms the set. Queues are
bounded (the oldest item goes first) and every item that leaves without being matched is counted.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mp_slam_ros.errors import ConfigError


@dataclass
class SyncCounters:
    """Items that left the synchroniser unmatched, by cause."""

    #: too old to match anything any more (a partner was lost or arrived too far apart)
    unmatched: int = 0
    #: pushed out of a full queue
    overflow: int = 0
    #: not newer than the last matched set of their stream
    late: int = 0
    #: per stream: items that left unmatched for any of the reasons above
    per_stream: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        """All dropped items."""
        return self.unmatched + self.overflow + self.late

    @property
    def dropped_sets(self) -> int:
        """Sets that never formed: a set left unmatched drops one item per stream, so the stream
        that dropped the most counts them."""
        return max(self.per_stream, default=0)


class ApproximateTimeSync:
    """Matches items of ``num_streams`` streams whose stamps lie within ``max_interval_ns``."""

    def __init__(self, num_streams: int, max_interval_ns: int, queue_size: int = 10) -> None:
        """Empty queues; ConfigError on fewer than 2 or more than 4 streams or bad sizes."""
        if not 2 <= num_streams <= 4:
            raise ConfigError("sync.num_streams", num_streams, "must be 2, 3 or 4")
        if max_interval_ns < 0:
            raise ConfigError("sync.max_interval_s", max_interval_ns / 1e9, "must be >= 0")
        if queue_size < 1:
            raise ConfigError("sync.queue_size", queue_size, "must be >= 1")
        self.max_interval_ns = int(max_interval_ns)
        self.queue_size = int(queue_size)
        self._queues: list[deque[tuple[int, Any]]] = [deque() for _ in range(num_streams)]
        self._last_matched_ns: list[int | None] = [None] * num_streams
        self.counters = SyncCounters(per_stream=[0] * num_streams)

    def push(self, stream: int, stamp_ns: int, item: Any) -> list[tuple[int, list[Any]]]:
        """Add ``item`` of ``stream``; returns the sets it completed as ``(stamp_ns of the newest, items)``."""
        last = self._last_matched_ns[stream]
        queue = self._queues[stream]
        if (last is not None and stamp_ns <= last) or (queue and stamp_ns <= queue[-1][0]):
            self._drop(stream, "late")
            return []
        queue.append((int(stamp_ns), item))
        if len(queue) > self.queue_size:
            queue.popleft()
            self._drop(stream, "overflow")
        return self._match()

    def reset(self) -> None:
        """Forget every queued item and the last matched stamps (after time went backwards)."""
        for queue in self._queues:
            queue.clear()
        self._last_matched_ns = [None] * len(self._queues)

    def _drop(self, stream: int, cause: str, count: int = 1) -> None:
        setattr(self.counters, cause, getattr(self.counters, cause) + count)
        self.counters.per_stream[stream] += count

    def _match(self) -> list[tuple[int, list[Any]]]:
        matched: list[tuple[int, list[Any]]] = []
        while all(self._queues):
            pivot_ns = max(queue[0][0] for queue in self._queues)
            oldest_allowed_ns = pivot_ns - self.max_interval_ns
            for stream, queue in enumerate(self._queues):
                while queue and queue[0][0] < oldest_allowed_ns:
                    queue.popleft()
                    self._drop(stream, "unmatched")
            if not all(self._queues):
                break
            chosen = []
            for stream, queue in enumerate(self._queues):
                # the newest item not after the pivot; the ones before it can no longer match
                while len(queue) > 1 and queue[1][0] <= pivot_ns:
                    queue.popleft()
                    self._drop(stream, "unmatched")
                stamp_ns, item = queue.popleft()
                self._last_matched_ns[stream] = stamp_ns
                chosen.append(item)
            matched.append((pivot_ns, chosen))
        return matched
