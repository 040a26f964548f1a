"""Replay a rosbag2 into the live ROS 2 graph (a stand-in for ``ros2 bag play``).

Messages are published exactly as stored (serialized CDR bytes, ``Publisher.publish(bytes)``)
with the QoS their recorder offered (so ``/tf_static`` stays latched), paced by their log time
divided by ``rate``. With ``clock_hz`` > 0, ``/clock`` carries the bag time for nodes running
with ``use_sim_time``. Latched topics recorded before ``start_offset_s`` are still published first.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import rclpy
from rclpy.context import Context
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosReliability
from rosgraph_msgs.msg import Clock

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.io.bags import BagMessage, BagReader

_DEFAULT_QOS = QoSProfile(depth=10)
_CLOCK_QOS = QoSProfile(depth=1)


@dataclass(frozen=True)
class PlayOptions:
    """How to replay: speed factor, /clock rate (0: none), looping, start offset, topic filter,
    and a delay before the first message (``ros2 bag play --delay``: DDS discovery is
    asynchronous, and a volatile subscriber loses what is published before it is matched)."""

    rate: float = 1.0
    clock_hz: float = 0.0
    loop: bool = False
    start_offset_s: float = 0.0
    topics: tuple[str, ...] | None = None
    delay_s: float = 0.0

    def validate(self) -> PlayOptions:
        """Return ``self`` or raise :class:`ConfigError`."""
        if not self.rate > 0.0:
            raise ConfigError("rate", self.rate, "must be > 0")
        if not 0.0 <= self.clock_hz <= 10_000.0:
            raise ConfigError("clock", self.clock_hz, "must be in [0, 10000] Hz")
        if self.start_offset_s < 0.0:
            raise ConfigError("start_offset", self.start_offset_s, "must be >= 0 s")
        if not 0.0 <= self.delay_s <= 3600.0:
            raise ConfigError("delay", self.delay_s, "must be in [0, 3600] s")
        return self


def _message_class(msgtype: str) -> type | None:
    """Python class of ``pkg/msg/Name``, or None when that message package is not installed."""
    package, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError):
        return None


def rclpy_qos(profiles: list[Qos]) -> QoSProfile:
    """rclpy QoS of the first recorded profile (defaults: reliable, volatile, keep last 10)."""
    if not profiles:
        return _DEFAULT_QOS
    qos = profiles[0]
    return QoSProfile(
        history=HistoryPolicy.KEEP_ALL if qos.history == QosHistory.KEEP_ALL else HistoryPolicy.KEEP_LAST,
        depth=max(1, int(qos.depth)),
        reliability=ReliabilityPolicy.BEST_EFFORT if qos.reliability == QosReliability.BEST_EFFORT else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if qos.durability == QosDurability.TRANSIENT_LOCAL else DurabilityPolicy.VOLATILE,
    )


class BagPlayer:
    """Publishes the messages of an open :class:`BagReader` from ``node``."""

    def __init__(self, node: Node, bag: BagReader, options: PlayOptions) -> None:
        self.node, self.bag, self.options = node, bag, options.validate()
        self.publishers: dict[str, Publisher] = {}
        #: topics that cannot be published here: topic -> message type
        self.skipped: dict[str, str] = {}
        wanted = set(options.topics) if options.topics is not None else None
        for topic, msgtype in sorted(bag.topics.items()):
            if wanted is not None and topic not in wanted:
                continue
            cls = _message_class(msgtype)
            if cls is None:
                self.skipped[topic] = msgtype
                continue
            self.publishers[topic] = node.create_publisher(cls, topic, rclpy_qos(bag.qos(topic)))
        self._latched = {t for t in self.publishers if rclpy_qos(bag.qos(t)).durability == DurabilityPolicy.TRANSIENT_LOCAL}
        self._clock = node.create_publisher(Clock, "/clock", _CLOCK_QOS) if options.clock_hz > 0 else None

    @property
    def start_ns(self) -> int:
        """Bag time where playback starts."""
        return self.bag.start_ns + int(round(self.options.start_offset_s * 1e9))

    def play(self, on_message: Callable[[BagMessage], None] | None = None, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Replay (once, or until ``should_stop()`` when looping); returns the number published."""
        if self.start_ns > self.bag.end_ns:
            raise ConfigError("start_offset", self.options.start_offset_s, f"beyond the bag's end ({(self.bag.end_ns - self.bag.start_ns) / 1e9:.3f} s)")
        published = 0
        while True:
            if self.options.delay_s > 0.0:
                time.sleep(self.options.delay_s)
            published += self._play_once(on_message, should_stop)
            if not self.options.loop or should_stop():
                return published

    def _play_once(self, on_message: Callable[[BagMessage], None] | None, should_stop: Callable[[], bool]) -> int:
        published = 0
        topics = list(self.publishers)
        if self.options.start_offset_s > 0 and self._latched:
            for message in self.bag.messages(self._latched):
                if message.stamp_ns < self.start_ns:
                    published += self._publish(message, on_message)
        wall_start = time.monotonic()
        next_clock = wall_start
        start_ns = self.start_ns if self.options.start_offset_s > 0 else None  # None: full integrity check
        for message in self.bag.messages(topics, start_ns=start_ns):
            due = wall_start + (message.stamp_ns - self.start_ns) / 1e9 / self.options.rate
            next_clock = self._wait_until(due, wall_start, next_clock)
            if should_stop():
                return published
            published += self._publish(message, on_message)
        return published

    def _wait_until(self, due: float, wall_start: float, next_clock: float) -> float:
        """Sleep until wall time ``due``, publishing /clock on schedule; returns the next clock tick."""
        while True:
            now = time.monotonic()
            if self._clock is not None and now >= next_clock:
                bag_ns = self.start_ns + int((now - wall_start) * self.options.rate * 1e9)
                clock = Clock()
                clock.clock.sec, clock.clock.nanosec = divmod(bag_ns, 1_000_000_000)
                self._clock.publish(clock)
                next_clock += 1.0 / self.options.clock_hz
            if now >= due:
                return next_clock
            wake = due if self._clock is None else min(due, next_clock)
            time.sleep(max(0.0, min(wake - now, 0.05)))

    def _publish(self, message: BagMessage, on_message: Callable[[BagMessage], None] | None) -> int:
        self.publishers[message.topic].publish(message.rawdata)
        if on_message is not None:
            on_message(message)
        return 1


def play_bag(
    path: str | Path,
    options: PlayOptions,
    on_start: Callable[[BagPlayer], Callable[[BagMessage], None] | None] = lambda player: None,
) -> int:
    """Open the bag, start a private rclpy context and node ``mp_slam_player``, replay, shut down.

    ``on_start(player)`` runs once the publishers exist (report ``player.skipped``, size a progress
    bar) and may return a per-message callback. Returns the number of messages published.
    """
    with BagReader(path) as bag:
        context = Context()
        rclpy.init(context=context)
        node = Node("mp_slam_player", context=context)
        try:
            player = BagPlayer(node, bag, options)
            return player.play(on_start(player))
        finally:
            node.destroy_node()
            context.try_shutdown()
