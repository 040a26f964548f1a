"""Record live topics into an MCAP rosbag2 (a stand-in for ``ros2 bag record``), with rosbags.

Messages are written as they arrive (serialized CDR from ``raw=True`` subscriptions: no decode,
no re-encode), stamped with the wall-clock receive time as ``ros2 bag record`` does, each topic
with the QoS it was subscribed with (latched ones stay latched on replay). The package's own
message types (``mp_slam_interfaces``) are registered from their installed ``.msg`` files, so
Foxglove Studio and ``ros2 bag play`` read the bag without our package.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from rclpy.subscription import Subscription
from rosbags.rosbag2 import Writer, WriterError
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from mp_slam_ros.io.bags import BAG_VERSION, BagError, topic_qos

INTERFACES_PACKAGE = "mp_slam_interfaces"


def typestore_with_interfaces() -> Typestore:
    """ROS 2 Kilted's standard types plus this package's messages (from the installed .msg files)."""
    from ament_index_python.packages import get_package_share_directory

    typestore = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(Path(get_package_share_directory(INTERFACES_PACKAGE), "msg").glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{INTERFACES_PACKAGE}/msg/{path.stem}"))
    typestore.register(types)
    return typestore


def msgtype_of(cls: type) -> str:
    """``pkg/msg/Name`` of an rclpy message class."""
    return f"{cls.__module__.split('.')[0]}/msg/{cls.__name__}"


class TopicRecorder:
    """Subscribes ``node`` to ``topics`` (name -> (message class, QoS)) and writes them to ``path``.

    Use as a context manager around the run; :attr:`counts` holds the messages written per topic.
    """

    def __init__(self, node: Node, path: str | Path, topics: dict[str, tuple[type, QoSProfile]]) -> None:
        self.path = Path(path)
        self._node, self._topics = node, topics
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._connections: dict[str, object] = {}
        self._subscriptions: list[Subscription] = []

    def __enter__(self) -> TopicRecorder:
        typestore = typestore_with_interfaces()
        try:
            self._writer.open()
        except WriterError as error:
            raise BagError(self.path, str(error)) from None
        for topic, (cls, qos) in self._topics.items():
            latched = qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
            self._connections[topic] = self._writer.add_connection(
                topic, msgtype_of(cls), typestore=typestore, offered_qos_profiles=[topic_qos(latched)]
            )
            self._subscriptions.append(
                self._node.create_subscription(cls, topic, lambda data, name=topic: self._write(name, data), qos, raw=True)
            )
        return self

    @property
    def subscriptions(self) -> list[Subscription]:
        """The recording subscriptions (while recording)."""
        return list(self._subscriptions)

    def _write(self, topic: str, data: bytes) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.write(self._connections[topic], time.time_ns(), data)
                self.counts[topic] += 1

    def __exit__(self, *exc: object) -> None:
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        with self._lock:
            self._writer.close()
            self._writer = None
