"""QoS profiles of the package's topics, in one place.

The TF profiles are those of tf2_ros (``DynamicBroadcasterQoS``, ``StaticBroadcasterQoS`` and
``StaticListenerQoS``), so our /tf and /tf_static match rviz2, ``tf2_echo`` and every tf2 listener.
"""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

#: /tf: reliable, volatile, the last 100 messages (tf2_ros DynamicBroadcasterQoS).
TF_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

#: /tf_static publisher: latched (transient local), one message holding every static transform.
TF_STATIC_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

#: /tf_static subscriber: transient local so that a late subscriber gets the latched message.
TF_STATIC_LISTENER_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

#: Keyframes: reliable with a deep queue; the loop-closure node must not miss one.
KEYFRAME_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=50,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)

#: Pose graph: latched, so a late subscriber (rviz, a logger) gets the current graph at once.
POSE_GRAPH_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

#: Solver statistics: one message per solve, a short reliable queue.
SOLVER_STATS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
