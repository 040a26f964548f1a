"""Input checks of the visual odometry (every bad frame becomes a :class:`FrameError`) and the
BA warm-up solve (the first numba call of a process loads its compiled cache)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.errors import FrameError
from mp_slam_ros.geometry.camera import PinholeCamera
from mp_slam_ros.pipelines.vo_config import BAConfig, SensorMode
from mp_slam_ros.pipelines.window import SlidingWindow, WindowKeyframe, solve_window
from mp_slam_ros.solvers.summary import Summary

if TYPE_CHECKING:
    from mp_slam_ros.pipelines.vo import Frame

_TO_GREY = {"rgb": cv2.COLOR_RGB2GRAY, "bgr": cv2.COLOR_BGR2GRAY}


@dataclass
class FrameImages:
    """The checked images of a frame."""

    grey: NDArray[np.uint8]  # (H, W)
    depth_m: NDArray[np.float32] | None  # (H, W) metres, NaN invalid (RGB-D)
    right: NDArray[np.uint8] | None  # (H, W) rectified right image (stereo)


@dataclass
class StepLog:
    """What one ``track`` call records besides the pose: its start, timings, finished BAs."""

    started_s: float
    timings_s: dict[str, float] = field(default_factory=dict)
    ba_summaries: list[Summary] = field(default_factory=list)


def checked_images(frame: Frame, mode: SensorMode, last_stamp_ns: int | None) -> FrameImages:
    """Grey image, depth (metres, NaN invalid; RGB-D) and right image (stereo) of ``frame``.

    Raises :class:`FrameError` naming the field: bad intrinsics, an image that is not 8-bit or
    does not match the camera size, missing depth / right image / baseline for the mode, or a
    stamp not after the previous frame's.
    """
    camera = frame.camera
    camera.check("frame.camera")
    if last_stamp_ns is not None and frame.stamp_ns <= last_stamp_ns:
        raise FrameError("frame.stamp_ns", frame.stamp_ns, f"not after the previous frame ({last_stamp_ns}); reset() first")
    grey = _grey(frame.image, frame.colour_order, "frame.image", (camera.height, camera.width))
    depth = right = None
    if mode is SensorMode.RGBD:
        if frame.depth_m is None:
            raise FrameError("frame.depth_m", None, "rgbd mode needs a depth image")
        depth = np.asarray(frame.depth_m, dtype=np.float32)
        if depth.shape != grey.shape:
            raise FrameError("frame.depth_m", depth.shape, f"does not match the image size {grey.shape}")
    else:
        if frame.right_image is None:
            raise FrameError("frame.right_image", None, "stereo mode needs a right image")
        if not camera.baseline_m > 0.0:
            raise FrameError("frame.camera.baseline_m", camera.baseline_m, "stereo mode needs a positive baseline")
        right = _grey(frame.right_image, frame.colour_order, "frame.right_image", grey.shape)
    return FrameImages(grey, depth, right)


def _grey(image: NDArray, colour_order: str, field: str, shape: tuple[int, int]) -> NDArray[np.uint8]:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise FrameError(field, str(image.dtype), "must be 8-bit (uint8)")
    if image.shape[:2] != tuple(shape) or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise FrameError(field, image.shape, f"does not match the camera size {shape[1]}x{shape[0]} (grey or 3 channels)")
    if image.ndim == 2:
        return np.ascontiguousarray(image)
    if colour_order not in _TO_GREY:
        raise FrameError("frame.colour_order", colour_order, "must be rgb or bgr")
    return cv2.cvtColor(image, _TO_GREY[colour_order])


def warm_up_ba(config: BAConfig) -> None:
    """Solve a tiny window once so the first real window BA does not pay the numba cache load."""
    camera = PinholeCamera(400.0, 400.0, 160.0, 120.0, width=320, height=240, baseline_m=0.1)
    rng = np.random.default_rng(0)
    window = SlidingWindow(3)
    points = rng.uniform([-1.0, -1.0, 2.0], [1.0, 1.0, 4.0], (30, 3))
    ids = window.add_landmarks(points, np.zeros((len(points), 32), np.uint8))
    for k in range(3):
        T = np.eye(4)
        T[0, 3] = 0.1 * k
        points_cam = points - T[:3, 3]
        uv = camera.project(points_cam) + rng.normal(0.0, 0.5, (30, 2))
        u_right = camera.right_coordinate(uv[:, 0], points_cam[:, 2])
        window.add_keyframe(WindowKeyframe(k, k, T, ids, uv, u_right, (0, 30) if k == 0 else (30, 30)))
    job = window.problem(camera, config)
    if job is not None:
        solve_window(job, config)
