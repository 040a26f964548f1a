"""vo_node's wheel-odometry buffer: interpolation at image stamps, kept while frames lag behind."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")

from nav_msgs.msg import Odometry  # noqa: E402

from mp_slam_ros.nodes.vo_inputs import WheelOdometry  # noqa: E402
from mp_slam_ros.ros.conversions import stamp_from_ns  # noqa: E402

pytestmark = pytest.mark.ros
PERIOD_NS = 20_000_000  # 50 Hz


def _sample(k: int) -> Odometry:
    msg = Odometry()
    msg.header.stamp = stamp_from_ns(k * PERIOD_NS)
    msg.pose.pose.position.x = 0.01 * k
    msg.pose.pose.orientation.w = 1.0
    return msg


def test_a_lagging_tracker_still_gets_its_frames_wheel_pose() -> None:
    wheel = WheelOdometry()
    for k in range(1500):  # 30 s of wheel odometry arrived while tracking is still at 1 s
        wheel.add(_sample(k))
    pose = wheel.at(50 * PERIOD_NS + PERIOD_NS // 2)
    assert pose is not None and pose[0, 3] == pytest.approx(0.505)
    wheel.release_before(50 * PERIOD_NS + PERIOD_NS // 2)
    assert wheel.at(49 * PERIOD_NS) is None  # released: no later frame needs it
    np.testing.assert_allclose(wheel.at(51 * PERIOD_NS)[:3, 3], [0.51, 0.0, 0.0])
    assert wheel.at(1500 * PERIOD_NS) is None  # newer than every sample


def test_time_going_backwards_starts_over() -> None:
    wheel = WheelOdometry()
    for k in range(100, 200):
        wheel.add(_sample(k))
    wheel.add(_sample(3))  # the bag looped
    assert wheel.at(150 * PERIOD_NS) is None
    wheel.add(_sample(4))
    assert wheel.at(4 * PERIOD_NS)[0, 3] == pytest.approx(0.04)
