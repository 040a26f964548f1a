"""rosbag2 read/write with the pure-Python ``rosbags`` library (MCAP storage, CDR, standard types).

Bags are written as rosbag2 version 8 (readable by ``ros2 bag`` on Jazzy and Kilted) with MCAP
storage and optional zstd chunk compression (what the MCAP plugin's ``zstd_fast`` profile does).
Latched topics (``/tf_static``) are recorded with transient-local QoS so replays latch them too.
Every failure to open or read a bag becomes a :class:`BagError` naming the bag and the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rosbags.interfaces import Connection, ConnectionExtRosbag2, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, ReaderError, Writer, WriterError
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
from rosbags.typesys import Stores, get_typestore

from mp_slam_ros.errors import FileFormatError

#: the message definitions used for every bag we write and read
TYPESTORE = get_typestore(Stores.ROS2_KILTED)
BAG_VERSION = 8
_INFINITE = QosTime(sec=9223372036, nsec=854775807)
_PIXEL_DTYPES = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "mono8": (np.uint8, 1), "16UC1": (np.uint16, 1), "mono16": (np.uint16, 1), "32FC1": (np.float32, 1)}


class BagError(FileFormatError):
    """A bag is missing, corrupt, truncated, or lacks the topics a caller needs."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(path, None, reason)


def topic_qos(latched: bool) -> Qos:
    """Reliable keep-last QoS; transient-local durability (depth 1) for latched topics."""
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=1 if latched else 10,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
        deadline=_INFINITE,
        lifespan=_INFINITE,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=_INFINITE,
        avoid_ros_namespace_conventions=False,
    )


class BagWriter:
    """Write standard messages into a new rosbag2 directory (MCAP); use as a context manager."""

    def __init__(self, path: str | Path, compression: str = "zstd") -> None:
        self.path = Path(path)
        try:
            self._writer = Writer(self.path, version=BAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        except WriterError as error:
            raise BagError(self.path, str(error)) from None
        if compression == "zstd":
            self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._connections: dict[str, tuple[Connection, str]] = {}

    def __enter__(self) -> BagWriter:
        try:
            self._writer.open()
        except WriterError as error:
            raise BagError(self.path, str(error)) from None
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc_type is None:
            self._writer.close()
        else:
            self._writer.abort()

    def add_topic(self, topic: str, msgtype: str, latched: bool = False) -> None:
        """Declare a topic of a standard type (e.g. ``sensor_msgs/msg/Image``)."""
        connection = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE, offered_qos_profiles=[topic_qos(latched)])
        self._connections[topic] = (connection, msgtype)

    def write(self, topic: str, stamp_ns: int, message: Any) -> None:
        """Serialize (CDR) and write one message with receive time ``stamp_ns``."""
        connection, msgtype = self._connections[topic]
        self._writer.write(connection, stamp_ns, TYPESTORE.serialize_cdr(message, msgtype))


@dataclass(frozen=True)
class BagMessage:
    """One stored message: topic, type, log time (ns) and CDR bytes."""

    topic: str
    msgtype: str
    stamp_ns: int
    rawdata: bytes


class BagReader:
    """Read a rosbag2 (directory, or a single ``.mcap``/``.db3`` file); use as a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise BagError(self.path, "no such bag (expected a rosbag2 directory or .mcap/.db3 file)")
        try:
            self._reader = Reader(self.path)
        except (ReaderError, OSError) as error:
            raise BagError(self.path, f"not a rosbag2: {error}") from None

    def __enter__(self) -> BagReader:
        try:
            self._reader.open()
        except Exception as error:  # rosbags raises assorted errors (and MemoryError) on damaged files
            raise BagError(self.path, f"cannot open bag (corrupt or truncated?): {type(error).__name__}: {error}") from None
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._reader.close()

    @property
    def topics(self) -> dict[str, str]:
        """Topic name -> message type."""
        return {c.topic: c.msgtype for c in self._reader.connections}

    @property
    def counts(self) -> dict[str, int]:
        """Topic name -> number of messages (from the bag's index)."""
        totals: dict[str, int] = {}
        for connection in self._reader.connections:
            totals[connection.topic] = totals.get(connection.topic, 0) + connection.msgcount
        return totals

    @property
    def start_ns(self) -> int:
        """Log time of the first message."""
        return int(self._reader.start_time)

    @property
    def end_ns(self) -> int:
        """Log time of the last message (inclusive)."""
        return int(self._reader.end_time) - 1

    @property
    def message_count(self) -> int:
        """Number of messages in the bag."""
        return int(self._reader.message_count)

    def qos(self, topic: str) -> list[Qos]:
        """QoS profiles the recorded publishers offered on ``topic`` (may be empty)."""
        for connection in self._reader.connections:
            if connection.topic == topic and isinstance(connection.ext, ConnectionExtRosbag2):
                return list(connection.ext.offered_qos_profiles)
        return []

    def require(self, expected: Mapping[str, str]) -> None:
        """Raise :class:`BagError` listing every expected ``topic -> type`` that is absent or differs."""
        have = self.topics
        problems = [
            f"{topic} ({msgtype})" + ("" if topic not in have else f" has type {have[topic]}")
            for topic, msgtype in expected.items()
            if have.get(topic) != msgtype
        ]
        if problems:
            raise BagError(self.path, f"missing expected topics: {', '.join(problems)}; bag has {sorted(have) or 'no topics'}")

    def messages(self, topics: Iterable[str] | None = None, start_ns: int | None = None) -> Iterator[BagMessage]:
        """Messages in log-time order, optionally only ``topics`` and from ``start_ns`` on.

        Reading everything from the start also checks that as many messages came out as the
        bag's index announces (a damaged chunk otherwise loses messages silently).
        """
        wanted = set(topics) if topics is not None else None
        connections = [c for c in self._reader.connections if wanted is None or c.topic in wanted]
        if not connections:
            return
        count = 0
        try:
            for connection, stamp, rawdata in self._reader.messages(connections=connections, start=start_ns):
                count += 1
                yield BagMessage(connection.topic, connection.msgtype, int(stamp), bytes(rawdata))
        except Exception as error:  # rosbags and its decompressors raise assorted errors on damage
            raise BagError(self.path, f"cannot read messages (corrupt or truncated?): {type(error).__name__}: {error}") from None
        expected = sum(c.msgcount for c in connections)
        if start_ns is None and count != expected:
            raise BagError(self.path, f"read {count} of the {expected} messages the index announces (corrupt or truncated?)")

    def decoded(self, topics: Iterable[str] | None = None) -> Iterator[tuple[BagMessage, Any]]:
        """Like :meth:`messages` with each message also deserialized into a typestore object."""
        for message in self.messages(topics):
            yield message, deserialize(message, self.path)


def deserialize(message: BagMessage, path: str | Path = "<bag>") -> Any:
    """CDR bytes -> typestore message object; raises :class:`BagError` on malformed data."""
    try:
        return TYPESTORE.deserialize_cdr(message.rawdata, message.msgtype)
    except Exception as error:  # rosbags raises assorted errors on malformed CDR
        raise BagError(path, f"cannot decode a {message.msgtype} on {message.topic} at {message.stamp_ns} ns: {error}") from None


def image_array(msg: Any) -> NDArray[np.generic]:
    """Pixels of a sensor_msgs/Image as ``(H, W)`` or ``(H, W, C)`` (rgb8, bgr8, mono8/16, 16UC1, 32FC1)."""
    if msg.encoding not in _PIXEL_DTYPES:
        raise BagError("<message>", f"unsupported image encoding {msg.encoding!r}")
    dtype, channels = _PIXEL_DTYPES[msg.encoding]
    itemsize = np.dtype(dtype).itemsize
    order = ">" if msg.is_bigendian else "<"
    rows = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.step)[:, : msg.width * channels * itemsize]
    pixels = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order)).astype(dtype)
    return pixels.reshape(msg.height, msg.width, channels) if channels > 1 else pixels.reshape(msg.height, msg.width)


def stamp_ns(header: Any) -> int:
    """Nanoseconds of a std_msgs/Header stamp."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
