"""The console-script entry of a node: init, build, spin until shut down, clean up."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from mp_slam_ros.errors import MpSlamError


@runtime_checkable
class ClosableNode(Protocol):
    """A node whose worker threads :meth:`close` stops (before ``destroy_node``)."""

    def close(self) -> None:
        """Stop the node's worker threads."""
        ...


def spin_node(make_node: Callable[[], Node], name: str, args: list[str] | None = None) -> int:
    """Run the node ``make_node`` builds until Ctrl-C or shutdown; exit code 1 (one line on
    stderr) when its parameters are refused at start-up. ``close()`` is called when the node
    has one, then ``destroy_node()``."""
    rclpy.init(args=args)
    try:
        node = make_node()
    except MpSlamError as error:
        print(f"{name}: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if isinstance(node, ClosableNode):
            node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
