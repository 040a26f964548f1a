"""KITTI odometry sequences: reading the layout and converting it into a rosbag2 + ground truth.

Layout: ``image_0/ image_1/`` (or ``image_l/ image_r/``) rectified grey PNGs, ``calib.txt``
(``P0``/``P1`` 3x4 projection matrices, named ``P0: ...`` or the first two lines), optional
``poses.txt`` (3x4 ``[R | t]`` of the left camera in the first left camera's frame) and
``times.txt`` (seconds; 10 Hz when absent).

The bag (:func:`write_kitti_bag`) has the topics of :mod:`.stereo_bag` with ``base_link`` a
REP-103 body (x forward, z up) at the camera. ``groundtruth.tum`` is base_link in the first base_link frame.
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
from mp_slam_ros.io.text import parse_finite_float, read_text_lines
from mp_slam_ros.io.stereo_bag import read_grey_image, write_stereo_bag
from mp_slam_ros.io.tum import TumTrajectory, write_tum
from mp_slam_ros.sim.rig import R_BASE_OPTICAL

IMAGE_DIRS = (("image_0", "image_1"), ("image_l", "image_r"))
KITTI_RATE_HZ = 10.0
START_NS = 1_000_000_000  # stamps start at 1 s (0 is "no stamp" in ROS)


@dataclass
class KittiSequence:
    """A KITTI odometry sequence on disk (images are read lazily)."""

    left_images: list[Path]
    right_images: list[Path]
    P_left: NDArray[np.float64]  # (3, 4)
    P_right: NDArray[np.float64]  # (3, 4)
    times_s: NDArray[np.float64]  # (N,)
    T_cam0_cam: NDArray[np.float64] | None  # (N, 4, 4) ground truth of the left camera

    @property
    def baseline_m(self) -> float:
        """Stereo baseline from the right projection matrix."""
        return float(-self.P_right[0, 3] / self.P_right[0, 0])


def _matrices(path: Path, line_numbers: list[int], rows: list[list[str]]) -> NDArray[np.float64]:
    values = np.zeros((len(rows), 12))
    for i, (number, tokens) in enumerate(zip(line_numbers, rows)):
        if len(tokens) != 12:
            raise FileFormatError(path, number, f"expected 12 numbers (a 3x4 matrix), found {len(tokens)}")
        values[i] = [parse_finite_float(t, f"m{j}", path, number) for j, t in enumerate(tokens)]
    return values.reshape(-1, 3, 4)


def _read_calib(path: Path) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    named: dict[str, tuple[int, list[str]]] = {}
    unnamed: list[tuple[int, list[str]]] = []
    for number, line in enumerate(read_text_lines(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if tokens[0].endswith(":"):
            named[tokens[0][:-1]] = (number, tokens[1:])
        else:
            unnamed.append((number, tokens))
    entries = [named[k] for k in ("P0", "P1") if k in named] if named else unnamed[:2]
    if len(entries) < 2:
        raise FileFormatError(path, None, "needs the P0 and P1 projection matrices")
    P = _matrices(path, [e[0] for e in entries], [e[1] for e in entries])
    if not (P[0, 0, 0] > 0 and P[1, 0, 0] > 0 and P[1, 0, 3] < 0):
        raise FileFormatError(path, None, "P0/P1 need positive focal lengths and P1[0, 3] = -fx * baseline < 0")
    return P[0], P[1]


def read_kitti(src: str | Path) -> KittiSequence:
    """Read a KITTI odometry sequence directory; :class:`FileFormatError` names what is wrong."""
    src = Path(src)
    for left_dir, right_dir in IMAGE_DIRS:
        if (src / left_dir).is_dir() and (src / right_dir).is_dir():
            break
    else:
        raise FileFormatError(src, None, "no image_0/ image_1/ (or image_l/ image_r/) folders")
    left = sorted((src / left_dir).glob("*.png"))
    right = sorted((src / right_dir).glob("*.png"))
    if not left or len(left) != len(right):
        raise FileFormatError(src, None, f"{len(left)} left and {len(right)} right PNG images (need equal, > 0)")
    P_left, P_right = _read_calib(src / "calib.txt")
    times = np.arange(len(left)) / KITTI_RATE_HZ
    if (src / "times.txt").exists():
        lines = [(n, l) for n, l in enumerate(read_text_lines(src / "times.txt"), start=1) if l.strip()]
        times = np.array([parse_finite_float(l.strip(), "time", src / "times.txt", n) for n, l in lines])
    if len(times) != len(left) or np.any(np.diff(times) <= 0):
        raise FileFormatError(src / "times.txt", None, f"{len(times)} increasing times expected for {len(left)} images")
    poses = None
    if (src / "poses.txt").exists():
        lines = [(n, l.split()) for n, l in enumerate(read_text_lines(src / "poses.txt"), start=1) if l.strip()]
        if len(lines) != len(left):
            raise FileFormatError(src / "poses.txt", None, f"{len(lines)} poses for {len(left)} images")
        poses = np.tile(np.eye(4), (len(lines), 1, 1))
        poses[:, :3, :] = _matrices(src / "poses.txt", [n for n, _ in lines], [t for _, t in lines])
    return KittiSequence(left, right, P_left, P_right, times, poses)


def T_base_camera() -> NDArray[np.float64]:
    """``T_base_cam`` of the imported bags: the optical axes turned into a REP-103 body frame."""
    T = np.eye(4)
    T[:3, :3] = R_BASE_OPTICAL
    return T


def write_kitti_bag(sequence: KittiSequence, out_dir: str | Path, progress: Callable[[int, int], None] | None = None) -> Path:
    """Write ``out_dir/bag`` (and ``out_dir/groundtruth.tum`` when poses exist); returns the bag."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    first = cv2.imread(str(sequence.left_images[0]), cv2.IMREAD_GRAYSCALE)
    if first is None:
        raise FileFormatError(sequence.left_images[0], None, "cannot read the PNG image")
    height, width = first.shape
    P = sequence.P_left
    camera = PinholeCamera.from_matrix(P, width=width, height=height)
    stamps_ns = START_NS + np.rint(sequence.times_s * 1e9).astype(np.int64)
    size = (width, height)
    pairs = ((read_grey_image(left, size), read_grey_image(right, size))
             for left, right in zip(sequence.left_images, sequence.right_images))
    T_base_cam = T_base_camera()
    bag = write_stereo_bag(out_dir / "bag", camera, sequence.baseline_m, T_base_cam, stamps_ns, pairs, progress)
    if sequence.T_cam0_cam is not None:
        T_world_base = T_base_cam @ sequence.T_cam0_cam @ se3_inverse(T_base_cam)
        write_tum(out_dir / "groundtruth.tum", TumTrajectory.from_matrices(stamps_ns * 1e-9, T_world_base),
                  comment="ground truth T_world_base_link (KITTI poses.txt)")
    return bag
