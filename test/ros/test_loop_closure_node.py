"""``loop_closure_node`` over real topics: synthetic keyframes (test/unit/test_loop_world.py)
published into it as ``mp_slam_interfaces/Keyframe``.

Checked: ``map -> odom`` on /tf at its rate, stamped ahead of the clock; the pose graph, path,
markers and solver statistics after loops are accepted; a fabricated wrong loop (a keyframe whose
features are those of another place) verified but rejected by the consistency check;
``~/refine_map`` (the global BA: its statistics, then ``map -> odom``); save ->
kill -> a new node loads the map -> a new session relocalises and ``map -> odom`` moves it into
the map frame.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from mp_slam_interfaces.msg import Keyframe, PoseGraph, SolverStats  # noqa: E402
from nav_msgs.msg import Path as PathMsg  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from mp_slam_ros.geometry.lie import se3_exp, se3_inverse  # noqa: E402
from mp_slam_ros.nodes.loop_closure_node import LoopClosureNode  # noqa: E402
from mp_slam_ros.ros.conversions import ns_from_stamp, transform_from_msg  # noqa: E402
from mp_slam_ros.ros.messages import keyframe_to_msg  # noqa: E402
from mp_slam_ros.ros.qos import POSE_GRAPH_QOS, reliable_qos  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from test_loop_world import circle_run, drifting_odometry, make_world  # noqa: E402

pytestmark = pytest.mark.ros
TIMEOUT_S = 90.0
PARAMETERS = {"loop.min_age_s": 10.0, "places.train_keyframes": 5, "places.vocabulary_words": 400, "diagnostics_period_s": 0.2}


@dataclasses.dataclass
class LCGraph:
    """A loop_closure_node, a talker/listener node, one executor thread."""

    context: Context
    node: LoopClosureNode
    peer: Node
    prefix: str
    received: dict[str, list[Any]] = dataclasses.field(default_factory=dict)

    def subscribe(self, msg_type: type, name: str, qos: Any = 200) -> list[Any]:
        messages: list[Any] = self.received.setdefault(name, [])
        self.peer.create_subscription(msg_type, f"{self.prefix}/{name}", messages.append, qos)
        return messages

    def wait_for(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not done():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {TIMEOUT_S} s waiting for {what}")
            time.sleep(0.05)

    def call(self, name: str) -> Trigger.Response:
        client = self.peer.create_client(Trigger, f"{self.prefix}/{self.node.get_name()}/{name}")
        self.wait_for(client.service_is_ready, f"service {name}")
        future = client.call_async(Trigger.Request())
        self.wait_for(future.done, f"a response of {name}")
        return future.result()

    def publish(self, keyframes: list) -> None:
        publisher = self.peer.create_publisher(Keyframe, f"{self.prefix}/keyframes", reliable_qos(1000))
        self.wait_for(lambda: publisher.get_subscription_count() > 0, "the node subscribed to keyframes")
        for keyframe in keyframes:
            publisher.publish(keyframe_to_msg(keyframe))

    def diagnostics(self) -> dict[str, str]:
        messages = self.received["diagnostics"]
        return {kv.key: kv.value for kv in messages[-1].status[0].values} if messages else {}


@pytest.fixture
def lc_graph(ros_context: Context, tmp_path: Path) -> Iterator[Callable[[], LCGraph]]:
    """Factory of node graphs sharing one map directory; each torn down after the test (or kill)."""
    teardowns: list[Callable[[], None]] = []
    prefix = f"/lc_test_{uuid.uuid4().hex[:8]}"

    def make() -> LCGraph:
        cli_args = ["--ros-args", "-r", f"/tf:={prefix}/tf", "-r", f"/diagnostics:={prefix}/diagnostics"]
        overrides = [Parameter(k, value=v) for k, v in {**PARAMETERS, "map_directory": str(tmp_path / "map")}.items()]
        node = LoopClosureNode(context=ros_context, namespace=prefix, cli_args=cli_args, parameter_overrides=overrides)
        peer = Node(f"lc_test_peer_{uuid.uuid4().hex[:6]}", context=ros_context)
        executor = SingleThreadedExecutor(context=ros_context)
        executor.add_node(node)
        executor.add_node(peer)
        thread = threading.Thread(target=executor.spin, daemon=True)
        thread.start()
        graph = LCGraph(ros_context, node, peer, prefix)
        graph.subscribe(DiagnosticArray, "diagnostics")
        graph.subscribe(TFMessage, "tf")

        def teardown() -> None:
            if not thread.is_alive():
                return
            executor.shutdown()
            thread.join(timeout=5.0)
            node.destroy_node()
            peer.destroy_node()

        teardowns.append(teardown)
        graph.kill = teardown  # type: ignore[attr-defined]
        return graph

    yield make
    for teardown in reversed(teardowns):
        teardown()  # a graph the test killed is already down


def map_odom(tf_messages: list[TFMessage]) -> list[tuple[int, np.ndarray]]:
    return [(ns_from_stamp(t.header.stamp), transform_from_msg(t)) for m in tf_messages for t in m.transforms
            if t.header.frame_id.endswith("map") and t.child_frame_id.endswith("odom")]


def test_loops_tf_outputs_and_a_fabricated_wrong_loop(lc_graph: Callable[[], LCGraph]) -> None:
    graph = lc_graph()
    stats = graph.subscribe(SolverStats, "solver_stats")
    pose_graphs = graph.subscribe(PoseGraph, "pose_graph", POSE_GRAPH_QOS)
    paths = graph.subscribe(PathMsg, "path", reliable_qos(1, latched=True))
    markers = graph.subscribe(MarkerArray, "loop_closures", reliable_qos(1, latched=True))
    world = make_world(7, [np.zeros(3)])
    truth, stamps, ids = circle_run(world, np.zeros(3), laps=1.4)
    odometry = drifting_odometry(truth, world.rng)
    keyframes = [world.keyframe(i, s, T, O) for i, s, T, O in zip(ids, stamps, truth, odometry)]
    # keyframe 30 carries the features of the place of keyframe 10 (100 deg away): a verified, wrong loop
    fake = world.keyframe(30, stamps[30], truth[10], odometry[30])
    keyframes[30] = fake
    graph.publish(keyframes)
    graph.wait_for(lambda: graph.diagnostics().get("keyframes") == str(len(keyframes)), "all keyframes processed")
    graph.wait_for(lambda: len(stats) > 0 and paths and len(paths[-1].poses) == len(keyframes), "a solve and the full path")
    counts = graph.diagnostics()
    assert int(counts["accepted"]) > 0 and int(counts["rejected_consistency"]) >= 1
    last = pose_graphs[-1]
    loops = np.array(last.edge_kinds) == PoseGraph.EDGE_KIND_LOOP
    pairs = set(zip(np.array(last.edge_from_ids)[loops].tolist(), np.array(last.edge_to_ids)[loops].tolist()))
    assert pairs and all(b != 30 for _, b in pairs)
    assert {m.color.g > 0.5 for m in markers[-1].markers} == {True, False}
    assert stats[-1].problem_kind == SolverStats.PROBLEM_PGO
    # map -> odom from its timer (tf_rate_hz 20), stamped transform_tolerance ahead of the clock.
    # A loaded machine only ever delays the timer: the lower bound just says it keeps firing,
    # the upper one that it is not faster than asked.
    count, started = len(graph.received["tf"]), time.monotonic()
    time.sleep(1.0)
    rate = (len(graph.received["tf"]) - count) / (time.monotonic() - started)
    assert 2.0 <= rate <= 30.0
    stamp_ns, T = map_odom(graph.received["tf"])[-1]
    assert stamp_ns > graph.node.get_clock().now().nanoseconds - int(0.05e9)
    assert np.allclose(T, graph.node.pipeline.T_map_odom)
    # ~/refine_map: the global BA runs in the solve worker; its statistics, then map -> odom moves
    response = graph.call("refine_map")
    assert response.success, response.message
    graph.wait_for(lambda: any(m.problem_kind == SolverStats.PROBLEM_BA for m in stats), "the global BA's statistics")
    graph.wait_for(lambda: graph.diagnostics().get("global_ba") == "1", "the global BA counted")
    graph.wait_for(lambda: np.allclose(map_odom(graph.received["tf"])[-1][1], graph.node.pipeline.T_map_odom), "map -> odom after the global BA")


def test_save_kill_load_relocalise(lc_graph: Callable[[], LCGraph]) -> None:
    first = lc_graph()
    world = make_world(8, [np.zeros(3)])
    truth, stamps, ids = circle_run(world, np.zeros(3), laps=1.2)
    odometry = drifting_odometry(truth, world.rng)
    first.publish([world.keyframe(i, s, T, O) for i, s, T, O in zip(ids, stamps, truth, odometry)])
    first.wait_for(lambda: first.diagnostics().get("keyframes") == str(len(ids)), "all keyframes processed")
    assert first.call("save_map").success
    _, _, T_map_cam = first.node.pipeline.poses()
    first.kill()  # type: ignore[attr-defined]
    second = lc_graph()
    response = second.call("load_map")
    assert response.success, response.message
    T_odom_world = se3_exp(np.array([[1.5, 0.5, 0.0, 0.0, 0.0, -0.6]]))[0]
    truth2, stamps2, ids2 = circle_run(world, np.zeros(3), laps=0.3, start_s=900.0)
    second.publish([world.keyframe(i, s, T, T_odom_world @ T) for i, s, T in zip(ids2, stamps2, truth2)])
    second.wait_for(lambda: second.diagnostics().get("relocalizations") == "1", "relocalisation")
    expected = T_map_cam[0] @ se3_inverse(truth[0]) @ se3_inverse(T_odom_world)
    second.wait_for(lambda: bool(map_odom(second.received["tf"])) and np.allclose(map_odom(second.received["tf"])[-1][1][:3, 3], expected[:3, 3], atol=0.15),
                    "map -> odom of the relocalised session")
