"""Inputs of ``vo_node``: topic sets per mode, synchronised messages -> pipeline :class:`Frame`,
and the wheel-odometry prior interpolated at the image time.

Every problem raises a :class:`~mp_slam_ros.errors.MessageError` naming the topic; its
:func:`problem_key` is what the node counts the dropped frame under.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import deque

import numpy as np
from nav_msgs.msg import Odometry
from numpy.typing import NDArray
from sensor_msgs.msg import CameraInfo, Image

from mp_slam_ros.errors import FrameError, MessageError
from mp_slam_ros.geometry.lie import se3_at, se3_from_translation_quat
from mp_slam_ros.pipelines.vo import Frame
from mp_slam_ros.pipelines.vo_config import SensorMode
from mp_slam_ros.ros.conversions import camera_info_from_msg, ns_from_stamp, pose_from_msg
from mp_slam_ros.ros.images import ImageError, check_image_size, colour_from_msg, depth_m_from_msg

#: (relative topic, message type) of the synchronised inputs, in the order of ``frame_from_messages``.
INPUT_TOPICS: dict[SensorMode, tuple[tuple[str, type], ...]] = {
    SensorMode.RGBD: (
        ("camera/color/image_raw", Image),
        ("camera/aligned_depth_to_color/image_raw", Image),
        ("camera/color/camera_info", CameraInfo),
    ),
    SensorMode.STEREO: (
        ("left/image_rect", Image),
        ("right/image_rect", Image),
        ("left/camera_info", CameraInfo),
        ("right/camera_info", CameraInfo),
    ),
}
#: Most wheel-odometry samples kept (a memory bound: over an hour at 50 Hz; samples are released
#: as frames are tracked, see :class:`WheelOdometry`).
WHEEL_HISTORY = 200_000


class MissingBaselineError(MessageError):
    """The right camera_info of a stereo pair carries no baseline in its projection matrix."""


def problem_key(error: Exception) -> str:
    """Short key a dropped frame is counted under for ``error``."""
    if isinstance(error, ImageError):
        return error.problem
    if isinstance(error, MissingBaselineError):
        return "missing_baseline"
    if isinstance(error, MessageError):
        return "bad_camera_info"
    if isinstance(error, FrameError):
        return f"rejected.{error.field.removeprefix('frame.')}"
    return "internal_error"


def frame_from_messages(mode: SensorMode, messages: list, topics: list[str], stamp_ns: int) -> Frame:
    """The pipeline frame of one synchronised set (``messages`` in the order of INPUT_TOPICS).

    ``topics`` are the resolved topic names (after remapping), used in error messages.
    """
    if mode is SensorMode.RGBD:
        image_msg, depth_msg, info_msg = messages
        camera = camera_info_from_msg(info_msg, f"{topics[2]}")
        image, order = colour_from_msg(image_msg, topics[0])
        check_image_size(image, camera, topics[0])
        depth_m = depth_m_from_msg(depth_msg, topics[1])
        check_image_size(depth_m, camera, topics[1])
        return Frame(stamp_ns, image, camera, depth_m=depth_m, colour_order=_order(order))
    left_msg, right_msg, left_info, right_info = messages
    camera = camera_info_from_msg(left_info, topics[2])
    right_camera = camera_info_from_msg(right_info, topics[3])
    if not right_camera.projection_baseline_m > 0.0:
        raise MissingBaselineError(
            f"{topics[3]}.p: no stereo baseline (P[0, 3] = {right_camera.projection_matrix[0, 3]!r} must be -fx * baseline < 0)"
        )
    camera = dataclasses.replace(camera, baseline_m=right_camera.projection_baseline_m)
    left, order = colour_from_msg(left_msg, topics[0])
    check_image_size(left, camera, topics[0])
    right, right_order = colour_from_msg(right_msg, topics[1])
    check_image_size(right, right_camera, topics[1])
    if right.shape != left.shape or (right_order != order and "mono" not in (order, right_order)):
        raise ImageError(f"{topics[1]}: {right_msg.encoding} {right.shape} does not pair with the left {left_msg.encoding} {left.shape}")
    return Frame(stamp_ns, left, camera, right_image=right, colour_order=_order(order if order != "mono" else right_order))


def _order(order: str) -> str:
    """Colour order for the pipeline ("mono" images need none; "rgb" is its default)."""
    return "rgb" if order == "mono" else order


class WheelOdometry:
    """``T_odom_base`` samples of a wheel-odometry topic, interpolated at image times.

    Samples are kept until the frames that need them are tracked (:meth:`release_before`), not
    for a fixed time: frames wait for tracking while wheel messages keep coming, and a history of
    a few seconds was gone by the time a lagging tracker reached its frames (the quick demo's VO,
    12-33 s behind its replay, got no wheel prior for 365 of 600 frames and lost the plain wall
    at 27 s). ``WHEEL_HISTORY`` only bounds memory. Thread-safe (executor adds, worker reads).
    """

    def __init__(self) -> None:
        self._stamps_ns: deque[int] = deque(maxlen=WHEEL_HISTORY)
        self._poses: deque[NDArray[np.float64]] = deque(maxlen=WHEEL_HISTORY)
        self._lock = threading.Lock()

    def add(self, msg: Odometry) -> None:
        """Add a sample (MessageError for an invalid pose); older-than-newest samples are ignored."""
        stamp_ns = ns_from_stamp(msg.header.stamp)
        pose7 = pose_from_msg(msg.pose.pose, "wheel_odom.pose.pose")
        with self._lock:
            if self._stamps_ns and stamp_ns <= self._stamps_ns[-1]:
                if stamp_ns >= self._stamps_ns[0]:
                    return
                self._forget()  # time went backwards (bag looped)
            self._stamps_ns.append(stamp_ns)
            self._poses.append(se3_from_translation_quat(pose7[:3], pose7[3:])[0])

    def clear(self) -> None:
        """Forget every sample."""
        with self._lock:
            self._forget()

    def _forget(self) -> None:
        """Forget every sample (the lock held)."""
        self._stamps_ns.clear()
        self._poses.clear()

    def release_before(self, stamp_ns: int) -> None:
        """Forget the samples no frame from ``stamp_ns`` on needs (keeps the last one before it)."""
        with self._lock:
            while len(self._stamps_ns) >= 2 and self._stamps_ns[1] <= stamp_ns:
                self._stamps_ns.popleft()
                self._poses.popleft()

    def at(self, stamp_ns: int) -> NDArray[np.float64] | None:
        """``T_odom_base`` (4, 4) at ``stamp_ns`` between two samples (None outside them)."""
        with self._lock:
            return se3_at(self._stamps_ns, self._poses, stamp_ns)

