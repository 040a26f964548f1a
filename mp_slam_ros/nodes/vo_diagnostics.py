"""Health of ``vo_node``: counters of processed and dropped frames, throttled input warnings and
the ``/diagnostics`` message (diagnostic_msgs) built from them.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from mp_slam_ros.pipelines.vo import TrackingStatus
from mp_slam_ros.ros.conversions import stamp_from_ns
from mp_slam_ros.ros.sync import SyncCounters

#: Frames over which the processing rate is measured.
RATE_WINDOW = 30


class ThrottledWarnings:
    """Logs a warning per key at most once per ``period_s`` (wall clock), counting the rest."""

    def __init__(self, log: Callable[[str], None], period_s: float) -> None:
        self._log = log
        self.period_s = period_s
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._lock = threading.Lock()

    def warn(self, key: str, text: str) -> None:
        """Log ``text`` unless ``key`` was logged less than ``period_s`` ago."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] += 1
                return
            suppressed, self._suppressed[key] = self._suppressed[key], 0
            self._last[key] = now
        self._log(text if not suppressed else f"{text} ({suppressed} more since the last warning)")


@dataclass
class FrameCounters:
    """What happened to the camera frames since the node started (thread-safe updates)."""

    processed: int = 0
    keyframes: int = 0
    ba_solves: int = 0
    #: window solves stopped by ba.max_solve_time_ms
    ba_time_limited: int = 0
    lost: int = 0
    resets: int = 0
    clock_jumps: int = 0
    #: frames received while paused (~/set_paused), not tracked on purpose
    paused_frames: int = 0
    #: upstream frames missing, estimated from gaps in the camera stamps
    missing_upstream: int = 0
    #: frames dropped by the node, by reason (bad input, busy, no extrinsics, ...)
    dropped: Counter[str] = field(default_factory=Counter)
    status: str = "waiting"
    tracked_features: int = 0
    precision_used: str = ""
    linear_solver: str = ""
    _processed_at: deque[float] = field(default_factory=lambda: deque(maxlen=RATE_WINDOW))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def drop(self, reason: str) -> None:
        """Count one dropped frame under ``reason``."""
        with self._lock:
            self.dropped[reason] += 1

    def add(self, name: str, count: int = 1) -> None:
        """Add ``count`` to the counter ``name``."""
        with self._lock:
            setattr(self, name, getattr(self, name) + count)

    def frame_done(self, status: TrackingStatus, tracked: int, keyframe: bool) -> None:
        """Record one tracked frame."""
        with self._lock:
            self.processed += 1
            self.keyframes += int(keyframe)
            self.lost += int(status == TrackingStatus.LOST)
            self.status, self.tracked_features = status.value, tracked
            self._processed_at.append(time.monotonic())

    def rate_hz(self) -> float:
        """Frames per second over the last frames (0 until two were processed)."""
        with self._lock:
            times = list(self._processed_at)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


def diagnostics_msg(node_name: str, counters: FrameCounters, sync: SyncCounters, precision_requested: str, stamp_ns: int) -> DiagnosticArray:
    """``/diagnostics`` of the node: level from the tracking status and the dropped frames."""
    unsynchronised_frames = sync.dropped_sets
    dropped_total = sum(counters.dropped.values()) + unsynchronised_frames
    level = DiagnosticStatus.OK
    message = f"tracking {counters.status}"
    if counters.status == TrackingStatus.LOST.value or counters.status == "waiting":
        level = DiagnosticStatus.WARN
    if counters.dropped:
        message += f"; dropped {dict(counters.dropped)}"
    values = {
        "status": counters.status,
        "rate_hz": f"{counters.rate_hz():.2f}",
        "tracked_features": counters.tracked_features,
        "frames_processed": counters.processed,
        "frames_dropped": dropped_total,
        "frames_dropped_unsynchronised": unsynchronised_frames,
        "messages_unsynchronised": sync.total,
        "frames_missing_upstream": counters.missing_upstream,
        "keyframes": counters.keyframes,
        "lost_frames": counters.lost,
        "resets": counters.resets,
        "clock_jumps": counters.clock_jumps,
        "paused_frames": counters.paused_frames,
        "ba_solves": counters.ba_solves,
        "ba_time_limited": counters.ba_time_limited,
        "precision_requested": precision_requested,
        "precision_used": counters.precision_used,
        "linear_solver": counters.linear_solver,
        **{f"dropped.{reason}": count for reason, count in sorted(counters.dropped.items())},
    }
    status = DiagnosticStatus(level=level, name=f"{node_name}: visual odometry", message=message, hardware_id=node_name)
    status.values = [KeyValue(key=key, value=str(value)) for key, value in values.items()]
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp_from_ns(stamp_ns)
    return array
