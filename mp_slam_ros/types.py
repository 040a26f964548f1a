"""Core data types shared by the pipelines and the ROS adapters (no ROS imports).

:class:`CameraModel` is a calibrated camera as ``sensor_msgs/CameraInfo`` describes it (size, K,
distortion, R, P, frame id, stereo baseline); :meth:`CameraModel.pinhole` gives the
:class:`~mp_slam_ros.geometry.camera.PinholeCamera` the projection kernels and BA take.
:class:`KeyframeArrays` is what the visual odometry hands to loop closure (and what
``mp_slam_interfaces/msg/Keyframe`` carries).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.errors import FrameError
from mp_slam_ros.geometry.camera import PinholeCamera


@dataclass
class CameraModel:
    """A pinhole camera as in ``sensor_msgs/CameraInfo`` (unbinned, full image).

    ``baseline_m`` is the stereo baseline (metres, 0 for a monocular/RGB-D camera). A right
    camera's CameraInfo carries it in its projection matrix (``P[0, 3] = -fx * baseline``, see
    :attr:`projection_baseline_m`); the left camera of a stereo pair gets it from there.
    """

    frame_id: str  # camera optical frame
    width: int
    height: int
    camera_matrix: NDArray[np.float64]  # (3, 3) K
    distortion_model: str  # "plumb_bob", "rational_polynomial", "equidistant" or ""
    distortion_coeffs: NDArray[np.float64]  # (k,) D
    rectification: NDArray[np.float64]  # (3, 3) R
    projection_matrix: NDArray[np.float64]  # (3, 4) P; P[0, 3] = -fx * baseline (stereo right)
    baseline_m: float = 0.0

    @classmethod
    def from_pinhole(cls, camera: PinholeCamera, frame_id: str, baseline_m: float = 0.0) -> CameraModel:
        """An undistorted camera model of ``camera`` (``P = [K | 0]``)."""
        K = camera.K
        return cls(
            frame_id=frame_id, width=camera.width, height=camera.height, camera_matrix=K,
            distortion_model="plumb_bob", distortion_coeffs=np.zeros(5), rectification=np.eye(3),
            projection_matrix=np.hstack([K, np.zeros((3, 1))]), baseline_m=baseline_m,
        )

    @property
    def fx(self) -> float:
        """Horizontal focal length (pixels)."""
        return float(self.camera_matrix[0, 0])

    @property
    def fy(self) -> float:
        """Vertical focal length (pixels)."""
        return float(self.camera_matrix[1, 1])

    @property
    def cx(self) -> float:
        """Principal point x (pixels)."""
        return float(self.camera_matrix[0, 2])

    @property
    def cy(self) -> float:
        """Principal point y (pixels)."""
        return float(self.camera_matrix[1, 2])

    @property
    def projection_baseline_m(self) -> float:
        """Baseline encoded in P (``-P[0, 3] / P[0, 0]``; 0 for a left or single camera)."""
        P = np.asarray(self.projection_matrix, dtype=np.float64)
        return float(-P[0, 3] / P[0, 0]) if P.shape == (3, 4) and P[0, 0] > 0.0 else 0.0

    def check(self, field: str = "camera") -> None:
        """Raise :class:`FrameError` naming the field unless size and intrinsics are usable."""
        K = np.asarray(self.camera_matrix, dtype=np.float64)
        if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0.0 or K[1, 1] <= 0.0:
            raise FrameError(f"{field}.camera_matrix", K.reshape(-1).tolist(), "missing or zero intrinsics")
        if self.width <= 0 or self.height <= 0:
            raise FrameError(f"{field}.width/height", (self.width, self.height), "image size must be positive")
        if not (np.isfinite(self.baseline_m) and self.baseline_m >= 0.0):
            raise FrameError(f"{field}.baseline_m", self.baseline_m, "must be finite and >= 0")

    def pinhole(self, baseline_m: float | None = None) -> PinholeCamera:
        """The :class:`PinholeCamera` of K (distortion ignored: rectified images), size and baseline."""
        return PinholeCamera.from_matrix(
            self.camera_matrix, width=int(self.width), height=int(self.height),
            baseline_m=self.baseline_m if baseline_m is None else baseline_m,
        )


@dataclass
class KeyframeArrays:
    """Numpy side of ``mp_slam_interfaces/msg/Keyframe`` (N keypoints)."""

    keyframe_id: int
    stamp_ns: int
    frame_id: str  # odometry frame of pose_odom_cam
    pose_odom_cam: NDArray[np.float64]  # (7,) pose7 of the camera optical frame
    covariance_odom_cam: NDArray[np.float64]  # (6, 6), order x y z rx ry rz
    camera: CameraModel
    keypoints_px: NDArray[np.float32]  # (N, 2) u, v
    descriptors: NDArray[np.uint8]  # (N, D) binary descriptors
    points_cam: NDArray[np.float32]  # (N, 3) metres, NaN rows without depth
