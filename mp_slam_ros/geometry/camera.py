"""Pinhole camera with optional BAL radial distortion: vectorized projection and Jacobians.

Camera frames follow REP-103 optical conventions: ``x`` right, ``y`` down, ``z`` forward (the
camera looks along ``+z``). A point ``p = (x, y, z)`` in the camera frame projects to pixels

    x' = x / z,  y' = y / z,  r2 = x'^2 + y'^2,  d = 1 + k1 r2 + k2 r2^2,
    u = fx d x' + cx,  v = fy d y' + cy,

which is the BAL ("Bundle Adjustment in the Large") model ``f r(p) p`` once the BAL camera frame
(``z`` backward, ``y`` up) is turned into the optical one (see :mod:`mp_slam_ros.io.bal`).
With ``k1 = k2 = 0`` it is the ordinary pinhole model.

Stereo and RGB-D cameras add the ORB-SLAM right-image coordinate ``u_right = u - fx b / z``
(``b`` = stereo baseline, or a virtual baseline for a depth camera: ``u_right = u - fx b / depth``).

The per-point kernel :func:`project_point` is compiled with numba and shared by the vectorized
functions here and by the bundle-adjustment kernels, so there is one implementation of the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.errors import ConfigError

#: Columns of an intrinsics array ``(N, 6)``.
INTRINSICS_FIELDS = ("fx", "fy", "cx", "cy", "k1", "k2")


def matrix_intrinsics(K: NDArray[np.floating]) -> NDArray[np.float64]:
    """The intrinsics ``(..., 6)`` (:data:`INTRINSICS_FIELDS`, no distortion) of camera matrices
    ``K`` ``(..., 3, 3)``, e.g. ``(6,)`` for one."""
    K = np.asarray(K, dtype=np.float64)
    zeros = np.zeros(K.shape[:-2])
    return np.stack([K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], zeros, zeros], axis=-1)


@dataclass(frozen=True)
class PinholeCamera:
    """Known intrinsics of one camera (pixels), BAL radial distortion, optional stereo baseline.

    ``width``/``height`` (pixels, 0 = unknown) bound :meth:`in_image`; ``baseline_m`` is the
    stereo baseline (or virtual RGB-D baseline) used by the right-image residual.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    k1: float = 0.0
    k2: float = 0.0
    width: int = 0
    height: int = 0
    baseline_m: float = 0.0

    def __post_init__(self) -> None:
        for name in ("fx", "fy"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0.0):
                raise ConfigError(f"camera.{name}", value, "must be a finite positive focal length")
        for name in ("cx", "cy", "k1", "k2", "baseline_m"):
            if not np.isfinite(getattr(self, name)):
                raise ConfigError(f"camera.{name}", getattr(self, name), "must be finite")
        if self.width < 0 or self.height < 0 or self.baseline_m < 0.0:
            raise ConfigError("camera", self, "width, height and baseline_m must be >= 0")

    @classmethod
    def from_matrix(cls, K: NDArray[np.floating], width: int = 0, height: int = 0, baseline_m: float = 0.0) -> PinholeCamera:
        """The camera of a calibration (or rectified projection) matrix ``K`` (at least ``(3, 3)``:
        a ``(3, 4)`` ``P`` works too), no distortion."""
        K = np.asarray(K, np.float64)
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), width=width, height=height, baseline_m=baseline_m)

    @property
    def intrinsics(self) -> NDArray[np.float64]:
        """``[fx, fy, cx, cy, k1, k2]`` ``(6,)`` float64 (the layout the kernels take)."""
        return np.array([self.fx, self.fy, self.cx, self.cy, self.k1, self.k2])

    @property
    def K(self) -> NDArray[np.float64]:
        """The 3x3 calibration matrix (distortion not included)."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def project(self, points_cam: NDArray[np.floating]) -> NDArray[np.floating]:
        """Pixels ``(N, 2)`` of points ``(N, 3)`` in the camera frame (see :func:`project`)."""
        return project(self.intrinsics, points_cam)[0]

    def in_image(self, points_cam: NDArray[np.floating], min_depth_m: float = 0.05) -> NDArray[np.bool_]:
        """``(N,)`` mask of points in front of the camera (``z > min_depth_m``) inside the image."""
        points_cam = np.asarray(points_cam, dtype=np.float64).reshape(-1, 3)
        in_front = points_cam[:, 2] > min_depth_m
        uv = self.project(np.where(in_front[:, None], points_cam, 1.0))
        inside = in_front & np.all(np.isfinite(uv), axis=1)
        if self.width > 0:
            inside &= (uv[:, 0] >= 0.0) & (uv[:, 0] <= self.width - 1)
        if self.height > 0:
            inside &= (uv[:, 1] >= 0.0) & (uv[:, 1] <= self.height - 1)
        return inside

    def unproject(
        self, uv: NDArray[np.floating], depth_m: NDArray[np.floating], iterations: int = 20
    ) -> NDArray[np.float64]:
        """Points ``(N, 3)`` in the camera frame at ``depth_m`` (z) along pixels ``uv`` ``(N, 2)``.

        Radial distortion is inverted by ``iterations`` fixed-point steps (exact when undistorted;
        converges for the mild distortion of real lenses).
        """
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        depth_m = np.asarray(depth_m, dtype=np.float64).reshape(-1)
        distorted = np.stack([(uv[:, 0] - self.cx) / self.fx, (uv[:, 1] - self.cy) / self.fy], axis=1)
        normalized = distorted
        if self.k1 != 0.0 or self.k2 != 0.0:
            for _ in range(iterations):
                r2 = np.sum(normalized**2, axis=1, keepdims=True)
                normalized = distorted / (1.0 + r2 * (self.k1 + self.k2 * r2))
        return np.concatenate([normalized * depth_m[:, None], depth_m[:, None]], axis=1)

    def right_coordinate(self, u: NDArray[np.floating], depth_m: NDArray[np.floating]) -> NDArray[np.float64]:
        """Right-image ``u`` (pixels) of a stereo / virtual-stereo RGB-D measurement at ``depth_m``."""
        return np.asarray(u, dtype=np.float64) - self.fx * self.baseline_m / np.asarray(depth_m, dtype=np.float64)


@numba.njit(cache=True, inline="always", error_model="numpy")
def project_point(
    fx: float, fy: float, cx: float, cy: float, k1: float, k2: float, x: float, y: float, z: float
) -> tuple[float, float, float, float, float, float, float, float]:
    """``(u, v, du/dx, du/dy, du/dz, dv/dx, dv/dy, dv/dz)`` of one camera-frame point (numba).

    Intermediate arithmetic is float64 (numba promotes float literals); callers round inputs and
    outputs to the precision they emulate. ``z = 0`` gives non-finite values, never an exception.
    """
    iz = 1.0 / z
    xn = x * iz
    yn = y * iz
    r2 = xn * xn + yn * yn
    d = 1.0 + r2 * (k1 + k2 * r2)
    dd_dr2_2 = 2.0 * (k1 + 2.0 * k2 * r2)  # 2 * d(d)/d(r2)
    # D = d(u, v) / d(xn, yn)
    a00 = fx * (d + dd_dr2_2 * xn * xn)
    a01 = fx * dd_dr2_2 * xn * yn
    a10 = fy * dd_dr2_2 * xn * yn
    a11 = fy * (d + dd_dr2_2 * yn * yn)
    # d(xn, yn) / d(x, y, z) = [[1/z, 0, -xn/z], [0, 1/z, -yn/z]]
    return (
        fx * d * xn + cx,
        fy * d * yn + cy,
        a00 * iz,
        a01 * iz,
        -(a00 * xn + a01 * yn) * iz,
        a10 * iz,
        a11 * iz,
        -(a10 * xn + a11 * yn) * iz,
    )


@numba.njit(cache=True, error_model="numpy")
def _project_kernel(intrinsics: np.ndarray, points_cam: np.ndarray, uv: np.ndarray, jac: np.ndarray) -> None:
    per_point = intrinsics.shape[0] > 1
    want_jac = jac.shape[0] > 0
    for i in range(points_cam.shape[0]):
        c = i if per_point else 0
        u, v, ux, uy, uz, vx, vy, vz = project_point(
            intrinsics[c, 0], intrinsics[c, 1], intrinsics[c, 2], intrinsics[c, 3],
            intrinsics[c, 4], intrinsics[c, 5], points_cam[i, 0], points_cam[i, 1], points_cam[i, 2],
        )
        uv[i, 0] = u
        uv[i, 1] = v
        if want_jac:
            jac[i, 0, 0] = ux
            jac[i, 0, 1] = uy
            jac[i, 0, 2] = uz
            jac[i, 1, 0] = vx
            jac[i, 1, 1] = vy
            jac[i, 1, 2] = vz


def project(
    intrinsics: NDArray[np.floating],
    points_cam: NDArray[np.floating],
    with_jacobian: bool = False,
) -> tuple[NDArray[np.floating], NDArray[np.floating] | None]:
    """Pixels ``(N, 2)`` of camera-frame points ``(N, 3)`` and optionally ``d uv / d p`` ``(N, 2, 3)``.

    ``intrinsics`` is ``(6,)`` (one camera) or ``(N, 6)`` (one row per point), columns
    :data:`INTRINSICS_FIELDS`. Outputs are float32 when ``points_cam`` is float32, else float64.
    Points with ``z = 0`` give non-finite pixels.
    """
    points_cam = np.asarray(points_cam)
    dtype = np.float32 if points_cam.dtype == np.float32 else np.float64
    points_cam = np.ascontiguousarray(points_cam, dtype=dtype).reshape(-1, 3)
    intrinsics = np.ascontiguousarray(intrinsics, dtype=dtype).reshape(-1, 6)
    n = points_cam.shape[0]
    if intrinsics.shape[0] not in (1, n):
        raise ValueError(f"intrinsics has {intrinsics.shape[0]} rows for {n} points")
    uv = np.empty((n, 2), dtype=dtype)
    jac = np.empty((n if with_jacobian else 0, 2, 3), dtype=dtype)
    _project_kernel(intrinsics, points_cam, uv, jac)
    return uv, (jac if with_jacobian else None)
