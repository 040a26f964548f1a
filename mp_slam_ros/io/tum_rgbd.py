"""TUM RGB-D sequences into a rosbag2 + ground truth (the layout of ``mp-slam generate``).

Layout: ``rgb.txt`` and ``depth.txt`` (``timestamp filename`` lines, ``#`` comments), ``rgb/`` and
``depth/`` PNGs (depth uint16, 5000 units per metre), optional ``groundtruth.txt`` (TUM
trajectory of the colour camera's optical frame). Colour and depth are paired like TUM's
``associate.py`` (nearest stamps within 20 ms, each image used once). The intrinsics are the
published ones of the ``freiburg1/2/3`` cameras (from the folder name) unless given; distorted
cameras (freiburg1, freiburg2) are undistorted while importing, so the bag's CameraInfo has none.

The bag has ``/camera/color/image_raw`` (rgb8), ``/camera/aligned_depth_to_color/image_raw``
(16UC1, mm), ``/camera/color/camera_info`` and ``/tf_static`` ``base_link -> camera`` (see
:func:`mp_slam_ros.io.kitti.T_base_camera`); ``groundtruth.tum`` is base_link in the world.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.errors import FileFormatError
from mp_slam_ros.geometry.camera import PinholeCamera
from mp_slam_ros.geometry.lie import se3_inverse
from mp_slam_ros.io.bags import BagWriter
from mp_slam_ros.io.kitti import T_base_camera
from mp_slam_ros.io.text import parse_finite_float, read_text_lines
from mp_slam_ros.io.tum import TumTrajectory, read_tum, write_tum
from mp_slam_ros.sim.messages import camera_info_msg, image_msg, tf_msg, transform_stamped

#: published intrinsics (fx, fy, cx, cy) and distortion (k1, k2, p1, p2, k3) of the TUM cameras
FREIBURG = {
    "freiburg1": ((517.3, 516.5, 318.6, 255.3), (0.2624, -0.9531, -0.0054, 0.0026, 1.1633)),
    "freiburg2": ((520.9, 521.0, 325.1, 249.7), (0.2312, -0.7849, -0.0033, -0.0001, 0.9172)),
    "freiburg3": ((535.4, 539.2, 320.1, 247.6), (0.0, 0.0, 0.0, 0.0, 0.0)),
}
DEPTH_UNITS_PER_M = 5000.0
ASSOCIATE_MAX_S = 0.02
CAMERA_FRAME, BASE_FRAME = "camera_color_optical_frame", "base_link"


@dataclass
class TumRgbdSequence:
    """Associated colour/depth images (same length), intrinsics, optional ground truth."""

    times_s: NDArray[np.float64]  # (N,) colour stamps
    rgb: list[Path]
    depth: list[Path]
    K: NDArray[np.float64]  # (3, 3)
    distortion: NDArray[np.float64]  # (5,) OpenCV plumb_bob
    T_world_cam: TumTrajectory | None


def _read_list(path: Path) -> tuple[NDArray[np.float64], list[Path]]:
    times, files = [], []
    for number, line in enumerate(read_text_lines(path), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) != 2:
            raise FileFormatError(path, number, f"expected 'timestamp filename', found {len(tokens)} fields")
        times.append(parse_finite_float(tokens[0], "timestamp", path, number))
        files.append(path.parent / tokens[1])
    if not files:
        raise FileFormatError(path, None, "lists no images")
    return np.array(times), files


def associate(first_s: NDArray[np.float64], second_s: NDArray[np.float64], max_s: float) -> list[tuple[int, int]]:
    """Index pairs of the closest stamps within ``max_s``, closest first, each index once (in time order)."""
    difference = np.abs(first_s[:, None] - second_s[None, :])
    candidates = np.argwhere(difference <= max_s)
    order = np.argsort(difference[candidates[:, 0], candidates[:, 1]], kind="stable")
    used_first, used_second, pairs = set(), set(), []
    for i, j in candidates[order]:
        if i not in used_first and j not in used_second:
            used_first.add(int(i))
            used_second.add(int(j))
            pairs.append((int(i), int(j)))
    return sorted(pairs)


def read_tum_rgbd(src: str | Path, intrinsics: tuple[float, float, float, float] | None = None) -> TumRgbdSequence:
    """Read a TUM RGB-D sequence folder; :class:`FileFormatError` names what is wrong."""
    src = Path(src)
    rgb_s, rgb = _read_list(src / "rgb.txt")
    depth_s, depth = _read_list(src / "depth.txt")
    pairs = associate(rgb_s, depth_s, ASSOCIATE_MAX_S)
    if not pairs:
        raise FileFormatError(src, None, f"no colour and depth images within {ASSOCIATE_MAX_S} s of each other")
    if intrinsics is not None:
        (fx, fy, cx, cy), distortion = intrinsics, (0.0,) * 5
    else:
        known = [name for name in FREIBURG if name in src.resolve().name]
        if not known:
            raise FileFormatError(src, None, f"unknown camera: name the folder after one of {', '.join(FREIBURG)} or pass the intrinsics")
        (fx, fy, cx, cy), distortion = FREIBURG[known[0]]
    truth = read_tum(src / "groundtruth.txt") if (src / "groundtruth.txt").exists() else None
    return TumRgbdSequence(
        rgb_s[[i for i, _ in pairs]], [rgb[i] for i, _ in pairs], [depth[j] for _, j in pairs],
        np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]]), np.array(distortion), truth,
    )


def _read_png(path: Path, flags: int) -> NDArray:
    pixels = cv2.imread(str(path), flags)
    if pixels is None:
        raise FileFormatError(path, None, "cannot read the PNG image")
    return pixels


def write_tum_rgbd_bag(sequence: TumRgbdSequence, out_dir: str | Path, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``out_dir/bag`` (and ``out_dir/groundtruth.tum`` with ground truth); returns the bag."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    height, width = _read_png(sequence.rgb[0], cv2.IMREAD_COLOR).shape[:2]
    K = sequence.K
    camera = PinholeCamera.from_matrix(K, width=width, height=height)
    maps = None
    if np.any(sequence.distortion != 0.0):
        maps = cv2.initUndistortRectifyMap(K, sequence.distortion, None, K, (width, height), cv2.CV_32FC1)
    stamps_ns = np.rint(sequence.times_s * 1e9).astype(np.int64)
    with BagWriter(out_dir / "bag") as bag:
        bag.add_topic("/camera/color/image_raw", "sensor_msgs/msg/Image")
        bag.add_topic("/camera/aligned_depth_to_color/image_raw", "sensor_msgs/msg/Image")
        bag.add_topic("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo")
        bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
        first = int(stamps_ns[0])
        bag.write("/tf_static", first, tf_msg([transform_stamped(T_base_camera(), first, BASE_FRAME, CAMERA_FRAME)]))
        for k, (stamp, rgb_path, depth_path) in enumerate(zip(stamps_ns, sequence.rgb, sequence.depth)):
            rgb = cv2.cvtColor(_read_png(rgb_path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            raw = _read_png(depth_path, cv2.IMREAD_UNCHANGED)
            if rgb.shape[:2] != (height, width) or raw.shape != (height, width) or raw.dtype != np.uint16:
                raise FileFormatError(depth_path, None, f"expected {width}x{height} colour and uint16 depth images")
            if maps is not None:
                rgb = cv2.remap(rgb, *maps, cv2.INTER_LINEAR)
                raw = cv2.remap(raw, *maps, cv2.INTER_NEAREST)
            depth_mm = np.rint(raw.astype(np.float64) * (1000.0 / DEPTH_UNITS_PER_M)).astype(np.uint16)
            bag.write("/camera/color/camera_info", int(stamp), camera_info_msg(camera, int(stamp), CAMERA_FRAME))
            bag.write("/camera/color/image_raw", int(stamp), image_msg(rgb, int(stamp), CAMERA_FRAME))
            bag.write("/camera/aligned_depth_to_color/image_raw", int(stamp), image_msg(depth_mm, int(stamp), CAMERA_FRAME))
            if progress is not None:
                progress(k + 1, len(sequence.rgb))
    if sequence.T_world_cam is not None:
        T_cam_base = se3_inverse(T_base_camera())
        truth = sequence.T_world_cam
        write_tum(out_dir / "groundtruth.tum", TumTrajectory.from_matrices(truth.timestamps_s, truth.matrices() @ T_cam_base),
                  comment="ground truth T_world_base_link (TUM groundtruth.txt)")
    return out_dir / "bag"
