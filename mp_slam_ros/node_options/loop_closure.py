"""Options of the ``loop_closure_node`` ROS adapter itself (the pipeline's are
:class:`~mp_slam_ros.pipelines.loop_closure_config.LoopClosureConfig`).

ROS-free, so that parameter files can be checked without rclpy (:mod:`mp_slam_ros.presets`);
declared as ROS parameters by the same walker as the pipeline's (:mod:`mp_slam_ros.ros.params`).
"""

from __future__ import annotations

from dataclasses import dataclass

from mp_slam_ros.config import option
from mp_slam_ros.errors import ConfigError


@dataclass(frozen=True)
class LoopClosureNodeOptions:
    """Everything the node adds around the pipeline: frames, TF, queue, map directory."""

    publish_tf: bool = option(True, "publish map_frame -> odom_frame on /tf")
    map_frame: str = option("map", "map frame (parent of odom_frame)")
    odom_frame: str = option("odom", "odometry frame of the keyframes")
    tf_rate_hz: float = option(20.0, "rate of the map -> odom transform (Hz)", 0.1, 1000.0)
    transform_tolerance_s: float = option(0.1, "map -> odom is stamped this far ahead of now (s)", 0.0, 10.0)
    keyframe_queue_depth: int = option(1000, "keyframe subscription depth (reliable; no keyframe lost while a solve runs)", 1, 1_000_000)
    map_directory: str = option("", "directory of ~/save_map and ~/load_map")
    diagnostics_period_s: float = option(1.0, "period of /diagnostics (s)", 0.05, 60.0)

    def validate(self, prefix: str = "") -> None:
        """Two distinct, non-empty frame names."""
        if not self.map_frame.strip() or self.map_frame == self.odom_frame:
            raise ConfigError(f"{prefix}map_frame", self.map_frame, "must be non-empty and differ from odom_frame")
