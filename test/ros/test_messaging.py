"""Real nodes exchange every message of the package over DDS; the contents round-trip exactly.

The listener's callbacks receive instances of the classes generated from msg/ (imported from
mp_slam_interfaces.msg) and tf2_msgs; the received messages equal the sent ones field by field
(serialized bytes are not compared: CDR alignment padding is not zeroed), and the numpy side is
compared after conversion back.
"""

from __future__ import annotations

import array

import numpy as np
import pytest
from mp_slam_interfaces.msg import Keyframe, PoseGraph, SolverStats
from tf2_msgs.msg import TFMessage

from mp_slam_ros.geometry.lie import se3_exp
from mp_slam_ros.ros.conversions import transform_from_msg, transform_to_msg
from mp_slam_ros.ros.messages import (
    keyframe_from_msg,
    keyframe_to_msg,
    pose_graph_from_msg,
    pose_graph_to_msg,
    solver_stats_from_msg,
    solver_stats_to_msg,
)
from mp_slam_ros.ros.qos import (
    KEYFRAME_QOS,
    POSE_GRAPH_QOS,
    SOLVER_STATS_QOS,
    TF_QOS,
    TF_STATIC_LISTENER_QOS,
)
from mp_slam_ros.ros.tf import TfBroadcaster

pytestmark = pytest.mark.ros


def test_keyframe_with_2000_keypoints_crosses_between_nodes(node_pair, sample_keyframe, report, assert_same):
    keyframe = sample_keyframe(n_keypoints=2000, descriptor_size_bytes=32)
    sent = keyframe_to_msg(keyframe)
    topic = node_pair.topic("keyframes")
    publisher = node_pair.talker.create_publisher(Keyframe, topic, KEYFRAME_QOS)

    received = node_pair.receive(Keyframe, topic, KEYFRAME_QOS, lambda: publisher.publish(sent))

    report(node_pair, topic, received)
    assert type(received) is Keyframe
    assert_same(keyframe_from_msg(received), keyframe)
    assert bytes(received.points_cam) == bytes(sent.points_cam)  # bit-exact, NaN rows included
    received.points_cam = sent.points_cam = array.array("f")  # NaN != NaN: compare the rest by ==
    assert received == sent


def test_pose_graph_crosses_between_nodes_latched(node_pair, sample_pose_graph, report, assert_same):
    graph = sample_pose_graph(n_nodes=500, n_loops=200)
    sent = pose_graph_to_msg(graph)
    topic = node_pair.topic("pose_graph")
    publisher = node_pair.talker.create_publisher(PoseGraph, topic, POSE_GRAPH_QOS)

    # Transient local: a subscriber that arrives after the publication still gets the graph.
    received = node_pair.receive(
        PoseGraph, topic, POSE_GRAPH_QOS, lambda: publisher.publish(sent), subscribe_after_send=True
    )

    report(node_pair, topic, received)
    assert type(received) is PoseGraph
    assert received == sent
    assert_same(pose_graph_from_msg(received), graph)


def test_solver_stats_cross_between_nodes(node_pair, sample_solver_stats, report, assert_same):
    sent = solver_stats_to_msg(sample_solver_stats)
    topic = node_pair.topic("solver_stats")
    publisher = node_pair.talker.create_publisher(SolverStats, topic, SOLVER_STATS_QOS)

    received = node_pair.receive(SolverStats, topic, SOLVER_STATS_QOS, lambda: publisher.publish(sent))

    report(node_pair, topic, received)
    assert type(received) is SolverStats
    assert received == sent
    assert_same(solver_stats_from_msg(received), sample_solver_stats)


def test_tf_broadcaster_publishes_dynamic_transforms(node_pair, report):
    rng = np.random.default_rng(3)
    T_odom_base = se3_exp(rng.normal(size=(1, 6)))[0]
    T_base_cam = se3_exp(rng.normal(size=(1, 6)))[0]
    sent = [
        transform_to_msg(T_odom_base, "odom", "base_link", 1_700_000_000_000_000_001),
        transform_to_msg(T_base_cam, "base_link", "camera_link", 1_700_000_000_000_000_001),
    ]
    topics = {"tf_topic": node_pair.topic("tf"), "tf_static_topic": node_pair.topic("tf_static")}
    broadcaster = TfBroadcaster(node_pair.talker, **topics)

    received = node_pair.receive(TFMessage, topics["tf_topic"], TF_QOS, lambda: broadcaster.send(sent))

    report(node_pair, topics["tf_topic"], received)
    assert type(received) is TFMessage
    assert received == TFMessage(transforms=sent)
    np.testing.assert_allclose(transform_from_msg(received.transforms[0]), T_odom_base, atol=1e-12)
    np.testing.assert_allclose(transform_from_msg(received.transforms[1]), T_base_cam, atol=1e-12)


def test_tf_static_is_latched_and_accumulates_per_child_frame(node_pair, report):
    topics = {"tf_topic": node_pair.topic("tf"), "tf_static_topic": node_pair.topic("tf_static")}
    broadcaster = TfBroadcaster(node_pair.talker, **topics)
    stamp_ns = 1_700_000_000_000_000_002
    old_cam = transform_to_msg(np.eye(4), "base_link", "camera_link", stamp_ns)
    T_base_imu, T_base_cam = se3_exp(np.array([[0.1, 0.0, 0.2, 0.0, 0.0, 0.3], [0.2, 0.0, 0.5, 0.0, 0.1, 0.0]]))
    imu = transform_to_msg(T_base_imu, "base_link", "imu_link", stamp_ns)
    new_cam = transform_to_msg(T_base_cam, "base_link", "camera_link", stamp_ns)

    def send_all() -> None:
        broadcaster.send_static([old_cam, imu])
        broadcaster.send_static([new_cam])  # replaces camera_link, keeps imu_link

    received = node_pair.receive(
        TFMessage, topics["tf_static_topic"], TF_STATIC_LISTENER_QOS, send_all, subscribe_after_send=True
    )

    report(node_pair, topics["tf_static_topic"], received)
    by_child = {transform.child_frame_id: transform for transform in received.transforms}
    assert sorted(by_child) == ["camera_link", "imu_link"]
    assert by_child["camera_link"] == new_cam
    assert by_child["imu_link"] == imu
