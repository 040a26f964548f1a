"""The installed interfaces are the ones generated from msg/, and are wire-compatible with ROS 2.

Independent reference: rosbags' pure-Python type system and CDR codec (its own copy of the
standard ROS 2 Kilted message definitions, no rosidl code).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from ament_index_python.packages import get_package_share_directory
from mp_slam_interfaces import msg as generated
from rclpy.serialization import serialize_message
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosidl_adapter.parser import parse_message_string
from tf2_msgs.msg import TFMessage

from mp_slam_ros.ros.conversions import transform_to_msg
from mp_slam_ros.ros.messages import keyframe_to_msg, pose_graph_to_msg

pytestmark = pytest.mark.ros

MSG_DIR = Path(__file__).resolve().parents[2] / "msg"
MSG_FILES = sorted(MSG_DIR.glob("*.msg"))


def generated_type_hash(package: str, name: str) -> str:
    """RIHS01 hash that rosidl computed for ``package/msg/name`` when generating it."""
    description = Path(get_package_share_directory(package), "msg", f"{name}.json")
    return json.loads(description.read_text())["type_hashes"][0]["hash_string"]


@pytest.fixture(scope="module")
def typestore():
    """ROS 2 Kilted type store plus the types of msg/ parsed from their text."""
    store = get_typestore(Stores.ROS2_KILTED)
    for path in MSG_FILES:
        store.register(get_types_from_msg(path.read_text(), f"mp_slam_interfaces/msg/{path.stem}"))
    return store


def test_msg_dir_holds_the_three_interfaces():
    assert [path.stem for path in MSG_FILES] == ["Keyframe", "PoseGraph", "SolverStats"]


@pytest.mark.parametrize("path", MSG_FILES, ids=lambda path: path.stem)
def test_installed_class_is_generated_from_current_msg_file(path: Path, typestore):
    spec = parse_message_string("mp_slam_interfaces", path.stem, path.read_text())
    cls = getattr(generated, path.stem)

    # Generated code installed in the environment, not a class declared in this repository.
    module_file = Path(sys.modules[cls.__module__].__file__).resolve()
    assert cls.__module__.startswith("mp_slam_interfaces.msg._")
    assert {"site-packages", "dist-packages"} & set(module_file.parts), module_file
    assert list(cls.get_fields_and_field_types()) == [field.name for field in spec.fields]
    assert {c.name: getattr(cls, c.name) for c in spec.constants} == {c.name: c.value for c in spec.constants}
    # Same type hash as an independent implementation computes from the .msg text: field types
    # and nested types match too (a stale build after editing msg/ fails here).
    assert generated_type_hash("mp_slam_interfaces", path.stem) == typestore.hash_rihs01(
        f"mp_slam_interfaces/msg/{path.stem}"
    )


def test_tf2_msgs_is_the_standard_type():
    standard = get_typestore(Stores.ROS2_KILTED).hash_rihs01("tf2_msgs/msg/TFMessage")
    assert generated_type_hash("tf2_msgs", "TFMessage") == standard


def test_tf_message_bytes_decode_as_standard_tf2_msgs(typestore):
    transform = transform_to_msg(np.eye(4), "odom", "base_link", 1_700_000_000_000_000_003)
    transform.transform.translation.x = 1.25

    decoded = typestore.deserialize_cdr(serialize_message(TFMessage(transforms=[transform])), "tf2_msgs/msg/TFMessage")

    (only,) = decoded.transforms
    assert (only.header.frame_id, only.child_frame_id) == ("odom", "base_link")
    assert (only.header.stamp.sec, only.header.stamp.nanosec) == (1_700_000_000, 3)
    assert only.transform.translation.x == 1.25
    assert only.transform.rotation.w == 1.0


def test_keyframe_bytes_decode_with_independent_cdr(typestore, sample_keyframe):
    keyframe = sample_keyframe(n_keypoints=300)

    decoded = typestore.deserialize_cdr(serialize_message(keyframe_to_msg(keyframe)), "mp_slam_interfaces/msg/Keyframe")

    assert decoded.keyframe_id == keyframe.keyframe_id
    assert decoded.camera_info.header.frame_id == keyframe.camera.frame_id
    np.testing.assert_array_equal(decoded.keypoints_px.reshape(-1, 2), keyframe.keypoints_px)
    np.testing.assert_array_equal(decoded.descriptors.reshape(-1, 32), keyframe.descriptors)
    np.testing.assert_array_equal(decoded.points_cam.reshape(-1, 3), keyframe.points_cam)
    np.testing.assert_array_equal(decoded.pose_odom_cam.covariance.reshape(6, 6), keyframe.covariance_odom_cam)


def test_pose_graph_bytes_decode_with_independent_cdr(typestore, sample_pose_graph):
    graph = sample_pose_graph(n_nodes=50, n_loops=10)

    decoded = typestore.deserialize_cdr(serialize_message(pose_graph_to_msg(graph)), "mp_slam_interfaces/msg/PoseGraph")

    assert decoded.header.frame_id == graph.frame_id
    np.testing.assert_array_equal(decoded.node_ids, graph.node_ids)
    np.testing.assert_array_equal(decoded.node_poses.reshape(-1, 7), graph.node_poses)
    np.testing.assert_array_equal(decoded.edge_information.reshape(-1, 6, 6), graph.edge_information)
    np.testing.assert_array_equal(decoded.edge_kinds, graph.edge_kinds)
