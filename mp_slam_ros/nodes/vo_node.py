"""``vo_node``: the ROS 2 adapter of :class:`~mp_slam_ros.pipelines.vo.VisualOdometry`.

Subscribes to the camera topics of ``mode`` (rgbd: colour, aligned depth, camera_info; stereo:
left/right rectified images and camera_infos), synchronises them (approximate time), converts them
into a pipeline frame, tracks it and publishes ``odometry``, TF ``odom -> base_link``,
``keyframes``, ``path``, ``landmarks``, ``solver_stats`` and ``/diagnostics``.

Threads: subscription callbacks only convert stamps and queue synchronised sets; one worker thread
runs the pipeline (the BA runs in the pipeline's own worker, and the tracking thread applies a
finished window solve and publishes its ``solver_stats`` as soon as it is ready, not with the next
frame), so a slow frame never blocks the executor. When more than ``max_pending_frames`` sets wait, the oldest is dropped and counted. Services and parameter changes reach the pipeline through the same lock.

Parameters: every :class:`VOConfig` option (``ba.precision``, ``frontend.max_features``, ...), the
node's own :class:`VONodeOptions` (``publish_tf``, ``qos.reliability``, ``sync.max_interval_s``,
...) and ``camera_to_base`` ([x, y, z, qx, qy, qz, qw] of the camera optical frame in
``base_frame``; empty: from /tf_static).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from mp_slam_interfaces.srv import ResetToPose
from nav_msgs.msg import Odometry
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType, JumpThreshold, TimeJump
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_srvs.srv import SetBool, Trigger
from tf2_msgs.msg import TFMessage

from mp_slam_ros.errors import ConfigError, MessageError, MpSlamError
from mp_slam_ros.geometry.lie import se3_from_translation_quat
from mp_slam_ros.nodes.vo_diagnostics import FrameCounters, ThrottledWarnings, diagnostics_msg
from mp_slam_ros.nodes.vo_inputs import INPUT_TOPICS, WheelOdometry, frame_from_messages, problem_key
from mp_slam_ros.node_options.vo import READ_ONLY, VONodeOptions
from mp_slam_ros.nodes.vo_outputs import VOPublishers
from mp_slam_ros.pipelines.vo import Frame, TrackResult, TrackingStatus, VisualOdometry
from mp_slam_ros.pipelines.vo_config import VOConfig
from mp_slam_ros.ros.conversions import check_pose7, ns_from_stamp, pose_from_msg
from mp_slam_ros.ros.spin import spin_node
from mp_slam_ros.ros.params import OptionsParameters
from mp_slam_ros.ros.qos import TF_STATIC_LISTENER_QOS, camera_qos, reliable_qos
from mp_slam_ros.ros.sync import ApproximateTimeSync
from mp_slam_ros.ros.tf import TF_STATIC_TOPIC
from mp_slam_ros.ros.tf_buffer import StaticTfBuffer
from mp_slam_ros.solvers.summary import Summary

#: Seconds without a synchronised frame before the "no data" warning names the topics and QoS.
NO_DATA_WARNING_S = 5.0
#: Share of a diagnostics period's colour frames left unpaired (their depth or camera_info partner
#: never came) above which a warning names the likely cause.
UNPAIRED_WARNING_SHARE = 0.1
#: What to do about unpaired frames, in the warning (Fast DDS, the default middleware, sends a
#: ~1 MB image in UDP fragments unless told otherwise; a full socket buffer drops some).
UNPAIRED_ADVICE = (
    "messages of one topic are lost before they pair up: large images dropped by the middleware? "
    "(Fast DDS: export FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA for the camera driver and this node; "
    "or a larger sync.max_interval_s when the stamps differ)"
)


class VONode(Node):
    """Visual-odometry node; ``kwargs`` go to :class:`rclpy.node.Node` (context, cli_args, ...)."""

    def __init__(self, node_name: str = "vo_node", **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)
        self._options = OptionsParameters(self, VONodeOptions(), read_only=READ_ONLY, on_change=self._on_options)
        self._vo_params = OptionsParameters(self, VOConfig(), read_only=("mode",), on_change=self._on_vo_config)
        self._T_base_cam_param = self._declare_camera_to_base()
        options, config = self._options.config, self._vo_params.config
        self.counters = FrameCounters()
        self.warnings = ThrottledWarnings(self.get_logger().warning, options.warning_period_s)
        self._vo_lock = threading.Lock()
        self._wake = threading.Condition()  # the tracking thread waits on it for frames, resets, BA results
        self._ba_finished = False
        self._busy = False  # the tracking thread is working on something taken from the queue
        self.vo = VisualOdometry(config, odom_frame=options.odom_frame, on_ba_finished=self._on_ba_finished)
        self._T_base_cam_applied: np.ndarray | None = None
        self._pending_config: VOConfig | None = None
        self._paused = False
        self._last_result: TrackResult | None = None
        self.outputs = VOPublishers(self)
        self.tf_buffer = StaticTfBuffer()
        self.create_subscription(TFMessage, TF_STATIC_TOPIC, self._on_tf_static, TF_STATIC_LISTENER_QOS)
        self._make_inputs(config, options)
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(10))
        # wall-clock period: diagnostics keep coming while a bag (and /clock) is paused
        self.create_timer(options.diagnostics_period_s, self._publish_diagnostics, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.create_service(SetBool, "~/set_paused", self._on_set_paused)
        self.create_service(ResetToPose, "~/reset_to_pose", self._on_reset_to_pose)
        self._jump_handle = self.get_clock().create_jump_callback(
            JumpThreshold(min_forward=None, min_backward=Duration(nanoseconds=-1), on_clock_change=False),
            post_callback=self._on_clock_jump,
        )
        self._started = time.monotonic()
        self._pending: deque[tuple[int, list]] = deque()
        self._reset_requested = False
        self._stopping = False
        self._worker = threading.Thread(target=self._work, name=f"{node_name}_tracking", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"{config.mode.value} visual odometry on {', '.join(self.input_topics)} "
            f"(qos {options.qos.reliability.value}, ba.precision {config.ba.precision.value})"
        )

    # -- set-up -----------------------------------------------------------------------------
    def _make_inputs(self, config: VOConfig, options: VONodeOptions) -> None:
        topics = INPUT_TOPICS[config.mode]
        qos = camera_qos(options.qos.reliability.value == "reliable", options.qos.depth)
        self.sync = ApproximateTimeSync(len(topics), int(options.sync.max_interval_s * 1e9), options.sync.queue_size)
        self._input_lock = threading.Lock()
        self._last_input_ns: list[int | None] = [None] * len(topics)
        self._received = [0] * len(topics)
        self._unpaired_checked = (0, 0)  # (colour frames received, frames unsynchronised) at the last check
        self._last_set_ns: int | None = None
        self._unsynchronised_at_last_set = 0
        self._intervals_ns: deque[int] = deque(maxlen=8)
        subscriptions = [
            self.create_subscription(msg_type, name, lambda msg, i=index: self._on_input(i, msg), qos)
            for index, (name, msg_type) in enumerate(topics)
        ]
        self.input_topics = [subscription.topic_name for subscription in subscriptions]
        self.wheel = WheelOdometry()
        if options.use_wheel_odom:
            self.create_subscription(Odometry, "wheel_odom", self._on_wheel_odom, reliable_qos(50))

    def _declare_camera_to_base(self) -> np.ndarray | None:
        descriptor = ParameterDescriptor(
            description="[x, y, z, qx, qy, qz, qw] of the camera optical frame in base_frame; empty: from /tf_static"
        )
        value = self.declare_parameter("camera_to_base", Parameter.Type.DOUBLE_ARRAY, descriptor).value
        self.add_on_set_parameters_callback(self._on_set_camera_to_base)
        return None if not value else _pose_of_parameter(value)

    # -- inputs (executor thread) -------------------------------------------------------------
    def _on_input(self, index: int, msg: object) -> None:
        stamp_ns = ns_from_stamp(msg.header.stamp)
        options = self._options.config
        with self._input_lock:
            self._received[index] += 1
            last = self._last_input_ns[index]
            if last is not None and stamp_ns < last - options.time_jump_s * 1e9:
                self._time_went_backwards(index, last, stamp_ns)
            self._last_input_ns[index] = stamp_ns
            matched = self.sync.push(index, stamp_ns, msg)
            for set_stamp_ns, _ in matched:
                self._check_gap(set_stamp_ns)
        if matched:
            self._queue(matched)

    def _time_went_backwards(self, index: int, last_ns: int, stamp_ns: int) -> None:
        """A camera stamp far older than the last (bag looped): restart sync and tracking."""
        self.warnings.warn(
            f"time_backwards:{index}",
            f"{self.input_topics[index]}: time went backwards by {(last_ns - stamp_ns) / 1e9:.3f} s "
            "(bag looped or clock reset): resetting the odometry (odom stays continuous)",
        )
        self.sync.reset()
        self._last_input_ns = [None] * len(self._last_input_ns)
        self._last_set_ns = None
        self._intervals_ns.clear()
        self.wheel.clear()
        with self._wake:
            self._pending.clear()
            self._reset_requested = True
            self._wake.notify()

    def _check_gap(self, stamp_ns: int) -> None:
        """Estimate frames missing upstream from a gap between synchronised sets (not counting
        the frames the synchroniser dropped in between: those are counted as unsynchronised)."""
        unsynchronised = self.sync.counters.dropped_sets
        if self._last_set_ns is not None:
            interval = stamp_ns - self._last_set_ns
            period = min(self._intervals_ns) if len(self._intervals_ns) >= 3 else None
            if period and interval > 1.5 * period:
                missing = int(round(interval / period)) - 1 - (unsynchronised - self._unsynchronised_at_last_set)
                if missing > 0:
                    self.counters.add("missing_upstream", missing)
                    self.warnings.warn("gap", f"{self.input_topics[0]}: {interval / 1e9:.3f} s without a frame (about {missing} frames missing)")
            else:
                self._intervals_ns.append(interval)
        self._last_set_ns = stamp_ns
        self._unsynchronised_at_last_set = unsynchronised

    def _queue(self, matched: list[tuple[int, list]]) -> None:
        max_pending = self._options.config.max_pending_frames
        with self._wake:
            for item in matched:
                self._pending.append(item)
                while len(self._pending) > max_pending:
                    self._pending.popleft()
                    self.counters.drop("busy")
            self._wake.notify()

    def _on_tf_static(self, msg: TFMessage) -> None:
        try:
            self.tf_buffer.add_message(msg)
        except MessageError as error:
            self.warnings.warn("tf_static", f"{TF_STATIC_TOPIC}: {error}")

    def _on_wheel_odom(self, msg: Odometry) -> None:
        try:
            self.wheel.add(msg)
        except MessageError as error:
            self.warnings.warn("wheel_odom", f"wheel_odom: {error}")

    # -- tracking (worker thread) -----------------------------------------------------------
    def _work(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._pending or self._reset_requested or self._ba_finished or self._stopping)
                if self._stopping:
                    return
                reset, self._reset_requested = self._reset_requested, False
                ba_finished, self._ba_finished = self._ba_finished, False
                item = self._pending.popleft() if self._pending else None
                self._busy = True
            with self._vo_lock:
                if reset:
                    self._reset_pipeline(None, "time went backwards")
                if ba_finished:
                    self._guarded("window BA", self._publish_ba_between_frames)
                if item is not None and self._paused:
                    self.counters.add("paused_frames")
                elif item is not None:
                    self._guarded(f"frame at {item[0]} ns", lambda: self._process(*item))
            with self._wake:
                self._busy = False

    def _on_ba_finished(self) -> None:
        """(BA thread) A window solve is ready: the tracking thread applies it without waiting for a frame."""
        with self._wake:
            self._ba_finished = True
            self._wake.notify()

    def _publish_ba_between_frames(self) -> None:
        """Apply finished window BAs now and publish their statistics (a frame may be long in coming)."""
        summaries = self.vo.take_finished_ba()
        self._count_ba(summaries)
        self.outputs.publish_solver_stats(summaries, self._options.config)

    def idle(self) -> bool:
        """No frame queued or being tracked and no window BA queued, running or unapplied."""
        with self._wake:
            return not self._pending and not self._busy and not self._ba_finished and self.vo.ba_idle

    def _guarded(self, what: str, work: Callable[[], None]) -> None:
        """Run ``work`` (tracking a frame, applying a window BA); an unexpected exception is logged
        as ``what`` failed and counted, never fatal: a bug there must not stop the odometry thread."""
        try:
            work()
        except Exception:
            self.counters.drop("internal_error")
            self.get_logger().error(f"{what} failed:\n{traceback.format_exc()}")

    def _process(self, stamp_ns: int, messages: list) -> None:
        config = self._vo_params.config
        try:
            frame = frame_from_messages(config.mode, messages, self.input_topics, stamp_ns)
        except MpSlamError as error:
            self._drop(problem_key(error), str(error))
            return
        if not self._apply_extrinsics(frame):
            return
        if self._pending_config is not None:
            self.vo.update_config(self._pending_config)
            self._pending_config = None
        if self._options.config.use_wheel_odom:
            frame.T_odom_base_wheel = self.wheel.at(stamp_ns)
            self.wheel.release_before(stamp_ns)
        try:
            result = self.vo.track(frame)
        except MpSlamError as error:
            self._drop(problem_key(error), f"{self.input_topics[0]}: {error}")
            return
        self._publish(result)

    def _apply_extrinsics(self, frame: Frame) -> bool:
        """Give the pipeline T_base_cam (parameter, else /tf_static); False (frame dropped) if unknown."""
        base_frame = self._options.config.base_frame
        T_base_cam = self._T_base_cam_param
        if T_base_cam is None and self.tf_buffer.can_transform(base_frame, frame.camera.frame_id):
            T_base_cam = self.tf_buffer.lookup(base_frame, frame.camera.frame_id)
        if T_base_cam is None:
            self._drop(
                "no_extrinsics",
                f"waiting for the transform {base_frame!r} -> {frame.camera.frame_id!r} on {TF_STATIC_TOPIC} "
                "(or set the camera_to_base parameter); frames are dropped until it is known",
            )
            return False
        if self._T_base_cam_applied is None or not np.array_equal(T_base_cam, self._T_base_cam_applied):
            self.vo.set_T_base_cam(T_base_cam)
            if self._T_base_cam_applied is None and self._last_result is None:
                self.vo.reset(np.eye(4))  # odometry starts exactly at the identity
            self._T_base_cam_applied = T_base_cam
        return True

    def _drop(self, reason: str, text: str) -> None:
        self.counters.drop(reason)
        self.warnings.warn(reason, f"{text} (frame dropped)")

    def _publish(self, result: TrackResult) -> None:
        self.counters.frame_done(result.status, result.num_tracked, result.keyframe is not None)
        if result.status is TrackingStatus.LOST:
            self.warnings.warn("lost", f"tracking lost at {result.stamp_ns} ns ({result.num_tracked} features tracked): "
                                       "pose predicted from motion with an inflated covariance, map kept for relocalisation")
        elif result.status is TrackingStatus.RESET and self._last_result is not None:  # not the first map
            self.warnings.warn("new_map", f"new map started at {result.stamp_ns} ns (tracking lost too long, or reset): "
                                          "odom stays continuous")
        self._count_ba(result.ba_summaries)
        landmarks = self.vo.landmarks_odom() if result.keyframe is not None else None
        self.outputs.publish(result, self._options.config, landmarks)
        self._last_result = result

    def _count_ba(self, summaries: list[Summary]) -> None:
        if summaries:
            self.counters.add("ba_solves", len(summaries))
            self.counters.add("ba_time_limited", sum(s.time_limited for s in summaries))
            self.counters.precision_used, self.counters.linear_solver = summaries[-1].precision_used.value, summaries[-1].linear_solver

    def _reset_pipeline(self, T_odom_base: np.ndarray | None, why: str) -> None:
        """Restart tracking at ``T_odom_base`` (None: the last pose, odom continuous); caller holds the lock."""
        self.vo.reset(T_odom_base)
        self.outputs.clear_history()
        self.counters.add("resets")
        self.get_logger().info(f"odometry reset ({why})")

    # -- services, parameters, clock ----------------------------------------------------------
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        with self._vo_lock:
            self._reset_pipeline(np.eye(4), "~/reset")
        response.success, response.message = True, "odometry restarts at the identity with the next frame"
        return response

    def _on_set_paused(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        with self._vo_lock:
            was_paused, self._paused = self._paused, bool(request.data)
            if was_paused and not self._paused:
                self._reset_pipeline(None, "resumed after a pause")
        response.success = True
        response.message = "paused: frames are ignored" if self._paused else "running"
        return response

    def _on_reset_to_pose(self, request: ResetToPose.Request, response: ResetToPose.Response) -> ResetToPose.Response:
        try:
            pose7 = pose_from_msg(request.pose, "pose")
        except MessageError as error:
            response.success, response.message = False, str(error)
            return response
        with self._vo_lock:
            self._reset_pipeline(se3_from_translation_quat(pose7[:3], pose7[3:])[0], "~/reset_to_pose")
        response.success, response.message = True, "odometry restarts at the given pose with the next frame"
        return response

    def _on_options(self, options: VONodeOptions, changed: set[str]) -> None:
        self.sync.max_interval_ns = int(options.sync.max_interval_s * 1e9)
        self.warnings.period_s = options.warning_period_s

    def _on_vo_config(self, config: VOConfig, changed: set[str]) -> None:
        self._pending_config = config  # applied by the worker before the next frame
        self.get_logger().info(f"parameters {', '.join(sorted(changed))} changed: used from the next frame")

    def _on_set_camera_to_base(self, parameters: list[Parameter]) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name != "camera_to_base":
                continue
            try:
                self._T_base_cam_param = None if not parameter.value else _pose_of_parameter(parameter.value)
            except ConfigError as error:
                return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _on_clock_jump(self, jump: TimeJump) -> None:
        self.counters.add("clock_jumps")
        self.warnings.warn(
            "clock_jump",
            f"/clock jumped back by {-jump.delta.nanoseconds / 1e9:.3f} s (use_sim_time, bag looped?): "
            "camera stamps going backwards reset the odometry",
        )

    def _publish_diagnostics(self) -> None:
        if self.counters.processed == 0 and time.monotonic() - self._started > NO_DATA_WARNING_S:
            received = ", ".join(f"{topic}: {count}" for topic, count in zip(self.input_topics, self._received))
            self.warnings.warn(
                "no_data",
                f"no synchronised camera frames yet (messages received: {received}; "
                f"qos.reliability={self._options.config.qos.reliability.value}, sync.max_interval_s="
                f"{self._options.config.sync.max_interval_s})",
            )
        self._check_unpaired()
        self._diagnostics.publish(
            diagnostics_msg(self.get_name(), self.counters, self.sync.counters,
                            self._vo_params.config.ba.precision.value, self.get_clock().now().nanoseconds)
        )

    def _check_unpaired(self) -> None:
        """Warn when more than :data:`UNPAIRED_WARNING_SHARE` of the colour frames received since
        the last check left the synchroniser unpaired."""
        with self._input_lock:
            received, unpaired = self._received[0], self.sync.counters.dropped_sets
            per_topic = ", ".join(f"{topic}: {count}" for topic, count in zip(self.input_topics, self.sync.counters.per_stream))
        last_received, last_unpaired = self._unpaired_checked
        self._unpaired_checked = (received, unpaired)
        new_frames, new_unpaired = received - last_received, unpaired - last_unpaired
        if new_frames > 0 and new_unpaired > UNPAIRED_WARNING_SHARE * new_frames:
            self.warnings.warn(
                "unpaired",
                f"{new_unpaired} of {new_frames} frames left unsynchronised (unpaired messages so far: {per_topic}): "
                + UNPAIRED_ADVICE,
            )

    def close(self) -> None:
        """Stop the worker thread and the pipeline's BA worker."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._worker.join(timeout=5.0)
        self.vo.close()


def _pose_of_parameter(values: Sequence[float]) -> np.ndarray:
    """T_base_cam (4, 4) of a ``camera_to_base`` value; ConfigError unless 7 finite values, unit quaternion."""
    pose7 = np.asarray(values, dtype=np.float64)
    if pose7.shape != (7,):
        raise ConfigError("camera_to_base", list(values), "must be [x, y, z, qx, qy, qz, qw] (7 values) or empty")
    try:
        check_pose7(pose7[None], "camera_to_base")
    except MessageError as error:
        raise ConfigError("camera_to_base", list(values), str(error)) from None
    return se3_from_translation_quat(pose7[:3], pose7[3:])[0]


def main(args: list[str] | None = None) -> int:
    """Console script ``vo_node`` (``ros2 run mp_slam_ros vo_node``): spin until shut down."""
    return spin_node(VONode, "vo_node", args)


if __name__ == "__main__":
    sys.exit(main())
