"""Offline visual odometry over a bag: the loop shared by ``mp-slam vo``, the benchmark and tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.config import with_updates
from mp_slam_ros.io.tum import TumTrajectory
from mp_slam_ros.pipelines.vo import TrackingStatus, TrackResult, VisualOdometry
from mp_slam_ros.pipelines.vo_bag import BagFrames
from mp_slam_ros.pipelines.vo_config import VOConfig
from mp_slam_ros.solvers.summary import Summary


@dataclass
class VORun:
    """What an offline run produced: the trajectory of base_link in odom and the statistics."""

    stamps_s: list[float] = field(default_factory=list)
    T_odom_base: list[NDArray[np.float64]] = field(default_factory=list)
    statuses: list[TrackingStatus] = field(default_factory=list)
    track_s: list[float] = field(default_factory=list)  # per frame, without a synchronous BA
    ba_s: list[float] = field(default_factory=list)  # per window solve
    ba_iterations: list[int] = field(default_factory=list)
    ba_time_limited: int = 0  # window solves stopped by ba.max_solve_time_ms
    keyframes: int = 0
    wall_s: float = 0.0
    mode: str = ""
    T_base_cam: NDArray[np.float64] = field(default_factory=lambda: np.eye(4))  # (4, 4) from the bag (identity when absent)

    def trajectory(self) -> TumTrajectory:
        """Poses of the frames that were not LOST."""
        keep = [i for i, s in enumerate(self.statuses) if s is not TrackingStatus.LOST]
        return TumTrajectory.from_matrices(np.array(self.stamps_s)[keep], np.array(self.T_odom_base)[keep].reshape(-1, 4, 4))

    def count_ba(self, summaries: list[Summary]) -> None:
        """Record the window solves ``summaries`` (times, iterations, time-limited ones)."""
        self.ba_s += [s.timings.total_s for s in summaries]
        self.ba_iterations += [s.num_iterations for s in summaries]
        self.ba_time_limited += sum(s.time_limited for s in summaries)

    def summary(self) -> dict[str, Any]:
        """The JSON summary: counts, timing percentiles (ms) and the real-time factor."""
        duration = self.stamps_s[-1] - self.stamps_s[0] if len(self.stamps_s) > 1 else 0.0
        return {
            "mode": self.mode,
            "frames": len(self.statuses),
            "keyframes": self.keyframes,
            "lost": sum(s is TrackingStatus.LOST for s in self.statuses),
            "tracking_ms": percentiles_ms(self.track_s),
            "ba_ms": percentiles_ms(self.ba_s),
            "ba_solves": len(self.ba_s),
            "ba_time_limited": self.ba_time_limited,
            "sequence_s": duration,
            "wall_s": self.wall_s,
            "real_time_factor": duration / self.wall_s if self.wall_s > 0 else None,
        }


def percentiles_ms(values_s: list[float]) -> dict[str, float] | None:
    """p50, p95 and max of durations in seconds, in milliseconds (None when there are none)."""
    if not values_s:
        return None
    p50, p95, top = np.percentile(1e3 * np.asarray(values_s), [50, 95, 100])
    return {"p50": float(p50), "p95": float(p95), "max": float(top)}


def run_vo(
    bag: str | Path, config: VOConfig, progress: Callable[[int, int], None] | None = None,
    wheel_topic: str | None = None, on_result: Callable[[TrackResult], None] | None = None,
) -> VORun:
    """Run the odometry over every frame of ``bag`` (mode and extrinsics from the bag; the
    wheel odometry of ``wheel_topic`` as a motion prior, see :class:`BagFrames`); ``on_result``
    gets each frame's result after it is recorded (``mp-slam slam`` feeds its keyframes on)."""
    run = VORun()
    with BagFrames(bag, config.mode, wheel_topic=wheel_topic) as frames:
        config = with_updates(config, {"mode": frames.mode.value})
        run.mode = frames.mode.value
        if frames.T_base_cam is not None:
            run.T_base_cam = frames.T_base_cam
        odometry = VisualOdometry(config, frames.T_base_cam)
        started = time.perf_counter()
        try:
            for frame in frames:
                result = odometry.track(frame)
                run.stamps_s.append(result.stamp_ns * 1e-9)
                run.T_odom_base.append(result.T_odom_base)
                run.statuses.append(result.status)
                run.track_s.append(result.timings_s["total_s"] - result.timings_s.get("ba_s", 0.0))
                run.count_ba(result.ba_summaries)
                run.keyframes += result.keyframe is not None
                if on_result is not None:
                    on_result(result)
                if progress is not None:
                    progress(len(run.statuses), frames.num_frames)
            run.count_ba(odometry.wait_for_ba())
        finally:
            odometry.close()
        run.wall_s = time.perf_counter() - started
    return run

