"""QoS profiles of the package's topics, in one place.

The TF profiles are those of tf2_ros (``DynamicBroadcasterQoS``, ``StaticBroadcasterQoS`` and
``StaticListenerQoS``), so our /tf and /tf_static match rviz2, ``tf2_echo`` and every tf2 listener.
The output profiles are reliable and keep the last ``depth`` messages; camera inputs use
:func:`camera_qos` (sensor data by default).
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy


def reliable_qos(depth: int, *, latched: bool = False) -> QoSProfile:
    """Reliable, keep-last-``depth`` profile; ``latched`` = transient local (late joiners get it)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


#: /tf: the last 100 messages, volatile (tf2_ros DynamicBroadcasterQoS).
TF_QOS = reliable_qos(100)
#: /tf_static publisher: one latched message holding every static transform.
TF_STATIC_QOS = reliable_qos(1, latched=True)
#: /tf_static subscriber: transient local so that a late subscriber gets the latched message.
TF_STATIC_LISTENER_QOS = reliable_qos(100, latched=True)
#: Keyframes: a deep queue; the loop-closure node must not miss one.
KEYFRAME_QOS = reliable_qos(50)
#: Pose graph: latched, so a late subscriber (rviz, a logger) gets the current graph at once.
POSE_GRAPH_QOS = reliable_qos(1, latched=True)
#: Solver statistics: one message per solve, a short queue.
SOLVER_STATS_QOS = reliable_qos(10)


def camera_qos(reliable: bool, depth: int) -> QoSProfile:
    """Camera subscriptions: sensor-data QoS (best effort, volatile, keep last ``depth``) or reliable.

    A best-effort subscriber matches both kinds of publisher; a reliable one only reliable
    publishers (the most reported camera-pipeline failure), hence the default.
    """
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE,
    )
