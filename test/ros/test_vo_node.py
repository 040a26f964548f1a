"""``vo_node`` over real topics: a generated household sequence replayed into it (``BagPlayer``).

Checked: odometry against the ground truth (RGB-D and stereo), TF, keyframes, path, landmarks,
``solver_stats`` following a ``ba.precision`` change made through the parameter service, refused
parameter values answered with their reason, the services, and the drop counters of
``/diagnostics``. Outputs live under a per-test namespace; the bag's camera topics are remapped in.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from mp_slam_interfaces.msg import Keyframe, SolverStats  # noqa: E402
from mp_slam_interfaces.srv import ResetToPose  # noqa: E402
from nav_msgs.msg import Odometry, Path as PathMsg  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402
from std_srvs.srv import SetBool, Trigger  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from mp_slam_ros.config import with_updates  # noqa: E402
from mp_slam_ros.errors import ConfigError  # noqa: E402
from mp_slam_ros.geometry.lie import se3_inverse  # noqa: E402
from mp_slam_ros.io.bags import BagReader  # noqa: E402
from mp_slam_ros.io.tum import read_tum  # noqa: E402
from mp_slam_ros.nodes.vo_node import VONode  # noqa: E402
from mp_slam_ros.pipelines.vo_config import VOConfig  # noqa: E402
from mp_slam_ros.pipelines.vo_run import run_vo  # noqa: E402
from mp_slam_ros.ros.conversions import ns_from_stamp  # noqa: E402
from mp_slam_ros.ros.player import BagPlayer, PlayOptions  # noqa: E402

pytestmark = pytest.mark.ros
TIMEOUT_S = 60.0
#: bag topics of each mode, in the node's input order
BAG_INPUTS = {
    "rgbd": {
        "camera/color/image_raw": "/camera/color/image_raw",
        "camera/aligned_depth_to_color/image_raw": "/camera/aligned_depth_to_color/image_raw",
        "camera/color/camera_info": "/camera/color/camera_info",
    },
    "stereo": {
        "left/image_rect": "/camera/color/image_raw",
        "right/image_rect": "/camera/right/image_raw",
        "left/camera_info": "/camera/color/camera_info",
        "right/camera_info": "/camera/right/camera_info",
    },
}

#: Reliable inputs and an unbounded wait: every frame is tracked however loaded the shared CPU is
#: (the default, sensor QoS and at most 2 waiting frames, drops instead; that is measured, not tested).
EVERY_FRAME = {"qos__reliability": "reliable", "qos__depth": 100, "max_pending_frames": 1000}
FRAMES = 90  # 3 s at 30 Hz


@pytest.fixture(scope="session")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3 s household sequence, 320x240 RGB-D + stereo (10 cm baseline), 30 Hz."""
    from mp_slam_ros.cli.main import main

    out = tmp_path_factory.mktemp("vo_seq") / "seq"
    args = ["generate", "--seed", "4", "--duration", "3", "--image-scale", "0.5", "--stereo-baseline", "0.1", "-o", str(out), "--no-progress"]
    assert main(args) == 0
    return out


@dataclass
class VOGraph:
    """A vo_node and a listener node in one process, spun by an executor thread."""

    context: Context
    node: VONode
    listener: Node
    prefix: str
    received: dict[str, list[Any]] = field(default_factory=dict)

    def subscribe(self, msg_type: type, name: str, qos: int = 200) -> list[Any]:
        """Collect messages of ``name`` (relative to the test namespace) into a list."""
        messages: list[Any] = self.received.setdefault(name, [])
        self.listener.create_subscription(msg_type, f"{self.prefix}/{name}", messages.append, qos)
        return messages

    def wait_for(self, done: Callable[[], bool], what: str, timeout_s: float = TIMEOUT_S) -> None:
        """Sleep until ``done()``; fail naming ``what`` after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(0.02)

    def call(self, srv_type: type, name: str, request: Any) -> Any:
        """Call service ``name`` of the node (``~/`` names are relative to it) and return the response."""
        client = self.listener.create_client(srv_type, f"{self.prefix}/vo_node/{name}")
        self.wait_for(client.service_is_ready, f"service {name}")
        future = client.call_async(request)
        self.wait_for(future.done, f"a response of {name}")
        return future.result()

    def set_parameters(self, **values: Any) -> list[Any]:
        """Set node parameters through the parameter service (dots as ``__``); the results."""
        request = SetParameters.Request(parameters=[
            ParameterMsg(name=name.replace("__", "."), value=Parameter(name, value=value).get_parameter_value())
            for name, value in values.items()
        ])
        return list(self.call(SetParameters, "set_parameters", request).results)

    def diagnostics(self) -> dict[str, str]:
        """Key/values of the node's latest /diagnostics status."""
        array = self.received["diagnostics"][-1]
        return {kv.key: kv.value for kv in array.status[0].values}

    def play(self, bag_dir: Path, rate: float = 1.0) -> int:
        """Replay the bag (all of it) into the graph from a player node; returns messages published."""
        player_node = Node(f"vo_test_player_{uuid.uuid4().hex[:6]}", context=self.context)
        try:
            with BagReader(bag_dir) as bag:
                player = BagPlayer(player_node, bag, PlayOptions(rate=rate))
                topic = self.node.input_topics[0]
                self.wait_for(lambda: player_node.count_subscribers(topic) > 0, f"the node subscribed to {topic}")
                return player.play()
        finally:
            player_node.destroy_node()


def make_graph(context: Context, mode: str, parameters: dict[str, Any], remap_to_bag: bool) -> tuple[VOGraph, Callable[[], None]]:
    """Start a vo_node (namespace per test) and a listener; returns the graph and its teardown."""
    prefix = f"/vo_test_{uuid.uuid4().hex[:8]}"
    remaps = [f"/tf:={prefix}/tf", f"/diagnostics:={prefix}/diagnostics", f"/clock:={prefix}/clock"]
    if remap_to_bag:
        remaps += [f"{name}:={topic}" for name, topic in BAG_INPUTS[mode].items()]
    else:
        remaps.append(f"/tf_static:={prefix}/tf_static")
    cli_args = ["--ros-args"] + [arg for remap in remaps for arg in ("-r", remap)]
    overrides = [Parameter(name, value=value) for name, value in {"mode": mode, "diagnostics_period_s": 0.2, **parameters}.items()]
    node = VONode(context=context, namespace=prefix, cli_args=cli_args, parameter_overrides=overrides)
    listener = Node(f"vo_test_listener_{uuid.uuid4().hex[:6]}", context=context)
    graph = VOGraph(context, node, listener, prefix)
    graph.subscribe(DiagnosticArray, "diagnostics")
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(listener)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()

    def teardown() -> None:
        node.close()
        executor.shutdown()
        thread.join(timeout=5.0)
        node.destroy_node()
        listener.destroy_node()

    return graph, teardown


@pytest.fixture
def vo_graph(ros_context: Context) -> Iterator[Callable[..., VOGraph]]:
    """Factory ``vo_graph(mode, remap_to_bag=True, **parameters)``; every graph is torn down after the test."""
    teardowns: list[Callable[[], None]] = []

    def make(mode: str = "rgbd", remap_to_bag: bool = True, **parameters: Any) -> VOGraph:
        graph, teardown = make_graph(ros_context, mode, {k.replace("__", "."): v for k, v in parameters.items()}, remap_to_bag)
        teardowns.append(teardown)
        return graph

    yield make
    for teardown in reversed(teardowns):
        teardown()


def position_errors(odometry: list[Odometry], sequence: Path) -> tuple[np.ndarray, float]:
    """Position error (m) of each odometry message against the ground truth (odom = first pose), and the path length."""
    truth = read_tum(sequence / "groundtruth.tum")
    T_world_base = truth.matrices()
    stamps_s = np.array([ns_from_stamp(o.header.stamp) for o in odometry]) / 1e9
    index = np.argmin(np.abs(truth.timestamps_s[None, :] - stamps_s[:, None]), axis=1)
    assert np.allclose(truth.timestamps_s[index], stamps_s, rtol=0.0, atol=1e-6), "odometry stamps are image stamps"
    T_first_base = se3_inverse(T_world_base[index[0]]) @ T_world_base[index]
    positions = np.array([[o.pose.pose.position.x, o.pose.pose.position.y, o.pose.pose.position.z] for o in odometry])
    travelled = float(np.sum(np.linalg.norm(np.diff(T_first_base[:, :3, 3], axis=0), axis=1)))
    return np.linalg.norm(positions - T_first_base[:, :3, 3], axis=1), travelled


def frames_accounted(graph: VOGraph) -> int:
    """Frames the node tracked, dropped (counted) or saw missing, from its latest /diagnostics."""
    if not graph.received["diagnostics"]:
        return 0
    diagnostics = graph.diagnostics()
    return sum(int(diagnostics[key]) for key in ("frames_processed", "frames_dropped", "frames_missing_upstream"))


def test_rgbd_replay_matches_the_offline_pipeline(vo_graph, sequence: Path) -> None:
    graph = vo_graph("rgbd", ba__synchronous=True, **EVERY_FRAME)
    odometry = graph.subscribe(Odometry, "odometry")
    keyframes = graph.subscribe(Keyframe, "keyframes")
    paths = graph.subscribe(PathMsg, "path", 10)
    clouds = graph.subscribe(PointCloud2, "landmarks", 10)
    tf = graph.subscribe(TFMessage, "tf")
    graph.play(sequence / "bag")
    graph.wait_for(lambda: frames_accounted(graph) == FRAMES and len(odometry) == int(graph.diagnostics()["frames_processed"]), "every frame")

    diagnostics = graph.diagnostics()
    assert diagnostics["frames_dropped"] == diagnostics["frames_missing_upstream"] == "0"
    offline = run_vo(sequence / "bag", with_updates(VOConfig(), {"ba.synchronous": True}))
    positions = np.array([[o.pose.pose.position.x, o.pose.pose.position.y, o.pose.pose.position.z] for o in odometry])
    np.testing.assert_allclose(positions, np.array(offline.T_odom_base)[:, :3, 3], atol=1e-9)
    errors, travelled = position_errors(odometry, sequence)
    assert errors.max() < 0.05 + 0.2 * travelled, f"max position error {errors.max():.3f} m over {travelled:.2f} m"
    assert all(o.header.frame_id == "odom" and o.child_frame_id == "base_link" for o in odometry)
    covariance = np.array(odometry[-1].pose.covariance).reshape(6, 6)
    twist_covariance = np.array(odometry[-1].twist.covariance).reshape(6, 6)
    assert np.all(np.diag(covariance) > 0) and np.all(np.diag(twist_covariance) > 0)
    assert len(keyframes) == offline.keyframes and keyframes[0].num_keypoints > 0 and keyframes[0].header.frame_id == "odom"
    assert paths[-1].poses[-1].header.stamp == keyframes[-1].header.stamp  # published with each keyframe
    assert paths[-1].poses[0].header.stamp == odometry[0].header.stamp and clouds[-1].width > 0
    assert len(tf) == len(odometry) and tf[-1].transforms[0].child_frame_id == "base_link"
    assert diagnostics["status"] == "ok" and diagnostics["lost_frames"] == "0"


def test_stereo_replay_switches_precision_mid_run(vo_graph, sequence: Path) -> None:
    graph = vo_graph("stereo", publish_tf=False, ba__precision="mixed", **EVERY_FRAME)
    odometry = graph.subscribe(Odometry, "odometry")
    stats = graph.subscribe(SolverStats, "solver_stats")
    tf = graph.subscribe(TFMessage, "tf")
    switched_at: list[int] = []

    def switch_precision_after_the_first_solve() -> None:
        graph.wait_for(lambda: bool(stats), "a first solver_stats")
        switched_at.append(len(stats))
        assert [r.successful for r in graph.set_parameters(ba__precision="fp64")] == [True]

    switcher = threading.Thread(target=switch_precision_after_the_first_solve, daemon=True)
    switcher.start()
    graph.play(sequence / "bag")
    switcher.join(timeout=TIMEOUT_S)
    graph.wait_for(lambda: frames_accounted(graph) == FRAMES, "every frame")
    graph.wait_for(lambda: len(stats) > switched_at[0] + 1, "solver_stats after the precision change")

    assert stats[0].precision_requested == SolverStats.PRECISION_MIXED
    assert stats[-1].precision_requested == SolverStats.PRECISION_FP64 == stats[-1].precision_used
    assert graph.diagnostics()["precision_requested"] == "fp64"
    errors, travelled = position_errors(odometry, sequence)
    assert len(odometry) == FRAMES
    assert errors.max() < 0.05 + 0.2 * travelled, f"max position error {errors.max():.3f} m over {travelled:.2f} m"
    assert tf == []  # publish_tf false


def test_an_integer_start_up_value_of_a_float_parameter_is_taken_and_a_wrong_type_named(ros_context: Context) -> None:
    node = VONode(context=ros_context, parameter_overrides=[Parameter("ba.max_solve_time_ms", value=40)])
    try:
        assert node.get_parameter("ba.max_solve_time_ms").value == 40.0
    finally:
        node.close()
        node.destroy_node()
    with pytest.raises(ConfigError, match="ba.max_solve_time_ms='forty': expected a float"):
        VONode(context=ros_context, parameter_overrides=[Parameter("ba.max_solve_time_ms", value="forty")])


def test_parameters_refused_with_reason_and_services(vo_graph) -> None:
    graph = vo_graph("rgbd", remap_to_bag=False)
    node = graph.node
    precision = node.get_parameter("ba.precision").value
    results = graph.set_parameters(ba__precision="fp8")
    assert not results[0].successful and "ba.precision='fp8': must be one of fp64, fp32, fp16, mixed" in results[0].reason
    results = graph.set_parameters(ba__fixed_keyframes=60)
    assert not results[0].successful and "ba.fixed_keyframes=60: must be < window_size (50)" in results[0].reason
    results = graph.set_parameters(frontend__max_features=5)
    assert not results[0].successful and "out of range" in results[0].reason
    results = graph.set_parameters(mode="stereo")
    assert not results[0].successful and "read-only" in results[0].reason
    results = graph.set_parameters(base_frame="odom")
    assert not results[0].successful and "must differ from odom_frame" in results[0].reason
    results = graph.set_parameters(camera_to_base=[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0])
    assert not results[0].successful and "quaternion norm" in results[0].reason
    assert node.get_parameter("ba.precision").value == precision and node.get_parameter("base_frame").value == "base_link"
    descriptor = node.describe_parameter("frontend.max_features")
    assert descriptor.description and descriptor.integer_range[0].from_value == 20
    assert graph.set_parameters(ba__solver="schur", sync__max_interval_s=0.01)[0].successful
    assert node.sync.max_interval_ns == 10_000_000

    assert graph.call(Trigger, "reset", Trigger.Request()).success
    assert graph.call(SetBool, "set_paused", SetBool.Request(data=True)).message.startswith("paused")
    assert graph.call(SetBool, "set_paused", SetBool.Request(data=False)).success
    bad = ResetToPose.Request()
    bad.pose.orientation.w = 0.0
    response = graph.call(ResetToPose, "reset_to_pose", bad)
    assert not response.success and "quaternion norm" in response.message
