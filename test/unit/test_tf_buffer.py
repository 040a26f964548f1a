"""Static TF buffer: chains compose, unknown and cyclic frames are refused with a reason."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tf2_msgs")

from tf2_msgs.msg import TFMessage  # noqa: E402

from mp_slam_ros.errors import MessageError  # noqa: E402
from mp_slam_ros.geometry.lie import se3_exp, se3_inverse  # noqa: E402
from mp_slam_ros.ros.conversions import transform_to_msg  # noqa: E402
from mp_slam_ros.ros.tf_buffer import StaticTfBuffer  # noqa: E402


def _pose(seed: int) -> np.ndarray:
    return se3_exp(np.random.default_rng(seed).normal(size=(1, 6)))[0]


def test_chains_compose_both_ways() -> None:
    T_base_link, T_link_optical, T_base_imu = _pose(1), _pose(2), _pose(3)
    buffer = StaticTfBuffer()
    msg = TFMessage(transforms=[
        transform_to_msg(T_base_link, "base_link", "camera_link", 0),
        transform_to_msg(T_link_optical, "camera_link", "camera_optical", 0),
        transform_to_msg(T_base_imu, "base_link", "imu", 0),
    ])
    assert buffer.add_message(msg) == 3
    np.testing.assert_allclose(buffer.lookup("base_link", "camera_optical"), T_base_link @ T_link_optical, atol=1e-12)
    np.testing.assert_allclose(buffer.lookup("camera_optical", "base_link"), se3_inverse(T_base_link @ T_link_optical), atol=1e-12)
    np.testing.assert_allclose(buffer.lookup("imu", "camera_optical"), se3_inverse(T_base_imu) @ T_base_link @ T_link_optical, atol=1e-12)
    np.testing.assert_allclose(buffer.lookup("imu", "imu"), np.eye(4))
    assert buffer.can_transform("imu", "camera_link") and not buffer.can_transform("imu", "map")


def test_replacing_a_transform_and_errors() -> None:
    buffer = StaticTfBuffer()
    buffer.set_transform(_pose(1), "base_link", "cam")
    buffer.set_transform(_pose(2), "base_link", "cam")
    np.testing.assert_allclose(buffer.lookup("base_link", "cam"), _pose(2))
    with pytest.raises(MessageError, match=r"no static transform chain from 'base_link' to 'other' \(known frames: base_link, cam\)"):
        buffer.lookup("base_link", "other")
    with pytest.raises(MessageError, match="would make a cycle"):
        buffer.set_transform(np.eye(4), "cam", "base_link")
    with pytest.raises(MessageError, match="invalid frame ids"):
        buffer.set_transform(np.eye(4), "cam", "cam")
