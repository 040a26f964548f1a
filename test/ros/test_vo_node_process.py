"""The ``vo_node`` console script as a process: killed mid-bag, restarted, it tracks the rest of
the bag from a fresh ``odom``, and it exits cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from nav_msgs.msg import Odometry  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from test_vo_node import BAG_INPUTS, EVERY_FRAME, sequence  # noqa: E402,F401  (fixture)

from mp_slam_ros.geometry.lie import se3_to_translation_quat  # noqa: E402
from mp_slam_ros.io.bags import BagReader  # noqa: E402
from mp_slam_ros.pipelines.vo_bag import BagFrames  # noqa: E402
from mp_slam_ros.ros.conversions import ns_from_stamp  # noqa: E402
from mp_slam_ros.ros.player import BagPlayer, PlayOptions  # noqa: E402

pytestmark = pytest.mark.ros
VO_NODE = Path(sys.prefix, "bin", "vo_node")
TIMEOUT_S = 60.0
RESTART_AT_S = 1.5


class Graph:
    """A listener spun in this process, and vo_node processes started on demand."""

    def __init__(self, context: Context, domain_id: int) -> None:
        self.context, self.domain_id = context, domain_id
        self.prefix = f"/vo_proc_{uuid.uuid4().hex[:8]}"
        self.node = Node(f"vo_proc_test_{uuid.uuid4().hex[:6]}", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.odometry: list[Odometry] = []
        self.node.create_subscription(Odometry, f"{self.prefix}/odometry", self.odometry.append, 200)

    def spin_until(self, done, what, process: subprocess.Popen | None = None) -> None:
        """Spin until ``done()``; fail (with the process output) after TIMEOUT_S or if it exits.
        ``what`` names what is awaited (a string, or a callable giving one at failure time)."""
        deadline = self.node.get_clock().now().nanoseconds + int(TIMEOUT_S * 1e9)
        while not done():
            if process is not None and process.poll() is not None:
                pytest.fail(f"vo_node exited ({process.returncode}) while waiting for {_text(what)}:\n{process.stdout.read()}")
            if self.node.get_clock().now().nanoseconds > deadline:
                output = ""
                if process is not None:
                    process.kill()
                    output = process.communicate()[0]
                pytest.fail(f"timed out after {TIMEOUT_S} s waiting for {_text(what)}\n{output}")
            self.executor.spin_once(timeout_sec=0.02)

    def start_vo_node(self, T_base_cam: np.ndarray) -> subprocess.Popen:
        """``vo_node`` in its own process, namespaced, reading the bag's RGB-D topics.

        The extrinsics are a parameter: frames that arrive before /tf_static would be dropped,
        and how long discovery takes on a loaded machine is not what this test is about.
        """
        remaps = [f"{name}:={topic}" for name, topic in BAG_INPUTS["rgbd"].items()]
        remaps += [f"__ns:={self.prefix}", f"/tf:={self.prefix}/tf", f"/diagnostics:={self.prefix}/diagnostics"]
        translation, quat_xyzw = se3_to_translation_quat(T_base_cam)
        pose7 = ", ".join(repr(float(v)) for v in np.concatenate([translation[0], quat_xyzw[0]]))
        parameters = [f"{name.replace('__', '.')}:={value}" for name, value in EVERY_FRAME.items()]
        parameters.append(f"camera_to_base:=[{pose7}]")
        args = [str(VO_NODE), "--ros-args"] + [a for r in remaps for a in ("-r", r)] + [a for p in parameters for a in ("-p", p)]
        env = {**os.environ, "ROS_DOMAIN_ID": str(self.domain_id), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
               "OPENBLAS_NUM_THREADS": "1"}
        return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def endpoints(self) -> set[bytes]:
        """Ids of the subscriptions to every input topic (colour, depth, camera info) and of the
        odometry publishers in the graph (a killed process's stay listed until DDS notices it is
        gone). Waiting for the colour subscription alone let a loaded machine discover the depth
        and camera-info subscriptions after the 1.5 s replay had ended: no frame synchronised."""
        subscriptions = [info for topic in BAG_INPUTS["rgbd"].values()
                         for info in self.node.get_subscriptions_info_by_topic(topic)]
        publishers = self.node.get_publishers_info_by_topic(f"{self.prefix}/odometry")
        return {bytes(info.endpoint_gid) for info in subscriptions + publishers}

    def play(self, bag_dir: Path, process: subprocess.Popen, options: PlayOptions, stop_after: int | None = None,
             stale: frozenset[bytes] = frozenset()) -> None:
        """Replay into ``process`` once its endpoints (not ``stale`` ones) are in the graph; stop
        when ``stop_after`` odometry messages arrived."""
        with BagReader(bag_dir) as bag:
            player = BagPlayer(self.node, bag, options)
            expected = len(BAG_INPUTS["rgbd"]) + 1  # the node's input subscriptions + its odometry publisher
            self.spin_until(lambda: len(self.endpoints() - stale) == expected, "vo_node to start", process)

            def should_stop() -> bool:
                self.executor.spin_once(timeout_sec=0.0)
                return stop_after is not None and len(self.odometry) >= stop_after

            player.play(should_stop=should_stop)


def _text(what) -> str:
    return what() if callable(what) else what


@pytest.fixture
def graph(ros_context: Context, ros_domain_id: int) -> Iterator[Graph]:
    graph = Graph(ros_context, ros_domain_id)
    yield graph
    graph.executor.shutdown()
    graph.node.destroy_node()


def test_killed_and_restarted_mid_bag(graph: Graph, sequence: Path) -> None:
    assert VO_NODE.is_file(), f"{VO_NODE} missing: run ./scripts/setup.sh"
    with BagFrames(sequence / "bag") as frames:
        T_base_cam = frames.T_base_cam
    first = graph.start_vo_node(T_base_cam)
    try:
        graph.play(sequence / "bag", first, PlayOptions(), stop_after=10)
        stale = frozenset(graph.endpoints())
        first.kill()  # no clean shutdown: what a crash or an OOM kill looks like
        assert first.wait(timeout=10) == -signal.SIGKILL
    finally:
        first.kill()
    start_ns = ns_from_stamp(graph.odometry[0].header.stamp) + int(RESTART_AT_S * 1e9)

    def resumed() -> list[Odometry]:
        return [o for o in graph.odometry if ns_from_stamp(o.header.stamp) >= start_ns]

    assert resumed() == []  # the first process stopped well before the restart point
    # The killed reader's reliable subscriptions stay matched until DDS notices the process is
    # gone (participant lease); replaying before that stalls the writers on its missing acks
    # after a history's worth of messages (seen: 10 of 45 frames through, then nothing).
    graph.spin_until(lambda: not graph.endpoints() & stale, "DDS to drop the killed vo_node")
    second = graph.start_vo_node(T_base_cam)
    try:
        graph.play(sequence / "bag", second, PlayOptions(start_offset_s=RESTART_AT_S), stale=stale)
        graph.spin_until(lambda: len(resumed()) >= 45, lambda: f"odometry of the second half ({len(resumed())}/45)", second)
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=60) == 0, second.stdout.read()
    finally:
        second.kill()
    position = resumed()[0].pose.pose.position
    assert np.allclose([position.x, position.y, position.z], 0.0, atol=1e-12)  # a fresh odom frame
    assert len(resumed()) == 45  # every frame of the second half (1.5 s at 30 Hz)
