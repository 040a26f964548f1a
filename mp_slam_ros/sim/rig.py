"""Sensor rig of the simulated robot: camera intrinsics and the static poses T_base_cam, T_base_right.

Frames: ``base_link`` (x forward, y left, z up, on the floor between the wheels) and the camera
optical frames (REP-103: x right, y down, z forward).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from mp_slam_ros.geometry.camera import PinholeCamera
from mp_slam_ros.sim.config import CameraConfig

#: R_base_optical of an untilted camera looking along base x
R_BASE_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

BASE_FRAME = "base_link"
CAMERA_FRAME = "camera_optical_frame"
RIGHT_CAMERA_FRAME = "camera_right_optical_frame"
WORLD_FRAME = "world"
ODOM_FRAME = "odom"


@dataclass(frozen=True)
class Rig:
    """Intrinsics and extrinsics of the (stereo) RGB-D camera."""

    camera: PinholeCamera
    T_base_cam: NDArray[np.float64]  # (4, 4)
    #: pose of the right stereo camera in the left optical frame; None without stereo
    T_cam_right: NDArray[np.float64] | None

    @property
    def T_base_right(self) -> NDArray[np.float64] | None:
        """Pose of the right optical frame in base_link (None without stereo)."""
        return None if self.T_cam_right is None else self.T_base_cam @ self.T_cam_right


def make_rig(cfg: CameraConfig) -> Rig:
    """Build the rig from the camera configuration (intrinsics scaled by ``image_scale``)."""
    scale = cfg.width / cfg.width_px
    focal = cfg.focal_px * scale
    camera = PinholeCamera(focal, focal, (cfg.width - 1) / 2.0, (cfg.height - 1) / 2.0, width=cfg.width, height=cfg.height)
    T_base_cam = np.eye(4)
    T_base_cam[:3, :3] = Rotation.from_euler("y", cfg.tilt_deg, degrees=True).as_matrix() @ R_BASE_OPTICAL
    T_base_cam[:3, 3] = [cfg.offset_m[0], cfg.offset_m[1], cfg.height_m]
    T_cam_right = None
    if cfg.stereo_baseline_m > 0.0:
        T_cam_right = np.eye(4)
        T_cam_right[0, 3] = cfg.stereo_baseline_m
    return Rig(camera, T_base_cam, T_cam_right)
