"""Real rclpy nodes for the ROS tests: a talker and a listener in one process, over Fast DDS.

Isolation from other test runs on the same machine: a private rclpy context on a random domain
id, discovery limited to localhost, and topic names with a random prefix per test.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.serialization import serialize_message

# Read by the middleware at rclpy.init: never discover peers beyond this machine.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

TIMEOUT_S = 15.0


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    """A domain id for this test session (1..100), unlikely to collide with a parallel run."""
    return random.SystemRandom().randint(1, 100)


@pytest.fixture
def ros_context(ros_domain_id: int) -> Iterator[Context]:
    """An initialized, private rclpy context, shut down after the test."""
    context = Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    try:
        yield context
    finally:
        context.try_shutdown()


@dataclass
class NodePair:
    """Two nodes of one process (talker publishes, listener subscribes) and their executor."""

    talker: Node
    listener: Node
    executor: SingleThreadedExecutor
    prefix: str  # unique topic namespace of this test

    def topic(self, name: str) -> str:
        """Absolute topic name under this test's private prefix."""
        return f"{self.prefix}/{name}"

    def spin_until(self, done: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
        """Spin both nodes until ``done()``; fail naming ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
            self.executor.spin_once(timeout_sec=0.02)

    def receive(self, msg_type: type, topic: str, qos: QoSProfile, send: Callable[[], None],
                *, subscribe_after_send: bool = False) -> Any:
        """Subscribe ``listener`` to ``topic``, call ``send()`` (after matching) and return the message.

        ``subscribe_after_send`` tests latching: the subscription is created after ``send()``.
        """
        received: list[Any] = []

        def subscribe() -> None:
            self.listener.create_subscription(msg_type, topic, received.append, qos)

        if subscribe_after_send:
            send()
            subscribe()
        else:
            subscribe()
            self.spin_until(lambda: self.talker.count_subscribers(topic) > 0, f"a subscriber on {topic}")
            send()
        self.spin_until(lambda: bool(received), f"a {msg_type.__name__} on {topic}")
        return received[-1]


@pytest.fixture
def node_pair(ros_context: Context) -> Iterator[NodePair]:
    """A talker and a listener node in this process, spun by one executor."""
    suffix = uuid.uuid4().hex[:8]
    talker = Node(f"mp_slam_test_talker_{suffix}", context=ros_context)
    listener = Node(f"mp_slam_test_listener_{suffix}", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(talker)
    executor.add_node(listener)
    try:
        yield NodePair(talker, listener, executor, prefix=f"/mp_slam_test_{suffix}")
    finally:
        executor.shutdown()
        talker.destroy_node()
        listener.destroy_node()


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[NodePair, str, Any], None]:
    """Write one line per message that crossed between the nodes into the test log."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def write(pair: NodePair, topic: str, message: Any) -> None:
        size_kb = len(serialize_message(message)) / 1024.0
        line = (
            f"[ros] {type(message).__module__.split('.')[0]}/{type(message).__name__} "
            f"{pair.talker.get_name()} -> {pair.listener.get_name()} on {topic} ({size_kb:.1f} KiB)"
        )
        if reporter is None or capture is None:
            print(line)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"\n    {line}")

    return write
