"""Options of the ``vo_node`` ROS adapter itself (the pipeline's are :class:`VOConfig`).

Declared as ROS parameters by the same walker (:mod:`mp_slam_ros.ros.params`), next to the
pipeline's: ``publish_tf``, ``odom_frame``, ``qos.reliability``, ``sync.max_interval_s``, ...
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from mp_slam_ros.config import option
from mp_slam_ros.errors import ConfigError


class Reliability(str, enum.Enum):
    """QoS reliability of the camera subscriptions."""

    BEST_EFFORT = "best_effort"  # sensor-data QoS: what camera drivers publish by default
    RELIABLE = "reliable"


@dataclass(frozen=True)
class QosOptions:
    """QoS of the camera inputs (fixed once the node runs)."""

    reliability: Reliability = option(Reliability.BEST_EFFORT, "camera subscriptions: best_effort (sensor data) or reliable")
    depth: int = option(5, "camera subscription queue depth (messages)", 1, 1000)


@dataclass(frozen=True)
class SyncOptions:
    """Approximate-time synchronisation of the image and camera_info topics."""

    max_interval_s: float = option(0.02, "largest stamp difference within one synchronised set (s)", 0.0, 1.0)
    queue_size: int = option(10, "messages kept per topic while waiting for partners", 1, 1000)


@dataclass(frozen=True)
class VONodeOptions:
    """Everything the node adds around the pipeline: frames, TF, inputs, time handling."""

    publish_tf: bool = option(True, "publish odom_frame -> base_frame on /tf")
    odom_frame: str = option("odom", "odometry frame (parent of base_frame)")
    base_frame: str = option("base_link", "robot base frame (child in odometry and TF)")
    use_wheel_odom: bool = option(False, "use the wheel_odom topic (nav_msgs/Odometry) as a motion prior")
    time_jump_s: float = option(0.5, "a camera stamp older than the last one by more than this resets the odometry (bag looped)", 0.0, 1e6)
    max_pending_frames: int = option(2, "synchronised frames waiting for tracking; one more drops the oldest (counted busy)", 1, 100_000)
    # 2,000: the 600-s household replay makes 1,724 keyframes; publishing costs ~5 ms at 2,000
    # poses (27 ms at 10,000). loop_closure_node's path holds every keyframe, optimized.
    path_max_poses: int = option(2000, "keyframe poses kept in the published path (oldest dropped)", 1, 10_000_000)
    diagnostics_period_s: float = option(1.0, "period of /diagnostics (s)", 0.05, 60.0)
    warning_period_s: float = option(5.0, "the same input warning is logged at most once per period (s)", 0.0, 3600.0)
    qos: QosOptions = field(default_factory=QosOptions)
    sync: SyncOptions = field(default_factory=SyncOptions)

    def validate(self, prefix: str = "") -> None:
        """Cross-field checks: two distinct, non-empty frame names."""
        for name in ("odom_frame", "base_frame"):
            if not getattr(self, name).strip():
                raise ConfigError(f"{prefix}{name}", getattr(self, name), "must not be empty")
        if self.odom_frame == self.base_frame:
            raise ConfigError(f"{prefix}base_frame", self.base_frame, "must differ from odom_frame")


#: Parameters that only take effect at start-up (ROS refuses to change them later).
READ_ONLY = ("qos.reliability", "qos.depth", "sync.queue_size", "use_wheel_odom")
