"""Visual-odometry frames from a rosbag2 (rosbags, no DDS): images paired by stamp, camera
models from CameraInfo, the camera extrinsics from ``/tf_static``.

Topic sets tried in order (the first whose topics the bag holds wins):
RGB-D ``camera/color/image_raw`` + ``camera/aligned_depth_to_color/image_raw`` +
``camera/color/camera_info``; stereo ``left/image_rect`` + ``right/image_rect`` (+ their
``camera_info``, baseline from the right P), or the generator's ``camera/right/image_raw``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from mp_slam_ros.geometry.lie import se3_at, se3_from_translation_quat
from mp_slam_ros.io.bags import BagError, BagReader, image_array, stamp_ns
from mp_slam_ros.pipelines.vo import Frame
from mp_slam_ros.pipelines.vo_config import SensorMode
from mp_slam_ros.types import CameraModel

#: max stamp difference of paired images (s)
PAIR_TOLERANCE_S = 0.005


@dataclass(frozen=True)
class CameraTopics:
    """The topics one VO mode reads: main image, second image (depth or right), camera infos."""

    mode: SensorMode
    image: str
    second: str
    info: str
    second_info: str | None = None


TOPIC_SETS = (
    CameraTopics(SensorMode.RGBD, "/camera/color/image_raw", "/camera/aligned_depth_to_color/image_raw", "/camera/color/camera_info"),
    CameraTopics(SensorMode.STEREO, "/left/image_rect", "/right/image_rect", "/left/camera_info", "/right/camera_info"),
    CameraTopics(SensorMode.STEREO, "/camera/color/image_raw", "/camera/right/image_raw", "/camera/color/camera_info", "/camera/right/camera_info"),
)


def camera_model_from_info(msg: Any) -> CameraModel:
    """Camera model of a (rosbags) ``sensor_msgs/CameraInfo``; the baseline is read from P."""
    P = np.asarray(msg.p, np.float64).reshape(3, 4)
    return CameraModel(
        frame_id=msg.header.frame_id, width=int(msg.width), height=int(msg.height),
        camera_matrix=np.asarray(msg.k, np.float64).reshape(3, 3), distortion_model=msg.distortion_model,
        distortion_coeffs=np.asarray(msg.d, np.float64), rectification=np.asarray(msg.r, np.float64).reshape(3, 3),
        projection_matrix=P, baseline_m=float(-P[0, 3] / P[0, 0]) if P[0, 0] > 0.0 else 0.0,
    )


def depth_metres(msg: Any) -> NDArray[np.float32]:
    """Depth image in metres (NaN invalid) from ``16UC1`` (mm) or ``32FC1`` (m)."""
    pixels = image_array(msg)
    if msg.encoding in ("16UC1", "mono16"):
        depth = pixels.astype(np.float32) * 1e-3
        depth[pixels == 0] = np.nan
        return depth
    if msg.encoding == "32FC1":
        return np.where(pixels > 0.0, pixels, np.nan).astype(np.float32)
    raise BagError("<message>", f"unsupported depth encoding {msg.encoding!r} (16UC1 or 32FC1)")


def select_topics(topics: dict[str, str], mode: SensorMode | None) -> CameraTopics:
    """The first topic set of ``mode`` (any mode when None) that ``topics`` holds."""
    for candidate in TOPIC_SETS:
        wanted = [candidate.image, candidate.second, candidate.info]
        if (mode is None or candidate.mode is mode) and all(t in topics for t in wanted):
            return candidate
    sets = "; ".join(f"{c.mode.value}: {c.image}, {c.second}, {c.info}" for c in TOPIC_SETS)
    raise BagError("<bag>", f"no camera topics for mode {mode.value if mode else 'any'} (expected one of {sets})")


def static_T_parent_child(reader: BagReader, parent: str, child: str) -> NDArray[np.float64] | None:
    """``T_parent_child`` chained through ``/tf_static`` (None when not connected)."""
    if "/tf_static" not in reader.topics:
        return None
    edges: dict[str, tuple[str, NDArray[np.float64]]] = {}
    for _, msg in reader.decoded(["/tf_static"]):
        for tf in msg.transforms:
            T = np.eye(4)
            q, t = tf.transform.rotation, tf.transform.translation
            T[:3, :3] = Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix()
            T[:3, 3] = [t.x, t.y, t.z]
            edges[tf.child_frame_id] = (tf.header.frame_id, T)
    T_parent_child, frame = np.eye(4), child
    while frame != parent:
        if frame not in edges:
            return None
        frame, T = edges[frame]
        T_parent_child = T @ T_parent_child
    return T_parent_child


class BagFrames:
    """Iterate the VO frames of a bag (open it with ``with``); ``T_base_cam`` from /tf_static.

    ``wheel_topic``: a ``nav_msgs/Odometry`` topic of the bag whose pose, interpolated at each
    image stamp, is the frame's wheel-odometry motion prior (what ``vo_node`` does with
    ``use_wheel_odom``); frames outside its samples get none.
    """

    def __init__(
        self, path: str | Path, mode: SensorMode | str | None = None, base_frame: str = "base_link",
        wheel_topic: str | None = None,
    ) -> None:
        """``mode``: the camera topics to read (``"rgbd"`` or ``"stereo"``; None: the first set the bag has)."""
        self.path = Path(path)
        self._reader = BagReader(self.path)
        self._mode = None if mode is None else SensorMode(mode)
        self.base_frame = base_frame
        self.wheel_topic = wheel_topic
        self._wheel_stamps_ns: list[int] = []
        self._wheel_poses: list[NDArray[np.float64]] = []

    def __enter__(self) -> BagFrames:
        self._reader.__enter__()
        try:
            self.topics = select_topics(self._reader.topics, self._mode)
        except BagError as error:
            raise BagError(self.path, error.reason) from None
        self.num_frames = self._reader.counts.get(self.topics.image, 0)
        self.T_base_cam = self._extrinsics()
        if self.wheel_topic is not None:
            self._read_wheel_odometry(self.wheel_topic)
        return self

    def __exit__(self, *exc: object) -> None:
        self._reader.__exit__(*exc)

    @property
    def mode(self) -> SensorMode:
        """The VO mode of the selected topics."""
        return self.topics.mode

    def _extrinsics(self) -> NDArray[np.float64] | None:
        for _, msg in self._reader.decoded([self.topics.info]):
            return static_T_parent_child(self._reader, self.base_frame, msg.header.frame_id)
        raise BagError(self.path, f"no message on {self.topics.info}")

    @property
    def wheel_samples(self) -> int:
        """Wheel-odometry samples read (0 without ``wheel_topic``)."""
        return len(self._wheel_stamps_ns)

    def _read_wheel_odometry(self, topic: str) -> None:
        """Every pose of ``topic`` (increasing stamps; a repeated or older stamp is skipped)."""
        msgtype = self._reader.topics.get(topic)
        if msgtype != "nav_msgs/msg/Odometry":
            found = f"it is {msgtype}" if msgtype else "the bag has no such topic"
            raise BagError(self.path, f"wheel odometry topic {topic!r} must be nav_msgs/msg/Odometry ({found})")
        for index, (_, msg) in enumerate(self._reader.decoded([topic])):
            p, q = msg.pose.pose.position, msg.pose.pose.orientation
            values = np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w])
            if not np.all(np.isfinite(values)) or np.linalg.norm(values[3:]) < 1e-6:
                raise BagError(self.path, f"{topic} message {index}: pose.pose is not a finite pose with a unit "
                                          f"quaternion (position {values[:3].tolist()}, orientation {values[3:].tolist()})")
            stamp = stamp_ns(msg.header)
            if self._wheel_stamps_ns and stamp <= self._wheel_stamps_ns[-1]:
                continue
            self._wheel_stamps_ns.append(stamp)
            self._wheel_poses.append(se3_from_translation_quat(values[:3], values[3:])[0])  # normalises the quaternion

    def __iter__(self) -> Iterator[Frame]:
        t = self.topics
        infos: dict[str, CameraModel] = {}
        pending: dict[str, deque[tuple[int, Any]]] = {t.image: deque(), t.second: deque()}
        wanted = [t.image, t.second, t.info] + ([t.second_info] if t.second_info else [])
        for message, msg in self._reader.decoded(wanted):
            if message.topic in (t.info, t.second_info):
                infos[message.topic] = camera_model_from_info(msg)
                continue
            pending[message.topic].append((stamp_ns(msg.header), msg))
            pair = _pop_pair(pending[t.image], pending[t.second])
            if pair is None or t.info not in infos:
                continue
            yield self._frame(pair, infos)

    def _frame(self, pair: tuple[tuple[int, Any], tuple[int, Any]], infos: dict[str, CameraModel]) -> Frame:
        (stamp, image_msg), (_, second_msg) = pair
        camera = infos[self.topics.info]
        image = image_array(image_msg)
        order = "bgr" if image_msg.encoding == "bgr8" else "rgb"
        wheel = se3_at(self._wheel_stamps_ns, self._wheel_poses, stamp)
        if self.topics.mode is SensorMode.RGBD:
            return Frame(stamp, image, camera, depth_m=depth_metres(second_msg), colour_order=order, T_odom_base_wheel=wheel)
        right_info = infos.get(self.topics.second_info or "")
        if right_info is not None:
            camera = CameraModel(**{**camera.__dict__, "baseline_m": right_info.projection_baseline_m})
        return Frame(stamp, image, camera, right_image=image_array(second_msg), colour_order=order, T_odom_base_wheel=wheel)


def _pop_pair(first: deque[tuple[int, Any]], second: deque[tuple[int, Any]]) -> tuple[tuple[int, Any], tuple[int, Any]] | None:
    """The oldest pair of stamps within :data:`PAIR_TOLERANCE_S`; older unpaired images dropped."""
    tolerance = int(PAIR_TOLERANCE_S * 1e9)
    while first and second:
        difference = first[0][0] - second[0][0]
        if abs(difference) <= tolerance:
            return first.popleft(), second.popleft()
        (second if difference > 0 else first).popleft()
    return None
