"""A rectified stereo sequence into a rosbag2 with the topics of a rectifying stereo driver.

Shared by the dataset importers (:mod:`.kitti`, :mod:`.euroc`): ``/left/image_rect``,
``/right/image_rect`` (mono8), ``/left/camera_info``, ``/right/camera_info`` (no distortion; the
right one with ``P[0, 3] = -fx * baseline``) and ``/tf_static`` ``base_link -> camera_left_optical_frame``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.errors import FileFormatError
from mp_slam_ros.geometry.camera import PinholeCamera
from mp_slam_ros.io.bags import BagWriter
from mp_slam_ros.sim.messages import camera_info_msg, image_msg, tf_msg, transform_stamped

LEFT_FRAME, RIGHT_FRAME, BASE_FRAME = "camera_left_optical_frame", "camera_right_optical_frame", "base_link"
TOPICS = {"/left/image_rect": "sensor_msgs/msg/Image", "/right/image_rect": "sensor_msgs/msg/Image",
          "/left/camera_info": "sensor_msgs/msg/CameraInfo", "/right/camera_info": "sensor_msgs/msg/CameraInfo"}


def read_grey_image(path: Path, size: tuple[int, int], size_from: str = "") -> NDArray[np.uint8]:
    """The grey ``(H, W) uint8`` image at ``path``; :class:`FileFormatError` unless it reads
    with ``size`` ``(width, height)`` (``size_from``: where that size comes from, for the message)."""
    pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if pixels is None or pixels.shape != (size[1], size[0]):
        raise FileFormatError(path, None, f"cannot read a {size[0]}x{size[1]} grey PNG" + (f" ({size_from})" if size_from else ""))
    return pixels


def write_stereo_bag(
    bag_dir: Path,
    camera: PinholeCamera,
    baseline_m: float,
    T_base_cam: NDArray[np.float64],
    stamps_ns: NDArray[np.int64],
    pairs: Iterable[tuple[NDArray[np.uint8], NDArray[np.uint8]]],
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write the bag at ``bag_dir``: ``pairs`` yields the rectified ``(left, right)`` grey images
    (``(H, W) uint8``, the size of ``camera``) of each of the ``(N,)`` ``stamps_ns``; ``T_base_cam``
    ``(4, 4)`` is the rectified left camera in ``base_link``. Returns ``bag_dir``."""
    with BagWriter(bag_dir) as bag:
        for topic, msgtype in TOPICS.items():
            bag.add_topic(topic, msgtype)
        bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
        first = int(stamps_ns[0])
        bag.write("/tf_static", first, tf_msg([transform_stamped(T_base_cam, first, BASE_FRAME, LEFT_FRAME)]))
        for k, (stamp, pair) in enumerate(zip(stamps_ns, pairs)):
            for side, pixels, frame, baseline in (("left", pair[0], LEFT_FRAME, 0.0), ("right", pair[1], RIGHT_FRAME, baseline_m)):
                bag.write(f"/{side}/camera_info", int(stamp), camera_info_msg(camera, int(stamp), frame, baseline))
                bag.write(f"/{side}/image_rect", int(stamp), image_msg(pixels, int(stamp), frame))
            if progress is not None:
                progress(k + 1, len(stamps_ns))
    return bag_dir
