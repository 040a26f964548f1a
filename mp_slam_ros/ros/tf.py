"""Publishing transforms on /tf and /tf_static, as tf2_ros' broadcasters do.

tf2_ros is not available as a wheel, but TF is only two topics of ``tf2_msgs/msg/TFMessage``;
:class:`TfBroadcaster` publishes them with tf2_ros' QoS (:mod:`mp_slam_ros.ros.qos`) and its static
semantics (every static transform sent so far is republished in one latched message, the latest per
child frame), so rviz2, ``ros2 run tf2_ros tf2_echo`` and any tf2 listener read them.
"""

from __future__ import annotations

from collections.abc import Iterable

from geometry_msgs.msg import TransformStamped
from rclpy.node import Node
from tf2_msgs.msg import TFMessage

from mp_slam_ros.errors import MessageError
from mp_slam_ros.ros.qos import TF_QOS, TF_STATIC_QOS

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"


class TfBroadcaster:
    """Dynamic and static transform publisher of one node."""

    def __init__(self, node: Node, *, tf_topic: str = TF_TOPIC, tf_static_topic: str = TF_STATIC_TOPIC) -> None:
        """Create the two publishers on ``node`` (other topic names only for tests and remapping)."""
        self._tf_publisher = node.create_publisher(TFMessage, tf_topic, TF_QOS)
        self._static_publisher = node.create_publisher(TFMessage, tf_static_topic, TF_STATIC_QOS)
        self._static_by_child: dict[str, TransformStamped] = {}

    def send(self, transforms: Iterable[TransformStamped]) -> None:
        """Publish time-varying transforms (e.g. odom -> base_link) on /tf, in one message."""
        message = TFMessage(transforms=_checked(transforms))
        self._tf_publisher.publish(message)

    def send_static(self, transforms: Iterable[TransformStamped]) -> None:
        """Add or replace static transforms and republish all of them, latched, on /tf_static."""
        for transform in _checked(transforms):
            self._static_by_child[transform.child_frame_id] = transform
        self._static_publisher.publish(TFMessage(transforms=list(self._static_by_child.values())))


def _checked(transforms: Iterable[TransformStamped]) -> list[TransformStamped]:
    """The transforms as a list; MessageError if a frame id is empty or a frame is its own parent."""
    checked = list(transforms)
    for index, transform in enumerate(checked):
        parent, child = transform.header.frame_id, transform.child_frame_id
        if not parent or not child or parent == child:
            raise MessageError(f"transforms[{index}]: invalid frames {parent!r} -> {child!r}")
    return checked
