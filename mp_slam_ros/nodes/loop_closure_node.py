"""``loop_closure_node``: the ROS 2 adapter of :class:`~mp_slam_ros.pipelines.loop_closure.LoopClosure`.

Subscribes to ``keyframes`` (mp_slam_interfaces/Keyframe, reliable, deep queue) and publishes TF
``map -> odom`` from a fixed-rate timer (``tf_rate_hz``, stamped ``transform_tolerance_s`` ahead
so listeners never extrapolate into the past; ``publish_tf`` switch), ``pose_graph``
(transient-local; after every keyframe and solve), ``path`` (keyframe trajectory in ``map``), ``loop_closures``
(MarkerArray: accepted green, rejected red), ``solver_stats`` and ``/diagnostics``. Services
``~/save_map`` and ``~/load_map`` (directory: parameter ``map_directory``), ``~/reset`` and
``~/refine_map`` (queues the global bundle adjustment of every keyframe, ``global_ba.*``: it runs
in the solve worker; its statistics go to ``solver_stats``, then the graph and path are published).

Threads: the keyframe callback only converts and queues; one worker runs the pipeline (place
recognition, verification, consistency) and another the pose-graph solves, at most one queued
(a request during a solve is merged into the next one). The TF timer reads a copy of
``T_map_odom`` and never waits for either. Parameters: every :class:`LoopClosureConfig` option
(``pgo.precision`` changes at runtime) and the node's own :class:`LoopClosureNodeOptions`.
"""

from __future__ import annotations

import sys
import threading
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, PoseStamped
from mp_slam_interfaces.msg import Keyframe, PoseGraph, SolverStats
from nav_msgs.msg import Path
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from std_srvs.srv import Trigger
from visualization_msgs.msg import Marker, MarkerArray

from mp_slam_ros.config import with_updates
from mp_slam_ros.errors import MpSlamError
from mp_slam_ros.node_options.loop_closure import LoopClosureNodeOptions
from mp_slam_ros.geometry.lie import se3_to_translation_quat
from mp_slam_ros.pipelines.loop_closure import LoopClosure, LoopResult
from mp_slam_ros.pipelines.loop_closure_config import LoopClosureConfig
from mp_slam_ros.precision import ProblemKind
from mp_slam_ros.ros.conversions import pose_to_msg, stamp_from_ns, transform_to_msg
from mp_slam_ros.ros.messages import PoseGraphArrays, SolverStatsRecord, keyframe_from_msg, pose_graph_to_msg, solver_stats_to_msg
from mp_slam_ros.ros.spin import spin_node
from mp_slam_ros.ros.params import OptionsParameters
from mp_slam_ros.ros.qos import POSE_GRAPH_QOS, SOLVER_STATS_QOS, reliable_qos
from mp_slam_ros.ros.tf import TfBroadcaster
from mp_slam_ros.solvers.summary import Summary


READ_ONLY = ("keyframe_queue_depth", "tf_rate_hz", "diagnostics_period_s")


class LoopClosureNode(Node):
    """Loop-closure node; ``kwargs`` go to :class:`rclpy.node.Node` (context, cli_args, ...)."""

    def __init__(self, node_name: str = "loop_closure_node", **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)
        self._options = OptionsParameters(self, LoopClosureNodeOptions(), read_only=READ_ONLY)
        self._params = OptionsParameters(self, LoopClosureConfig(), on_change=self._on_config)
        options = self._options.config
        self.pipeline = LoopClosure(self._asynchronous(self._params.config))
        self._T_lock = threading.Lock()
        self._T_map_odom = np.eye(4)
        self._candidates: list[tuple[int, int, bool]] = []  # (match node, query node, accepted)
        self.dropped_messages = 0
        self.tf = TfBroadcaster(self)
        self._pose_graph = self.create_publisher(PoseGraph, "pose_graph", POSE_GRAPH_QOS)
        self._path = self.create_publisher(Path, "path", reliable_qos(1, latched=True))
        self._markers = self.create_publisher(MarkerArray, "loop_closures", reliable_qos(1, latched=True))
        self._stats = self.create_publisher(SolverStats, "solver_stats", SOLVER_STATS_QOS)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10))
        self.create_subscription(Keyframe, "keyframes", self._on_keyframe, reliable_qos(options.keyframe_queue_depth))
        self.create_timer(1.0 / options.tf_rate_hz, self._publish_tf)
        self.create_timer(options.diagnostics_period_s, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_service(Trigger, "~/save_map", self._on_save_map)
        self.create_service(Trigger, "~/load_map", self._on_load_map)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(Trigger, "~/refine_map", self._on_refine_map)
        self._queue: deque[Keyframe] = deque()
        self._wake = threading.Condition()
        self._solve_wake = threading.Condition()
        self._solve_requested = False
        self._refine_requested = False
        self._stopping = False
        self._workers = [
            threading.Thread(target=self._work, name=f"{node_name}_keyframes", daemon=True),
            threading.Thread(target=self._solve_loop, name=f"{node_name}_pgo", daemon=True),
        ]
        for worker in self._workers:
            worker.start()

    @staticmethod
    def _asynchronous(config: LoopClosureConfig) -> LoopClosureConfig:
        return with_updates(config, {"pgo.synchronous": False})

    # -- inputs -----------------------------------------------------------------------------
    def _on_keyframe(self, msg: Keyframe) -> None:
        with self._wake:
            self._queue.append(msg)
            self._wake.notify()

    def _work(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._queue or self._stopping)
                if self._stopping:
                    return
                msg = self._queue.popleft()
            try:
                keyframe = keyframe_from_msg(msg)
            except MpSlamError as error:
                self.dropped_messages += 1
                self.get_logger().warning(f"keyframes: dropped a message: {error}")
                continue
            result = self.pipeline.add_keyframe(keyframe)
            self._after_keyframe(result)

    def _after_keyframe(self, result: LoopResult) -> None:
        for warning in result.warnings:
            self.get_logger().warning(warning)
        if result.node is not None:
            self._candidates += [(c.match_node, result.node, c.accepted) for c in result.candidates if c.verified]
        if result.relocalized:
            self.get_logger().info(f"relocalised against the loaded map at keyframe {result.keyframe_id}")
        self._set_T_map_odom(self.pipeline.T_map_odom)
        if result.node is not None:
            self._publish_graph(self.get_clock().now().nanoseconds)
        with self._solve_wake:
            self._solve_requested = True
            self._solve_wake.notify()

    # -- solves -----------------------------------------------------------------------------
    def _solve_loop(self) -> None:
        while True:
            with self._solve_wake:
                self._solve_wake.wait_for(lambda: self._solve_requested or self._refine_requested or self._stopping)
                if self._stopping:
                    return
                refine, self._refine_requested = self._refine_requested, False
                self._solve_requested = self._solve_requested and refine
            if refine:
                self._refine()
                continue
            snapshot = self.pipeline.take_solve()
            if snapshot is None:
                continue
            try:
                summary = self.pipeline.finish_solve(snapshot)
            except MpSlamError as error:
                self.get_logger().error(f"pose-graph solve failed: {error}")
                continue
            self._set_T_map_odom(self.pipeline.T_map_odom)
            if summary is not None:
                self._publish_solve(summary, ProblemKind.PGO)
            if self.pipeline.solve_pending:  # the solution dropped a loop it contradicts: solve again
                with self._solve_wake:
                    self._solve_requested = True

    def _refine(self) -> None:
        try:
            result = self.pipeline.refine_globally()
        except MpSlamError as error:
            self.get_logger().error(f"global bundle adjustment failed: {error}")
            return
        if result is None:
            self.get_logger().warning("global bundle adjustment: nothing to adjust (no landmark seen by two keyframes, or reset meanwhile)")
            return
        self._set_T_map_odom(self.pipeline.T_map_odom)
        self._publish_solve(result.summary, ProblemKind.BA)
        s = result.summary
        self.get_logger().info(
            f"global bundle adjustment: {result.refined} keyframes, {result.landmarks} landmarks, {result.observations} observations; "
            f"{s.termination.value}, cost {s.initial_cost:.6g} -> {s.final_cost:.6g}, {result.association_s + result.solve_s:.1f} s; "
            f"{result.unsettled_landmarks} landmarks left erring beyond global_ba.outlier_threshold_px")

    def _on_config(self, config: LoopClosureConfig, changed: set[str]) -> None:
        self.pipeline.update_config(self._asynchronous(config))
        self.get_logger().info(f"loop-closure options changed: {', '.join(sorted(changed))}")

    # -- outputs ----------------------------------------------------------------------------
    def _set_T_map_odom(self, T_map_odom: np.ndarray) -> None:
        with self._T_lock:
            self._T_map_odom = T_map_odom

    def _publish_tf(self) -> None:
        options = self._options.config
        if not options.publish_tf:
            return
        with self._T_lock:
            T_map_odom = self._T_map_odom
        stamp_ns = self.get_clock().now().nanoseconds + int(options.transform_tolerance_s * 1e9)
        self.tf.send([transform_to_msg(T_map_odom, options.map_frame, options.odom_frame, stamp_ns)])

    def _publish_solve(self, summary: Summary, kind: ProblemKind) -> None:
        options = self._options.config
        now_ns = self.get_clock().now().nanoseconds
        record = SolverStatsRecord.from_summary(summary, kind, now_ns, options.map_frame)
        self._stats.publish(solver_stats_to_msg(record))
        self._publish_graph(now_ns)

    def _publish_graph(self, stamp_ns: int) -> None:
        options = self._options.config
        snapshot = self.pipeline.pose_graph()
        if snapshot is None:
            return
        poses7 = _pose7(snapshot.T_world_node)
        nodes = snapshot.node_ids.astype(np.uint64)
        graph = PoseGraphArrays(
            options.map_frame, stamp_ns, nodes, poses7, snapshot.edge_from.astype(np.uint64), snapshot.edge_to.astype(np.uint64),
            _pose7(snapshot.T_from_to), snapshot.information, snapshot.is_loop.astype(np.uint8),
        )
        self._pose_graph.publish(pose_graph_to_msg(graph))
        path = Path()
        path.header.frame_id, path.header.stamp = options.map_frame, stamp_from_ns(stamp_ns)
        path.poses = [PoseStamped(header=path.header, pose=pose_to_msg(pose)) for pose in poses7]
        self._path.publish(path)
        self._publish_markers()

    def _publish_markers(self) -> None:
        _, _, T_map_cam = self.pipeline.poses()
        markers = MarkerArray()
        for marker_id, (accepted, colour) in enumerate(((True, (0.1, 0.9, 0.1)), (False, (0.9, 0.1, 0.1)))):
            marker = Marker(ns="loop_closures", id=marker_id, type=Marker.LINE_LIST, action=Marker.ADD)
            marker.header.frame_id = self._options.config.map_frame
            marker.scale.x = 0.02
            marker.color.r, marker.color.g, marker.color.b, marker.color.a = (*colour, 1.0)
            marker.pose.orientation.w = 1.0
            for match, query, ok in self._candidates:
                if ok == accepted and max(match, query) < len(T_map_cam):
                    marker.points += [Point(x=float(p[0]), y=float(p[1]), z=float(p[2])) for p in (T_map_cam[match, :3, 3], T_map_cam[query, :3, 3])]
            markers.markers.append(marker)
        self._markers.publish(markers)

    def _publish_diagnostics(self) -> None:
        counts = self.pipeline.counts
        warnings = sum(counts[k] for k in ("bad_pose", "duplicates", "out_of_order", "bad_covariance", "no_features"))
        level = DiagnosticStatus.WARN if warnings or self.dropped_messages or not self.pipeline.relocalized else DiagnosticStatus.OK
        message = "waiting to relocalise against the loaded map" if not self.pipeline.relocalized else f"{counts['accepted']} loops accepted"
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: loop closure", message=message, hardware_id=self.get_name())
        values = {**{key: counts[key] for key in sorted(counts)}, "queued_keyframes": len(self._queue),
                  "dropped_messages": self.dropped_messages, "pgo.precision": self.pipeline.config.pgo.precision.value}
        status.values = [KeyValue(key=key, value=str(value)) for key, value in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = stamp_from_ns(self.get_clock().now().nanoseconds)
        self._diagnostics.publish(array)

    # -- services ---------------------------------------------------------------------------
    def _map_directory(self, response: Trigger.Response) -> str | None:
        directory = self._options.config.map_directory
        if not directory:
            response.success, response.message = False, "parameter map_directory is empty"
            return None
        return directory

    def _on_save_map(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        directory = self._map_directory(response)
        if directory is not None:
            try:
                manifest = self.pipeline.save_map(directory)
                response.success, response.message = True, f"saved {len(self.pipeline.store)} keyframes to {manifest}"
            except (MpSlamError, OSError) as error:
                response.success, response.message = False, str(error)
        return response

    def _on_load_map(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        directory = self._map_directory(response)
        if directory is not None:
            try:
                count = self.pipeline.load_map(directory)
                self._candidates = []
                self._set_T_map_odom(self.pipeline.T_map_odom)
                self._publish_graph(self.get_clock().now().nanoseconds)
                response.success, response.message = True, f"loaded {count} keyframes from {directory}; relocalising"
            except (MpSlamError, OSError) as error:
                response.success, response.message = False, str(error)
        return response

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.pipeline.reset()
        self._candidates = []
        self._set_T_map_odom(np.eye(4))
        response.success, response.message = True, "loop closure reset"
        return response

    def _on_refine_map(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if len(self.pipeline.store) < 2:
            response.success, response.message = False, f"{len(self.pipeline.store)} keyframes: nothing to adjust"
            return response
        with self._solve_wake:
            self._refine_requested = True
            self._solve_wake.notify()
        response.success, response.message = True, f"global bundle adjustment of {len(self.pipeline.store)} keyframes queued (result on solver_stats)"
        return response

    def destroy_node(self) -> None:
        """Stop the worker threads, then the node."""
        self._stopping = True
        for condition in (self._wake, self._solve_wake):
            with condition:
                condition.notify_all()
        for worker in self._workers:
            worker.join(timeout=5.0)
        super().destroy_node()


def _pose7(T: np.ndarray) -> np.ndarray:
    translation, quat_xyzw = se3_to_translation_quat(T)
    return np.concatenate([translation, quat_xyzw], axis=1)


def main(args: list[str] | None = None) -> int:
    """Console script ``loop_closure_node`` (``ros2 run mp_slam_ros loop_closure_node``)."""
    return spin_node(LoopClosureNode, "loop_closure_node", args)



if __name__ == "__main__":
    sys.exit(main())
