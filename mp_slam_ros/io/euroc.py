"""EuRoC MAV (ASL layout) stereo sequences: reading, rectifying, and converting into a rosbag2.

Layout: the ``mav0/`` folder (or the sequence folder that holds it) with ``cam0/`` and ``cam1/``,
each holding ``data.csv`` (``#timestamp [ns],filename`` lines), ``data/*.png`` and ``sensor.yaml``:
``T_BS`` (the camera in the body frame: ``data``, 16 numbers row-major), ``resolution: [w, h]``,
``camera_model: pinhole``, ``intrinsics: [fu, fv, cu, cv]``, ``distortion_model``
(``radial-tangential``: ``[k1, k2, p1, p2]``; ``equidistant``: ``[k1, k2, k3, k4]``, the fisheye
model of TUM-VI's exports) and ``distortion_coefficients``. Optional ground truth, the body (IMU)
frame in the world: ``state_groundtruth_estimate0/data.csv`` (EuRoC's) or ``mocap0/data.csv``,
``timestamp [ns], p x y z [m], q w x y z`` first. Instead of ``sensor.yaml``: a Kalibr
``camchain.yaml`` (``cam0:``/``cam1:`` with ``T_cam_imu``, ``intrinsics``, ``distortion_model``,
``distortion_coeffs``, ``resolution``), given or found at ``<sequence>/dso/camchain.yaml`` where
TUM-VI's EuRoC-format exports keep it.

EuRoC's images are distorted and the two cameras are not row-aligned, so the importer rectifies
both (OpenCV ``stereoRectify`` with zero disparity at infinity and ``alpha = 0``: every output
pixel valid) and writes what a rectifying stereo driver publishes (:mod:`.stereo_bag`). Frames are
paired by identical stamps (the cameras are triggered together); an image without a partner is
skipped and counted. ``base_link`` is the body frame: ``/tf_static`` carries the rectified left
camera in it, and ``groundtruth.tum`` is the body in the world at the ground truth's own stamps
(the bag keeps the dataset's stamps).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from mp_slam_ros.config import read_yaml_mapping
from mp_slam_ros.errors import FileFormatError
from mp_slam_ros.geometry.camera import PinholeCamera
from mp_slam_ros.geometry.lie import se3_inverse
from mp_slam_ros.io.stereo_bag import read_grey_image, write_stereo_bag
from mp_slam_ros.io.text import parse_finite_float, read_text_lines
from mp_slam_ros.io.tum import TumTrajectory, write_tum

DISTORTION_MODELS = {"radial-tangential": 4, "equidistant": 4}
GROUND_TRUTH_FILES = ("state_groundtruth_estimate0/data.csv", "mocap0/data.csv")


@dataclass
class EurocCamera:
    """One camera of the rig: calibration from ``sensor.yaml`` and its images from ``data.csv``."""

    K: NDArray[np.float64]  # (3, 3)
    distortion: NDArray[np.float64]  # (4,) in the convention of distortion_model
    distortion_model: str
    size: tuple[int, int]  # (width, height)
    T_body_cam: NDArray[np.float64]  # (4, 4)
    images: dict[int, Path]  # stamp (ns) -> PNG
    calibration_file: Path  # the sensor.yaml or camchain.yaml it was read from (named in errors)


@dataclass
class StereoRectification:
    """The rectified rig: one pinhole camera for both images, the baseline, the rectified left
    camera in the body frame and the pixel maps of both cameras."""

    camera: PinholeCamera
    baseline_m: float
    T_body_rect: NDArray[np.float64]  # (4, 4)
    maps: tuple[tuple[NDArray[np.float32], NDArray[np.float32]], tuple[NDArray[np.float32], NDArray[np.float32]]]

    def rectify(self, left: NDArray[np.uint8], right: NDArray[np.uint8]) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
        """Both raw ``(H, W) uint8`` images remapped (bilinear) into the rectified pair."""
        return tuple(cv2.remap(image, mx, my, cv2.INTER_LINEAR) for image, (mx, my) in zip((left, right), self.maps))  # type: ignore[return-value]


@dataclass
class EurocSequence:
    """A EuRoC stereo sequence: both cameras, the paired stamps, optional ground truth."""

    cam0: EurocCamera
    cam1: EurocCamera
    stamps_ns: NDArray[np.int64]  # (N,) stamps present in both cameras, increasing
    unpaired: int  # images of either camera without a partner (skipped)
    T_world_body: TumTrajectory | None


def _sequence_root(src: Path) -> Path:
    for root in (src, src / "mav0"):
        if (root / "cam0").is_dir() and (root / "cam1").is_dir():
            return root
    raise FileFormatError(src, None, "no cam0/ and cam1/ folders (here or in mav0/): not a EuRoC (ASL) sequence")


def _numbers(path: Path, data: object, field: str, count: int) -> NDArray[np.float64]:
    values = data.get("data") if isinstance(data, dict) else data
    if isinstance(values, list) and values and all(isinstance(row, list) for row in values):
        values = [v for row in values for v in row]  # Kalibr's matrices: a list of rows
    if not isinstance(values, list) or len(values) != count:
        raise FileFormatError(path, None, f"field {field}: expected {count} numbers, found {values!r}")
    try:
        array = np.array([float(v) for v in values])
    except (TypeError, ValueError):
        raise FileFormatError(path, None, f"field {field}: not numbers: {values!r}") from None
    if not np.all(np.isfinite(array)):
        raise FileFormatError(path, None, f"field {field}: not finite: {values!r}")
    return array


def _calibration(
    path: Path, block: object, camera: str | None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], str, tuple[int, int], NDArray[np.float64]]:
    """``(K, distortion, model, (w, h), T_body_cam)`` of a ``sensor.yaml`` mapping (``camera``
    None) or of the ``camera`` block of a Kalibr camchain (``T_cam_imu``, ``distortion_coeffs``)."""
    if not isinstance(block, dict):
        raise FileFormatError(path, None, f"no {camera!r} block" if camera else "expected a mapping at the top level")
    prefix = f"{camera}." if camera else ""
    model = block.get("camera_model", "pinhole")
    if model != "pinhole":
        raise FileFormatError(path, None, f"field {prefix}camera_model={model!r}: only pinhole cameras are supported")
    distortion_model = str(block.get("distortion_model", ""))
    if distortion_model not in DISTORTION_MODELS:
        raise FileFormatError(path, None, f"field {prefix}distortion_model={distortion_model!r}: expected one of {', '.join(DISTORTION_MODELS)}")
    fu, fv, cu, cv = _numbers(path, block.get("intrinsics"), f"{prefix}intrinsics", 4)
    if not (fu > 0 and fv > 0):
        raise FileFormatError(path, None, f"field {prefix}intrinsics: focal lengths must be positive, got {fu}, {fv}")
    coefficients = "distortion_coeffs" if camera else "distortion_coefficients"
    distortion = _numbers(path, block.get(coefficients), prefix + coefficients, DISTORTION_MODELS[distortion_model])
    width, height = (int(v) for v in _numbers(path, block.get("resolution"), f"{prefix}resolution", 2))
    if width <= 0 or height <= 0:
        raise FileFormatError(path, None, f"field {prefix}resolution: {width}x{height} is not an image size")
    extrinsics = "T_cam_imu" if camera else "T_BS"
    T = _numbers(path, block.get(extrinsics), prefix + extrinsics, 16).reshape(4, 4)
    if not np.allclose(T[3], [0, 0, 0, 1]) or not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-4):
        raise FileFormatError(path, None, f"field {prefix}{extrinsics}: not a rigid transform")
    K = np.array([[fu, 0.0, cu], [0.0, fv, cv], [0.0, 0.0, 1.0]])
    return K, distortion, distortion_model, (width, height), se3_inverse(T) if camera else T


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str], str]]:
    """``(line number, stripped fields, line)`` of each row of an ASL ``data.csv`` (blank lines
    and ``#`` comments skipped)."""
    for number, line in enumerate(read_text_lines(path), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, [f.strip() for f in line.split(",")], line


def _read_image_list(path: Path) -> dict[int, Path]:
    images: dict[int, Path] = {}
    for number, fields, line in _csv_rows(path):
        if len(fields) != 2 or not fields[0].isdigit():
            raise FileFormatError(path, number, f"expected 'timestamp [ns],filename', found {line.strip()!r}")
        stamp = int(fields[0])
        if stamp in images:
            raise FileFormatError(path, number, f"field timestamp={stamp}: listed twice")
        images[stamp] = path.parent / "data" / fields[1]
    if not images:
        raise FileFormatError(path, None, "lists no images")
    return images


def _read_camera(folder: Path, camchain: Path | None) -> EurocCamera:
    """A camera from its ``sensor.yaml`` or, given, its block of the Kalibr ``camchain``."""
    source = camchain if camchain is not None else folder / "sensor.yaml"
    if not source.is_file():
        raise FileFormatError(source, None, "missing: the camera's calibration (or give a Kalibr camchain.yaml)")
    block = read_yaml_mapping(source)
    calibration = _calibration(source, block.get(folder.name), folder.name) if camchain else _calibration(source, dict(block), None)
    return EurocCamera(*calibration, _read_image_list(folder / "data.csv"), source)


def _read_ground_truth(path: Path) -> TumTrajectory:
    stamps, rows = [], []
    for number, fields, _ in _csv_rows(path):
        if len(fields) < 8:
            raise FileFormatError(path, number, f"expected timestamp, position (3) and quaternion w x y z, found {len(fields)} fields")
        if not fields[0].isdigit():
            raise FileFormatError(path, number, f"field timestamp={fields[0]!r} is not an integer of nanoseconds")
        stamps.append(int(fields[0]))
        names = ("p_x", "p_y", "p_z", "q_w", "q_x", "q_y", "q_z")
        rows.append([parse_finite_float(f, name, path, number) for f, name in zip(fields[1:8], names)])
    if not rows:
        raise FileFormatError(path, None, "holds no poses")
    values = np.array(rows)
    norms = np.linalg.norm(values[:, 3:], axis=1)
    if np.any(norms < 1e-6):
        raise FileFormatError(path, int(np.argmax(norms < 1e-6)) + 1, "a zero quaternion")
    order = np.argsort(stamps, kind="stable")
    T = np.tile(np.eye(4), (len(rows), 1, 1))
    T[:, :3, :3] = Rotation.from_quat(values[:, [4, 5, 6, 3]]).as_matrix()  # scipy: x y z w
    T[:, :3, 3] = values[:, :3]
    return TumTrajectory.from_matrices(np.array(stamps, dtype=np.int64)[order] * 1e-9, T[order])


def read_euroc(src: str | Path, camchain: str | Path | None = None) -> EurocSequence:
    """Read a EuRoC (ASL) stereo sequence, calibrated by each camera's ``sensor.yaml`` or by the
    Kalibr ``camchain`` (given, or ``dso/camchain.yaml`` beside ``mav0/`` when the cameras have
    no ``sensor.yaml``); :class:`FileFormatError` names what is wrong."""
    root = _sequence_root(Path(src))
    if camchain is None and not (root / "cam0" / "sensor.yaml").is_file():
        camchain = next((p for p in (root.parent / "dso" / "camchain.yaml", root / "dso" / "camchain.yaml") if p.is_file()), None)
    chain = Path(camchain) if camchain is not None else None
    cam0, cam1 = _read_camera(root / "cam0", chain), _read_camera(root / "cam1", chain)
    if cam0.size != cam1.size:
        raise FileFormatError(cam1.calibration_file, None, f"resolution {cam1.size} differs from cam0's {cam0.size}")
    paired = sorted(set(cam0.images) & set(cam1.images))
    if not paired:
        raise FileFormatError(root, None, "cam0 and cam1 share no timestamp: no stereo pair")
    unpaired = len(cam0.images) + len(cam1.images) - 2 * len(paired)
    truth = next((root / name for name in GROUND_TRUTH_FILES if (root / name).is_file()), None)
    return EurocSequence(cam0, cam1, np.array(paired, dtype=np.int64), unpaired,
                         _read_ground_truth(truth) if truth is not None else None)


def stereo_rectification(cam0: EurocCamera, cam1: EurocCamera) -> StereoRectification:
    """Rectify the rig (module docstring); ``ValueError`` if the cameras are not side by side
    (cam1 to the right of cam0 after rectification)."""
    T_cam1_cam0 = se3_inverse(cam1.T_body_cam) @ cam0.T_body_cam  # x_cam1 = R x_cam0 + t
    R, t = np.ascontiguousarray(T_cam1_cam0[:3, :3]), np.ascontiguousarray(T_cam1_cam0[:3, 3:])
    size = cam0.size
    if cam0.distortion_model == "equidistant":
        R1, R2, P1, P2, _ = cv2.fisheye.stereoRectify(
            cam0.K, cam0.distortion, cam1.K, cam1.distortion, size, R, t, flags=cv2.CALIB_ZERO_DISPARITY,
            balance=0.0, fov_scale=1.0)
        init = cv2.fisheye.initUndistortRectifyMap
    else:
        R1, R2, P1, P2, *_ = cv2.stereoRectify(
            cam0.K, cam0.distortion, cam1.K, cam1.distortion, size, R, t, flags=cv2.CALIB_ZERO_DISPARITY, alpha=0.0)
        init = cv2.initUndistortRectifyMap
    if abs(P2[1, 3]) > 1e-9 * abs(P2[1, 1]) or not P2[0, 3] < 0:
        raise ValueError("stereo rectification: cam1 is not to the right of cam0 (a vertical or swapped rig)")
    maps = tuple(init(cam.K, cam.distortion, Rr, P, size, cv2.CV_32FC1)
                 for cam, Rr, P in ((cam0, R1, P1), (cam1, R2, P2)))
    camera = PinholeCamera.from_matrix(P1, width=size[0], height=size[1])
    T_cam0_rect = np.eye(4)
    T_cam0_rect[:3, :3] = R1.T  # R1 turns cam0's coordinates into the rectified ones
    return StereoRectification(camera, float(-P2[0, 3] / P2[0, 0]), cam0.T_body_cam @ T_cam0_rect, maps)  # type: ignore[arg-type]


def write_euroc_bag(sequence: EurocSequence, out_dir: str | Path, progress: Callable[[int, int], None] | None = None) -> Path:
    """Rectify every pair into ``out_dir/bag`` and write ``out_dir/groundtruth.tum`` when the
    sequence has ground truth; returns the bag."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        rig = stereo_rectification(sequence.cam0, sequence.cam1)
    except ValueError as error:
        raise FileFormatError(sequence.cam1.calibration_file, None, str(error)) from None

    def pairs() -> Iterator[tuple[NDArray[np.uint8], NDArray[np.uint8]]]:
        for stamp in sequence.stamps_ns:
            left, right = (read_grey_image(camera.images[int(stamp)], camera.size,
                                           f"the size {camera.calibration_file.name} gives")
                           for camera in (sequence.cam0, sequence.cam1))
            yield rig.rectify(left, right)

    bag = write_stereo_bag(out_dir / "bag", rig.camera, rig.baseline_m, rig.T_body_rect, sequence.stamps_ns, pairs(), progress)
    if sequence.T_world_body is not None:
        write_tum(out_dir / "groundtruth.tum", sequence.T_world_body, comment="ground truth T_world_base_link (EuRoC body frame)")
    return bag
