"""Conversions between the mp_slam_interfaces messages and numpy arrays (no ``rclpy.init``).

One dataclass per message (:class:`KeyframeArrays`, :class:`PoseGraphArrays`,
:class:`SolverStatsRecord`) holds shaped arrays; ``*_to_msg`` / ``*_from_msg`` convert both ways,
exactly (message -> arrays -> message gives equal messages). Reading validates sizes, ids, kinds and
poses and raises :class:`MessageError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

import numpy as np
from geometry_msgs.msg import PoseWithCovariance
from mp_slam_interfaces.msg import Keyframe, PoseGraph, SolverStats
from numpy.typing import NDArray

from mp_slam_ros.errors import MessageError
from mp_slam_ros.precision import Precision, ProblemKind
from mp_slam_ros.ros.conversions import (
    camera_info_from_msg,
    camera_info_to_msg,
    check_pose7,
    from_sequence,
    ns_from_stamp,
    pose_from_msg,
    pose_to_msg,
    stamp_from_ns,
    to_sequence,
)
from mp_slam_ros.solvers.summary import Summary, Termination
from mp_slam_ros.types import CameraModel, KeyframeArrays

EnumT = TypeVar("EnumT", bound=Enum)

PROBLEM_KIND_TO_MSG = {ProblemKind.BA: SolverStats.PROBLEM_BA, ProblemKind.PGO: SolverStats.PROBLEM_PGO}
PRECISION_TO_MSG = {
    Precision.FP64: SolverStats.PRECISION_FP64,
    Precision.FP32: SolverStats.PRECISION_FP32,
    Precision.FP16: SolverStats.PRECISION_FP16,
    Precision.MIXED: SolverStats.PRECISION_MIXED,
}
TERMINATION_TO_MSG = {member: getattr(SolverStats, f"TERMINATION_{member.name}") for member in Termination}


@dataclass
class PoseGraphArrays:
    """Numpy side of ``mp_slam_interfaces/msg/PoseGraph`` (M nodes, E edges)."""

    frame_id: str
    stamp_ns: int
    node_ids: NDArray[np.uint64]  # (M,)
    node_poses: NDArray[np.float64]  # (M, 7) pose7 T_frame_node
    edge_from_ids: NDArray[np.uint64]  # (E,)
    edge_to_ids: NDArray[np.uint64]  # (E,)
    edge_relative_poses: NDArray[np.float64]  # (E, 7) pose7 T_from_to
    edge_information: NDArray[np.float64]  # (E, 6, 6) over [rho, phi]
    edge_kinds: NDArray[np.uint8]  # (E,) PoseGraph.EDGE_KIND_*


@dataclass
class SolverStatsRecord:
    """Numpy side of ``mp_slam_interfaces/msg/SolverStats``: the message-shaped part of a Summary."""

    stamp_ns: int
    frame_id: str
    problem_kind: ProblemKind
    precision_requested: Precision
    precision_used: Precision
    precision_escalations: int
    linear_solver: str
    rows: int
    cols: int
    nnz: int
    outer_iterations: int
    inner_iterations: int
    initial_cost: float
    final_cost: float
    linear_solver_residual: float
    jacobian_time_s: float
    linear_solve_time_s: float
    update_time_s: float
    total_time_s: float
    termination: Termination
    termination_message: str

    @classmethod
    def from_summary(
        cls, summary: Summary, problem_kind: ProblemKind, stamp_ns: int, frame_id: str
    ) -> SolverStatsRecord:
        """The statistics of ``summary`` (a solve of ``problem_kind``) for publishing."""
        return cls(
            stamp_ns=stamp_ns,
            frame_id=frame_id,
            problem_kind=ProblemKind(problem_kind),
            precision_requested=summary.precision_requested,
            precision_used=summary.precision_used,
            precision_escalations=len(summary.escalations),
            linear_solver=summary.linear_solver,
            rows=summary.num_residuals,
            cols=summary.num_parameters,
            nnz=summary.jacobian_nnz,
            outer_iterations=summary.num_iterations,
            inner_iterations=summary.linear_iterations,
            initial_cost=summary.initial_cost,
            final_cost=summary.final_cost,
            linear_solver_residual=summary.final_linear_residual,
            jacobian_time_s=summary.timings.jacobian_s,
            linear_solve_time_s=summary.timings.linear_solve_s,
            update_time_s=summary.timings.update_s,
            total_time_s=summary.timings.total_s,
            termination=summary.termination,
            termination_message=summary.message,
        )


# --- keyframe --------------------------------------------------------------------------------
def keyframe_to_msg(keyframe: KeyframeArrays) -> Keyframe:
    """``mp_slam_interfaces/msg/Keyframe`` of a keyframe."""
    n = len(keyframe.keypoints_px)
    descriptors = np.asarray(keyframe.descriptors, dtype=np.uint8)
    if descriptors.ndim != 2 or len(descriptors) != n or np.shape(keyframe.points_cam) != (n, 3):
        raise MessageError(
            f"keyframe {keyframe.keyframe_id}: {n} keypoints but descriptors {descriptors.shape} "
            f"and points_cam {np.shape(keyframe.points_cam)}"
        )
    msg = Keyframe()
    msg.header.stamp = stamp_from_ns(keyframe.stamp_ns)
    msg.header.frame_id = keyframe.frame_id
    msg.keyframe_id = int(keyframe.keyframe_id)
    msg.pose_odom_cam = PoseWithCovariance(
        pose=pose_to_msg(keyframe.pose_odom_cam),
        covariance=np.asarray(keyframe.covariance_odom_cam, dtype=np.float64).reshape(36),
    )
    msg.camera_info = camera_info_to_msg(keyframe.camera, keyframe.stamp_ns)
    msg.num_keypoints = n
    msg.keypoints_px = to_sequence(keyframe.keypoints_px, np.float32)
    msg.descriptor_size_bytes = descriptors.shape[1]
    msg.descriptors = to_sequence(descriptors, np.uint8)
    msg.points_cam = to_sequence(keyframe.points_cam, np.float32)
    return msg


def keyframe_from_msg(msg: Keyframe) -> KeyframeArrays:
    """Keyframe of a ``mp_slam_interfaces/msg/Keyframe`` (validated)."""
    n = int(msg.num_keypoints)
    size = int(msg.descriptor_size_bytes)
    if n and not size:
        raise MessageError(f"descriptor_size_bytes: 0 with num_keypoints={n}")
    covariance = np.array(msg.pose_odom_cam.covariance, dtype=np.float64).reshape(6, 6)
    if not np.all(np.isfinite(covariance)):
        raise MessageError(f"pose_odom_cam.covariance: non-finite values {covariance.reshape(-1).tolist()}")
    return KeyframeArrays(
        keyframe_id=int(msg.keyframe_id),
        stamp_ns=ns_from_stamp(msg.header.stamp),
        frame_id=msg.header.frame_id,
        pose_odom_cam=pose_from_msg(msg.pose_odom_cam.pose, "pose_odom_cam.pose"),
        covariance_odom_cam=covariance,
        camera=camera_info_from_msg(msg.camera_info),
        keypoints_px=from_sequence(msg.keypoints_px, np.float32, "keypoints_px", 2, n),
        descriptors=from_sequence(msg.descriptors, np.uint8, "descriptors", max(size, 1), n)
        .reshape(n, size),
        points_cam=from_sequence(msg.points_cam, np.float32, "points_cam", 3, n),
    )


# --- pose graph ------------------------------------------------------------------------------
def pose_graph_to_msg(graph: PoseGraphArrays) -> PoseGraph:
    """``mp_slam_interfaces/msg/PoseGraph`` of a pose graph."""
    msg = PoseGraph()
    msg.header.stamp = stamp_from_ns(graph.stamp_ns)
    msg.header.frame_id = graph.frame_id
    msg.node_ids = to_sequence(graph.node_ids, np.uint64)
    msg.node_poses = to_sequence(graph.node_poses, np.float64)
    msg.edge_from_ids = to_sequence(graph.edge_from_ids, np.uint64)
    msg.edge_to_ids = to_sequence(graph.edge_to_ids, np.uint64)
    msg.edge_relative_poses = to_sequence(graph.edge_relative_poses, np.float64)
    msg.edge_information = to_sequence(graph.edge_information, np.float64)
    msg.edge_kinds = to_sequence(graph.edge_kinds, np.uint8)
    return msg


def pose_graph_from_msg(msg: PoseGraph) -> PoseGraphArrays:
    """Pose graph of a ``mp_slam_interfaces/msg/PoseGraph`` (validated: sizes, ids, kinds, poses)."""
    node_ids = from_sequence(msg.node_ids, np.uint64, "node_ids")
    m = len(node_ids)
    edge_from_ids = from_sequence(msg.edge_from_ids, np.uint64, "edge_from_ids")
    e = len(edge_from_ids)
    graph = PoseGraphArrays(
        frame_id=msg.header.frame_id,
        stamp_ns=ns_from_stamp(msg.header.stamp),
        node_ids=node_ids,
        node_poses=from_sequence(msg.node_poses, np.float64, "node_poses", 7, m),
        edge_from_ids=edge_from_ids,
        edge_to_ids=from_sequence(msg.edge_to_ids, np.uint64, "edge_to_ids", 1, e),
        edge_relative_poses=from_sequence(msg.edge_relative_poses, np.float64, "edge_relative_poses", 7, e),
        edge_information=from_sequence(msg.edge_information, np.float64, "edge_information", 36, e)
        .reshape(e, 6, 6),
        edge_kinds=from_sequence(msg.edge_kinds, np.uint8, "edge_kinds", 1, e),
    )
    _check_pose_graph(graph)
    return graph


def _check_pose_graph(graph: PoseGraphArrays) -> None:
    """Raise :class:`MessageError` on duplicate or unknown ids, bad kinds or invalid poses."""
    unique, counts = np.unique(graph.node_ids, return_counts=True)
    if np.any(counts > 1):
        raise MessageError(f"node_ids: duplicate id {int(unique[np.argmax(counts > 1)])}")
    for field in ("edge_from_ids", "edge_to_ids"):
        ids = getattr(graph, field)
        unknown = ~np.isin(ids, graph.node_ids)
        if np.any(unknown):
            index = int(np.argmax(unknown))
            raise MessageError(f"{field}[{index}]: id {int(ids[index])} is not in node_ids")
    bad_kind = ~np.isin(graph.edge_kinds, [PoseGraph.EDGE_KIND_ODOMETRY, PoseGraph.EDGE_KIND_LOOP])
    if np.any(bad_kind):
        index = int(np.argmax(bad_kind))
        raise MessageError(f"edge_kinds[{index}]: unknown kind {int(graph.edge_kinds[index])}")
    if not np.all(np.isfinite(graph.edge_information)):
        index = int(np.argwhere(~np.isfinite(graph.edge_information))[0][0])
        raise MessageError(f"edge_information[{index}]: non-finite values")
    check_pose7(graph.node_poses, "node_poses")
    check_pose7(graph.edge_relative_poses, "edge_relative_poses")


# --- solver statistics -----------------------------------------------------------------------
def solver_stats_to_msg(record: SolverStatsRecord) -> SolverStats:
    """``mp_slam_interfaces/msg/SolverStats`` of solver statistics."""
    msg = SolverStats()
    msg.header.stamp = stamp_from_ns(record.stamp_ns)
    msg.header.frame_id = record.frame_id
    msg.problem_kind = PROBLEM_KIND_TO_MSG[ProblemKind(record.problem_kind)]
    msg.precision_requested = PRECISION_TO_MSG[Precision(record.precision_requested)]
    msg.precision_used = PRECISION_TO_MSG[Precision(record.precision_used)]
    msg.termination = TERMINATION_TO_MSG[Termination(record.termination)]
    for name in ("precision_escalations", "rows", "cols", "nnz", "outer_iterations", "inner_iterations"):
        setattr(msg, name, int(getattr(record, name)))
    for name in ("initial_cost", "final_cost", "linear_solver_residual", "jacobian_time_s",
                 "linear_solve_time_s", "update_time_s", "total_time_s"):
        setattr(msg, name, float(getattr(record, name)))
    msg.linear_solver = record.linear_solver
    msg.termination_message = record.termination_message
    return msg


def _from_constant(table: dict[EnumT, int], value: int, field: str) -> EnumT:
    """The enum member whose message constant in ``table`` is ``value``; MessageError otherwise."""
    for member, constant in table.items():
        if constant == value:
            return member
    raise MessageError(f"{field}: unknown value {value}")


def solver_stats_from_msg(msg: SolverStats) -> SolverStatsRecord:
    """Solver statistics of a ``mp_slam_interfaces/msg/SolverStats``."""
    return SolverStatsRecord(
        stamp_ns=ns_from_stamp(msg.header.stamp),
        frame_id=msg.header.frame_id,
        problem_kind=_from_constant(PROBLEM_KIND_TO_MSG, msg.problem_kind, "problem_kind"),
        precision_requested=_from_constant(PRECISION_TO_MSG, msg.precision_requested, "precision_requested"),
        precision_used=_from_constant(PRECISION_TO_MSG, msg.precision_used, "precision_used"),
        precision_escalations=int(msg.precision_escalations),
        linear_solver=msg.linear_solver,
        rows=int(msg.rows),
        cols=int(msg.cols),
        nnz=int(msg.nnz),
        outer_iterations=int(msg.outer_iterations),
        inner_iterations=int(msg.inner_iterations),
        initial_cost=float(msg.initial_cost),
        final_cost=float(msg.final_cost),
        linear_solver_residual=float(msg.linear_solver_residual),
        jacobian_time_s=float(msg.jacobian_time_s),
        linear_solve_time_s=float(msg.linear_solve_time_s),
        update_time_s=float(msg.update_time_s),
        total_time_s=float(msg.total_time_s),
        termination=_from_constant(TERMINATION_TO_MSG, msg.termination, "termination"),
        termination_message=msg.termination_message,
    )
