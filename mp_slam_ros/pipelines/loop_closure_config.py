"""Options of the loop closure (:class:`LoopClosureConfig`): one tree, the same dotted keys in
YAML, the CLI and ROS parameters (walk, flatten, update and load with :mod:`mp_slam_ros.config`).

``places.*`` place recognition; ``loop.*`` candidate age and geometric verification;
``consistency.*`` the graph-level outlier rejection (PCM); ``odometry.*`` odometry edges from the
keyframes' covariances; ``pgo.*`` the pose-graph optimisation; ``global_ba.*`` the bundle
adjustment of every keyframe (offline after the last keyframe, the node on request).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mp_slam_ros.backend.global_ba import GlobalBAConfig
from mp_slam_ros.backend.incremental_pgo import PGOConfig
from mp_slam_ros.backend.loop_consistency import ConsistencyConfig
from mp_slam_ros.backend.loop_verification import LoopVerificationConfig
from mp_slam_ros.backend.place_recognition import PlaceRecognitionConfig
from mp_slam_ros.config import option


@dataclass(frozen=True)
class OdometryEdgeConfig:
    """Odometry edges between consecutive keyframes (and the loop edges' covariance floor)."""

    covariance_scale: float = option(1.0, "multiplier of the keyframes' relative covariance", 1e-6, 1e6)
    min_sigma_m: float = option(0.003, "translation sigma floor of odometry and loop edges (m)", 1e-6, 100.0)
    min_sigma_deg: float = option(0.1, "rotation sigma floor of odometry and loop edges (deg)", 1e-6, 180.0)
    gap_sigma_m: float = option(0.3, "largest translation sigma of an odometry edge, plus max_speed_mps per second between its keyframes (m; bounds what the VO reports after lost tracking)", 1e-3, 1e4)
    max_speed_mps: float = option(0.5, "fastest camera motion (m/s; the generator's robot: 0.35, a handheld camera: ~1.5)", 0.0, 100.0)
    restart_sigma_m: float = option(10.0, "translation sigma of the edge across a VO restart (m; after lost tracking the predicted pose can be metres off, loops place the new segment)", 1e-3, 1e4)
    restart_sigma_deg: float = option(180.0, "rotation sigma of the edge across a VO restart (deg; a turn while lost can leave the prediction any angle off)", 1e-3, 180.0)


@dataclass(frozen=True)
class LoopClosureConfig:
    """Every option of :class:`~mp_slam_ros.pipelines.loop_closure.LoopClosure`."""

    places: PlaceRecognitionConfig = field(default_factory=PlaceRecognitionConfig)
    loop: LoopVerificationConfig = field(default_factory=LoopVerificationConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    odometry: OdometryEdgeConfig = field(default_factory=OdometryEdgeConfig)
    pgo: PGOConfig = field(default_factory=PGOConfig)
    global_ba: GlobalBAConfig = field(default_factory=GlobalBAConfig)
