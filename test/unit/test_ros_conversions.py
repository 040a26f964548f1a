"""Message <-> numpy conversions, without rclpy.init: exact round trips and clear errors."""

from __future__ import annotations

import array

import numpy as np
import pytest
from mp_slam_interfaces.msg import Keyframe, PoseGraph, SolverStats

from mp_slam_ros.errors import MessageError
from mp_slam_ros.geometry.lie import se3_exp
from mp_slam_ros.precision import Precision, ProblemKind
from mp_slam_ros.ros.conversions import (
    camera_info_from_msg,
    camera_info_to_msg,
    from_sequence,
    ns_from_stamp,
    stamp_from_ns,
    to_sequence,
    transform_from_msg,
    transform_to_msg,
)
from mp_slam_ros.ros.messages import (
    PRECISION_TO_MSG,
    PROBLEM_KIND_TO_MSG,
    TERMINATION_TO_MSG,
    SolverStatsRecord,
    keyframe_from_msg,
    keyframe_to_msg,
    pose_graph_from_msg,
    pose_graph_to_msg,
    solver_stats_from_msg,
    solver_stats_to_msg,
)
from mp_slam_ros.solvers.summary import Escalation, IterationRecord, Summary, Termination, Timings

pytestmark = pytest.mark.ros


@pytest.mark.parametrize("stamp_ns", [0, 1, 999_999_999, 1_000_000_000, 1_700_000_000_123_456_789])
def test_stamp_round_trip(stamp_ns):
    stamp = stamp_from_ns(stamp_ns)
    assert 0 <= stamp.nanosec < 1_000_000_000
    assert ns_from_stamp(stamp) == stamp_ns


def test_negative_stamp_is_rejected():
    with pytest.raises(MessageError, match="negative time -5"):
        stamp_from_ns(-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8, np.uint64])
def test_sequences_round_trip_with_shape(dtype):
    values = (np.arange(12) * 7 % 11).astype(dtype).reshape(4, 3)
    sequence = to_sequence(values, dtype)
    assert isinstance(sequence, array.array) and len(sequence) == 12
    restored = from_sequence(sequence, dtype, "field", row_size=3, rows=4)
    np.testing.assert_array_equal(restored, values, strict=True)


def test_sequence_of_wrong_length_names_the_field():
    with pytest.raises(MessageError, match=r"keypoints_px: length 5, expected 3 x 2"):
        from_sequence(array.array("f", range(5)), np.float32, "keypoints_px", row_size=2, rows=3)


def test_keyframe_round_trips_exactly(sample_keyframe, assert_same):
    keyframe = sample_keyframe(n_keypoints=2000)
    msg = keyframe_to_msg(keyframe)
    assert msg.num_keypoints == 2000 and msg.descriptor_size_bytes == 32
    assert len(msg.descriptors) == 2000 * 32 and len(msg.points_cam) == 2000 * 3
    assert_same(keyframe_from_msg(msg), keyframe)


def test_keyframe_without_keypoints_round_trips(sample_keyframe, assert_same):
    keyframe = sample_keyframe(n_keypoints=0)
    assert_same(keyframe_from_msg(keyframe_to_msg(keyframe)), keyframe)


def test_keyframe_with_truncated_descriptors_is_rejected(sample_keyframe):
    msg = keyframe_to_msg(sample_keyframe(n_keypoints=10))
    msg.descriptors = msg.descriptors[:-1]
    with pytest.raises(MessageError, match=r"descriptors: length 319, expected 10 x 32"):
        keyframe_from_msg(msg)


def test_keyframe_with_bad_quaternion_is_rejected(sample_keyframe):
    msg = keyframe_to_msg(sample_keyframe(n_keypoints=3))
    msg.pose_odom_cam.pose.orientation.w += 0.5
    with pytest.raises(MessageError, match=r"pose_odom_cam.pose\[0\]: quaternion norm"):
        keyframe_from_msg(msg)


def test_keyframe_with_mismatched_arrays_is_not_converted(sample_keyframe):
    keyframe = sample_keyframe(n_keypoints=5)
    keyframe.points_cam = keyframe.points_cam[:4]
    with pytest.raises(MessageError, match=r"5 keypoints but descriptors \(5, 32\) and points_cam \(4, 3\)"):
        keyframe_to_msg(keyframe)


def test_camera_info_round_trips_and_rejects_binning(sample_camera, assert_same):
    msg = camera_info_to_msg(sample_camera, stamp_ns=42)
    assert_same(camera_info_from_msg(msg), sample_camera)
    msg.binning_x = 2
    with pytest.raises(MessageError, match="camera_info.binning: 2x0 binning"):
        camera_info_from_msg(msg)


def test_pose_graph_round_trips_exactly(sample_pose_graph, assert_same):
    graph = sample_pose_graph(n_nodes=300, n_loops=50)
    msg = pose_graph_to_msg(graph)
    assert len(msg.node_poses) == 300 * 7 and len(msg.edge_information) == (299 + 50) * 36
    assert_same(pose_graph_from_msg(msg), graph)


def test_pose_graph_edge_to_unknown_node_is_rejected(sample_pose_graph):
    msg = pose_graph_to_msg(sample_pose_graph(n_nodes=5, n_loops=0))
    msg.edge_to_ids[2] = 123456789
    with pytest.raises(MessageError, match=r"edge_to_ids\[2\]: id 123456789 is not in node_ids"):
        pose_graph_from_msg(msg)


def test_pose_graph_unknown_edge_kind_is_rejected(sample_pose_graph):
    msg = pose_graph_to_msg(sample_pose_graph(n_nodes=5, n_loops=0))
    msg.edge_kinds[1] = 7
    with pytest.raises(MessageError, match=r"edge_kinds\[1\]: unknown kind 7"):
        pose_graph_from_msg(msg)


def test_pose_graph_duplicate_node_is_rejected(sample_pose_graph):
    msg = pose_graph_to_msg(sample_pose_graph(n_nodes=5, n_loops=0))
    msg.node_ids[4] = msg.node_ids[0]
    with pytest.raises(MessageError, match=r"node_ids: duplicate id"):
        pose_graph_from_msg(msg)


def test_pose_graph_edge_kind_constants():
    assert (PoseGraph.EDGE_KIND_ODOMETRY, PoseGraph.EDGE_KIND_LOOP) == (0, 1)


def test_solver_stats_round_trip(sample_solver_stats, assert_same):
    assert_same(solver_stats_from_msg(solver_stats_to_msg(sample_solver_stats)), sample_solver_stats)


def test_every_core_enum_member_has_a_message_constant():
    assert set(PROBLEM_KIND_TO_MSG) == set(ProblemKind)
    assert set(PRECISION_TO_MSG) == set(Precision)
    assert set(TERMINATION_TO_MSG) == set(Termination)
    for table in (PROBLEM_KIND_TO_MSG, PRECISION_TO_MSG, TERMINATION_TO_MSG):
        assert len(set(table.values())) == len(table)


def test_solver_stats_unknown_constant_is_rejected(sample_solver_stats):
    msg = solver_stats_to_msg(sample_solver_stats)
    msg.precision_used = 9
    with pytest.raises(MessageError, match="precision_used: unknown value 9"):
        solver_stats_from_msg(msg)


def test_solver_stats_from_summary():
    iterations = [
        IterationRecord(i, 10.0 / (i + 1), 0.1, 1e-4, Precision.FP32, 20 + i, 1e-6 * (i + 1), "converged", True)
        for i in range(3)
    ]
    summary = Summary(
        termination=Termination.MAX_ITERATIONS,
        message="3 iterations",
        precision_requested=Precision.MIXED,
        precision_used=Precision.FP32,
        initial_cost=20.0,
        final_cost=3.5,
        iterations=iterations,
        escalations=[Escalation(1, Precision.MIXED, Precision.FP32, "non-finite step")],
        linear_solver="cgnr",
        num_residuals=600,
        num_parameters=120,
        jacobian_nnz=7200,
        timings=Timings(jacobian_s=0.1, linear_solve_s=0.5, update_s=0.05, total_s=0.7),
    )

    record = SolverStatsRecord.from_summary(summary, ProblemKind.BA, stamp_ns=5, frame_id="odom")
    msg = solver_stats_to_msg(record)

    assert msg.problem_kind == SolverStats.PROBLEM_BA
    assert (msg.precision_requested, msg.precision_used) == (SolverStats.PRECISION_MIXED, SolverStats.PRECISION_FP32)
    assert msg.precision_escalations == 1
    assert (msg.rows, msg.cols, msg.nnz) == (600, 120, 7200)
    assert (msg.outer_iterations, msg.inner_iterations) == (3, 63)
    assert msg.linear_solver_residual == pytest.approx(3e-6)
    assert (msg.jacobian_time_s, msg.linear_solve_time_s, msg.update_time_s, msg.total_time_s) == (0.1, 0.5, 0.05, 0.7)
    assert msg.termination == SolverStats.TERMINATION_MAX_ITERATIONS
    assert msg.termination_message == "3 iterations"


def test_transform_round_trip_is_a_rigid_motion():
    rng = np.random.default_rng(7)
    T_parent_child = se3_exp(rng.normal(size=(1, 6)))[0]
    msg = transform_to_msg(T_parent_child, "map", "odom", stamp_ns=10)
    assert (msg.header.frame_id, msg.child_frame_id, msg.header.stamp.nanosec) == ("map", "odom", 10)
    np.testing.assert_allclose(transform_from_msg(msg), T_parent_child, atol=1e-12)


def test_message_classes_come_from_the_interface_package():
    for cls in (Keyframe, PoseGraph, SolverStats):
        assert cls.__module__.startswith("mp_slam_interfaces.msg.")


def test_tf_qos_matches_tf2_ros():
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

    from mp_slam_ros.ros.qos import TF_QOS, TF_STATIC_QOS

    assert (TF_QOS.depth, TF_QOS.durability, TF_QOS.reliability) == (
        100, DurabilityPolicy.VOLATILE, ReliabilityPolicy.RELIABLE)
    assert (TF_STATIC_QOS.depth, TF_STATIC_QOS.durability, TF_STATIC_QOS.reliability) == (
        1, DurabilityPolicy.TRANSIENT_LOCAL, ReliabilityPolicy.RELIABLE)
