"""What ``vo_node`` publishes for one tracked frame: odometry, TF, keyframes, path, landmarks, stats.

Message builders are plain functions of pipeline results (testable without a graph);
:class:`VOPublishers` owns the publishers and publishes a :class:`TrackResult`.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from geometry_msgs.msg import PoseStamped
from mp_slam_interfaces.msg import Keyframe, SolverStats
from nav_msgs.msg import Odometry, Path
from numpy.typing import NDArray
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import PointCloud2, PointField

from mp_slam_ros.geometry.lie import se3_to_translation_quat
from mp_slam_ros.node_options.vo import VONodeOptions
from mp_slam_ros.pipelines.vo import TrackResult
from mp_slam_ros.precision import ProblemKind
from mp_slam_ros.ros.conversions import pose_to_msg, stamp_from_ns, transform_to_msg
from mp_slam_ros.ros.messages import SolverStatsRecord, keyframe_to_msg, solver_stats_to_msg
from mp_slam_ros.ros.qos import KEYFRAME_QOS, SOLVER_STATS_QOS, reliable_qos
from mp_slam_ros.ros.tf import TfBroadcaster
from mp_slam_ros.solvers.summary import Summary

#: Odometry: a short reliable queue (controllers want the newest pose).
ODOMETRY_QOS = reliable_qos(10)
#: Path and landmarks: latched, so rviz started later shows them at once.
VISUALIZATION_QOS: QoSProfile = reliable_qos(1, latched=True)


def pose7_of(T: NDArray[np.float64]) -> NDArray[np.float64]:
    """``[x, y, z, qx, qy, qz, qw]`` of a pose ``(4, 4)``."""
    translation, quat_xyzw = se3_to_translation_quat(T)
    return np.concatenate([translation[0], quat_xyzw[0]])


def twist_covariance(result: TrackResult, previous: TrackResult | None) -> NDArray[np.float64]:
    """Covariance ``(6, 6)`` of the twist (base frame) from the pose covariances of two frames.

    The twist is the relative pose over ``dt`` divided by ``dt``; with independent per-frame pose
    errors its covariance is ``(C_prev + C_cur) / dt^2``, rotated from odom-aligned to base axes.
    Without a previous frame (or a zero ``dt``) the twist is unknown: the covariance is the
    current pose covariance scaled by 1e6 (large, finite).
    """
    if previous is None or result.stamp_ns <= previous.stamp_ns:
        return np.asarray(result.covariance, dtype=np.float64) * 1e6
    dt_s = (result.stamp_ns - previous.stamp_ns) / 1e9
    R_base_odom = np.kron(np.eye(2), result.T_odom_base[:3, :3].T)
    covariance_odom = (np.asarray(result.covariance) + np.asarray(previous.covariance)) / dt_s**2
    return R_base_odom @ covariance_odom @ R_base_odom.T


def odometry_msg(result: TrackResult, previous: TrackResult | None, options: VONodeOptions) -> Odometry:
    """``nav_msgs/Odometry`` of a tracked frame (pose in odom, twist in base, both with covariance)."""
    msg = Odometry()
    msg.header.stamp = stamp_from_ns(result.stamp_ns)
    msg.header.frame_id = options.odom_frame
    msg.child_frame_id = options.base_frame
    msg.pose.pose = pose_to_msg(pose7_of(result.T_odom_base))
    msg.pose.covariance = np.asarray(result.covariance, dtype=np.float64).reshape(36)
    linear, angular = msg.twist.twist.linear, msg.twist.twist.angular
    linear.x, linear.y, linear.z, angular.x, angular.y, angular.z = (float(v) for v in result.twist)
    msg.twist.covariance = twist_covariance(result, previous).reshape(36)
    return msg


def point_cloud_msg(points: NDArray[np.float32], stamp_ns: int, frame_id: str) -> PointCloud2:
    """Unorganised ``sensor_msgs/PointCloud2`` (x, y, z float32) of points ``(N, 3)``."""
    points = np.ascontiguousarray(points, dtype=np.float32).reshape(-1, 3)
    msg = PointCloud2()
    msg.header.stamp = stamp_from_ns(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = 1, len(points)
    msg.fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, name in enumerate("xyz")]
    msg.is_bigendian = False
    msg.point_step = 12
    msg.row_step = 12 * len(points)
    msg.data = points.astype("<f4", copy=False).tobytes()
    msg.is_dense = bool(np.all(np.isfinite(points)))
    return msg


class VOPublishers:
    """The output topics of ``vo_node`` (relative names, remappable) and /tf."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.odometry = node.create_publisher(Odometry, "odometry", ODOMETRY_QOS)
        self.keyframes = node.create_publisher(Keyframe, "keyframes", KEYFRAME_QOS)
        self.path = node.create_publisher(Path, "path", VISUALIZATION_QOS)
        self.landmarks = node.create_publisher(PointCloud2, "landmarks", VISUALIZATION_QOS)
        self.solver_stats = node.create_publisher(SolverStats, "solver_stats", SOLVER_STATS_QOS)
        self.tf = TfBroadcaster(node)
        self._path_poses: deque[PoseStamped] = deque()
        self._previous: TrackResult | None = None

    def clear_history(self) -> None:
        """Forget the previous frame (the next twist covariance starts afresh) after a reset."""
        self._previous = None

    def publish(self, result: TrackResult, options: VONodeOptions, landmarks_odom: NDArray[np.float32] | None) -> None:
        """Publish everything of one frame; keyframe, path and landmarks (given on keyframes)
        only then.

        The path holds the keyframes' poses (as tracked), not every frame's: rclpy converts the
        whole message on every publish, ~2.7 us per pose on the 2-core CPU (27 ms at 10,000
        poses), while holding the interpreter lock that tracking and the window solve share.
        """
        self.odometry.publish(odometry_msg(result, self._previous, options))
        self._previous = result
        if options.publish_tf:
            self.tf.send([transform_to_msg(result.T_odom_base, options.odom_frame, options.base_frame, result.stamp_ns)])
        self.publish_solver_stats(result.ba_summaries, options)
        if result.keyframe is not None:
            self.keyframes.publish(keyframe_to_msg(result.keyframe))
            self._append_path(result, options)
            self.path.publish(Path(header=self._path_poses[-1].header, poses=list(self._path_poses)))
        if landmarks_odom is not None:
            self.landmarks.publish(point_cloud_msg(landmarks_odom, result.stamp_ns, options.odom_frame))

    def publish_solver_stats(self, summaries: list[Summary], options: VONodeOptions) -> None:
        """One ``solver_stats`` message per window BA summary."""
        for summary in summaries:
            record = SolverStatsRecord.from_summary(summary, ProblemKind.BA, self._now_ns(), options.odom_frame)
            self.solver_stats.publish(solver_stats_to_msg(record))

    def _append_path(self, result: TrackResult, options: VONodeOptions) -> None:
        pose = PoseStamped()
        pose.header.stamp = stamp_from_ns(result.stamp_ns)
        pose.header.frame_id = options.odom_frame
        pose.pose = pose_to_msg(pose7_of(result.T_odom_base))
        self._path_poses.append(pose)
        while len(self._path_poses) > options.path_max_poses:
            self._path_poses.popleft()

    def _now_ns(self) -> int:
        return self.node.get_clock().now().nanoseconds
