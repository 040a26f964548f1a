"""Both nodes in one process, without launch_ros: what ``mp-slam run`` and ``mp-slam demo`` start.

:class:`SlamProcess` builds ``vo_node`` and ``loop_closure_node`` in a private rclpy context with
the parameters of a preset (validated through the config dataclasses first), the command line's
``mode``/``precision`` on top, and spins them with a multithreaded executor in a background
thread. :meth:`SlamProcess.play` replays a bag into them with ``/clock`` (camera topics remapped
to the bag's), :meth:`SlamProcess.record` writes their outputs to an MCAP bag, and
:meth:`SlamProcess.wait_until_quiet` waits for the last keyframe and pose-graph solve to come out.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from mp_slam_interfaces.msg import Keyframe, PoseGraph, SolverStats
from nav_msgs.msg import Odometry, Path as PathMsg
from rclpy.context import Context
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.subscription import Subscription
from sensor_msgs.msg import PointCloud2
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from mp_slam_ros.config import flatten
from mp_slam_ros.io.bags import BagMessage, BagReader
from mp_slam_ros.nodes.loop_closure_node import LoopClosureNode
from mp_slam_ros.nodes.vo_inputs import INPUT_TOPICS
from mp_slam_ros.nodes.vo_node import VONode
from mp_slam_ros.pipelines.vo_bag import select_topics
from mp_slam_ros.pipelines.vo_config import SensorMode
from mp_slam_ros.ros.player import BagPlayer, PlayOptions
from mp_slam_ros.presets import (
    LOOP_CLOSURE_NODE,
    OUTPUT_REMAPPINGS,
    PRECISION_KEYS,
    VO_NODE,
    configs_from_parameters,
    parameters_for,
)
from mp_slam_ros.ros.qos import KEYFRAME_QOS, POSE_GRAPH_QOS, SOLVER_STATS_QOS, TF_QOS, TF_STATIC_LISTENER_QOS, reliable_qos
from mp_slam_ros.ros.recorder import TopicRecorder

#: /clock rate of a replay (Hz)
CLOCK_HZ = 100.0
#: Longest wait for the replayed inputs (and watched outputs) to match a subscription before playing.
MATCH_TIMEOUT_S = 30.0
#: the nodes' outputs recorded by ``--record``: relative name (in the namespace) or absolute -> (type, QoS)
RECORDED_OUTPUTS: dict[str, tuple[type, Any]] = {
    "/tf": (TFMessage, TF_QOS),
    "/tf_static": (TFMessage, TF_STATIC_LISTENER_QOS),
    "odometry": (Odometry, reliable_qos(50)),
    "path": (PathMsg, reliable_qos(1, latched=True)),
    "map_path": (PathMsg, reliable_qos(1, latched=True)),
    "landmarks": (PointCloud2, reliable_qos(1, latched=True)),
    "pose_graph": (PoseGraph, POSE_GRAPH_QOS),
    "loop_closures": (MarkerArray, reliable_qos(1, latched=True)),
    "solver_stats": (SolverStats, SOLVER_STATS_QOS),
    "/diagnostics": (DiagnosticArray, reliable_qos(10)),
}


@dataclass(frozen=True)
class BringupOptions:
    """What to start: a parameter file (None: defaults), mode/precision overrides, names, remappings."""

    params_file: Path | None = None
    mode: str | None = None
    precision: str | None = None
    use_sim_time: bool = False
    namespace: str = ""
    #: vo_node input name (``camera/color/image_raw``) -> topic
    camera_topics: dict[str, str] = field(default_factory=dict)
    #: parameters set on top, per node (tests: reliable inputs, an unbounded frame queue)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)


def node_parameter_overrides(node: str, options: BringupOptions) -> list[Parameter]:
    """The validated, typed parameters ``node`` starts with (file, then mode/precision, then extra)."""
    values = dict(parameters_for(options.params_file, node)) if options.params_file else {}
    if options.mode and node == VO_NODE:
        values["mode"] = options.mode
    if options.precision:
        values[PRECISION_KEYS[node]] = options.precision
    values.update(options.extra.get(node, {}))
    source = str(options.params_file or "command line")
    configs = configs_from_parameters(node, {k: v for k, v in values.items() if k != "use_sim_time"}, source)
    typed = {key: value for config in configs for key, value in flatten(config).items() if key in values}
    untyped = {key: value for key, value in values.items() if key not in typed and key != "use_sim_time"}
    return [Parameter(key, value=value) for key, value in {**typed, **untyped, "use_sim_time": options.use_sim_time}.items()]


def bag_camera_topics(bag: BagReader, mode: SensorMode | None) -> tuple[SensorMode, dict[str, str]]:
    """The bag's camera topic set (the first of ``mode`` found) as vo_node input name -> topic."""
    topics = select_topics(bag.topics, mode)
    bag_names = [topics.image, topics.second, topics.info] + ([topics.second_info] if topics.second_info else [])
    names = [name for name, _ in INPUT_TOPICS[topics.mode]]
    return topics.mode, dict(zip(names, bag_names))


class SlamProcess:
    """vo_node + loop_closure_node (+ a helper node for replay and recording) in one process."""

    def __init__(self, options: BringupOptions, domain_id: int | None = None) -> None:
        self.options = options
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        try:
            self.vo_node = VONode(context=self.context, namespace=options.namespace,
                                  cli_args=_remap_args(options.camera_topics.items()),
                                  parameter_overrides=node_parameter_overrides(VO_NODE, options))
            self.loop_closure_node = LoopClosureNode(context=self.context, namespace=options.namespace,
                                                     cli_args=_remap_args(OUTPUT_REMAPPINGS[LOOP_CLOSURE_NODE]),
                                                     parameter_overrides=node_parameter_overrides(LOOP_CLOSURE_NODE, options))
        except Exception:
            self.context.try_shutdown()
            raise
        self.helper = Node(f"mp_slam_run_{uuid.uuid4().hex[:6]}", context=self.context, namespace=options.namespace,
                           parameter_overrides=[Parameter("use_sim_time", value=options.use_sim_time)])
        self._last_output = time.monotonic()
        self._recording: list[Subscription] = []  # a running record()'s subscriptions
        self.keyframes = 0
        # Activity that wait_until_quiet watches: odometry too, so a VO working through a backlog of
        # frames without making keyframes (lost in a textureless view) is not taken for done.
        for name, cls, qos in (("keyframes", Keyframe, KEYFRAME_QOS), ("pose_graph", PoseGraph, POSE_GRAPH_QOS),
                               ("odometry", Odometry, reliable_qos(100))):
            self.helper.create_subscription(cls, name, lambda msg, n=name: self._on_output(n), qos, raw=True)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        for node in (self.vo_node, self.loop_closure_node, self.helper):
            self.executor.add_node(node)
        self._spinner = threading.Thread(target=self.executor.spin, name="mp_slam_executor", daemon=True)
        self._spinner.start()

    def _on_output(self, name: str) -> None:
        self._last_output = time.monotonic()
        if name == "keyframes":
            self.keyframes += 1

    def play(self, bag: BagReader, rate: float, on_message: Callable[[BagMessage], None] | None = None,
             should_stop: Callable[[], bool] = lambda: False, outputs: Sequence[Publisher] = ()) -> int:
        """Replay ``bag`` (with /clock) once every vo_node input it publishes, every publisher in
        ``outputs`` (e.g. ``vo_node.outputs.odometry`` when something collects it) and every
        subscription of a running :meth:`record` (on a topic that has a publisher) is matched
        (DDS discovery is asynchronous: a reliable but volatile topic loses what is published
        before its match; a demo run once lost 74 of 600 frames that way). Returns the number of
        messages published."""
        player = BagPlayer(self.helper, bag, PlayOptions(rate=rate, clock_hz=CLOCK_HZ))
        publishers = [player.publishers[topic] for topic in self.vo_node.input_topics if topic in player.publishers]
        publishers += list(outputs)
        recording = [s for s in self._recording if self.helper.count_publishers(s.topic_name) > 0]
        deadline = time.monotonic() + MATCH_TIMEOUT_S
        while time.monotonic() < deadline and (any(p.get_subscription_count() == 0 for p in publishers)
                                               or any(s.get_publisher_count() == 0 for s in recording)):
            time.sleep(0.05)
        return player.play(on_message, should_stop)

    def wait_until_quiet(self, quiet_s: float, timeout_s: float) -> bool:
        """Wait until no odometry, keyframe or pose graph came out for ``quiet_s`` and vo_node has
        no frame or window BA left (its statistics out); False after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() - self._last_output < quiet_s or not self.vo_node.idle():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    @contextmanager
    def record(self, path: Path) -> Iterator[TopicRecorder]:
        """Record :data:`RECORDED_OUTPUTS` (in the nodes' namespace) to an MCAP bag at ``path``."""
        topics = {self._absolute(name): spec for name, spec in RECORDED_OUTPUTS.items()}
        with TopicRecorder(self.helper, path, topics) as recorder:
            self._recording = recorder.subscriptions
            try:
                yield recorder
            finally:
                self._recording = []

    def _absolute(self, name: str) -> str:
        return name if name.startswith("/") else f"{self.options.namespace.rstrip('/')}/{name}"

    def close(self) -> None:
        """Stop the executor and the nodes' worker threads, shut the context down."""
        self.executor.shutdown()
        self._spinner.join(timeout=5.0)
        self.vo_node.close()
        for node in (self.vo_node, self.loop_closure_node, self.helper):
            node.destroy_node()
        self.context.try_shutdown()


def _remap_args(pairs: Any) -> list[str]:
    """``--ros-args -r from:=to ...`` of (from, to) pairs (empty when there are none)."""
    remaps = [arg for source, target in pairs for arg in ("-r", f"{source}:={target}")]
    return ["--ros-args", *remaps] if remaps else []
