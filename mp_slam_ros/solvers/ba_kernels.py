"""Compiled (numba) residual and Jacobian kernel of bundle adjustment.

Layout (built once per problem by :class:`mp_slam_ros.solvers.ba.BundleAdjustment`):

* observation ``o`` owns residual rows ``2 o`` (u) and ``2 o + 1`` (v); an observation with a
  right-image coordinate also owns row ``obs_stereo_row[o]`` (after all image rows);
* every row stores its Jacobian entries contiguously in the CSR ``data`` array from
  ``row_data_start[row]``: 6 pose entries ``[rho, phi]`` (only when the camera is free), then 3
  point entries ``[X, Y, Z]``; pose columns precede point columns, so the CSR indices are sorted.

Poses are ``T_world_cam`` perturbed on the right, ``T <- T exp(delta)``; with ``p_c = R_cw X +
t_cw`` this gives ``d p_c / d rho = -I``, ``d p_c / d phi = [p_c]x`` and ``d p_c / d X = R_cw``.
"""

from __future__ import annotations

import numba
import numpy as np

from mp_slam_ros.geometry.camera import project_point


@numba.njit(cache=True, inline="always")
def _write_row(
    data: np.ndarray, start: int, cam_free: bool, R: np.ndarray,
    ax: float, ay: float, az: float, px: float, py: float, pz: float,
) -> None:
    """Jacobian entries of one residual row with ``a = d r / d p_c`` (already weighted)."""
    k = start
    if cam_free:
        data[k] = -ax
        data[k + 1] = -ay
        data[k + 2] = -az
        data[k + 3] = ay * pz - az * py
        data[k + 4] = az * px - ax * pz
        data[k + 5] = ax * py - ay * px
        k += 6
    data[k] = ax * R[0, 0] + ay * R[1, 0] + az * R[2, 0]
    data[k + 1] = ax * R[0, 1] + ay * R[1, 1] + az * R[2, 1]
    data[k + 2] = ax * R[0, 2] + ay * R[1, 2] + az * R[2, 2]


@numba.njit(cache=True, error_model="numpy")
def evaluate_observations(
    R_cw: np.ndarray,  # (C, 3, 3)
    t_cw: np.ndarray,  # (C, 3)
    points_world: np.ndarray,  # (P, 3)
    intrinsics: np.ndarray,  # (C, 6)
    fx_baseline: np.ndarray,  # (C,) fx * stereo baseline, pixels * m
    obs_cam: np.ndarray,  # (N,)
    obs_point: np.ndarray,  # (N,)
    obs_uv: np.ndarray,  # (N, 2) pixels
    obs_u_right: np.ndarray,  # (N,) pixels (unused where obs_stereo_row < 0)
    obs_scale: np.ndarray,  # (N,) residual multiplier: weight * sqrt(rho')
    obs_stereo_row: np.ndarray,  # (N,) row of the right-image residual or -1
    cam_free: np.ndarray,  # (C,) bool
    row_data_start: np.ndarray,  # (M,) first CSR data slot of each row
    residual: np.ndarray,  # (M,) out
    data: np.ndarray,  # (nnz,) out, or empty for residuals only
) -> None:
    """Weighted residuals ``scale * (predicted - measured)`` and, if ``data`` is not empty, the
    CSR Jacobian values of every observation (see the module docstring for the layout)."""
    want_jacobian = data.shape[0] > 0
    for o in range(obs_cam.shape[0]):
        c = obs_cam[o]
        X = points_world[obs_point[o]]
        R = R_cw[c]
        px = R[0, 0] * X[0] + R[0, 1] * X[1] + R[0, 2] * X[2] + t_cw[c, 0]
        py = R[1, 0] * X[0] + R[1, 1] * X[1] + R[1, 2] * X[2] + t_cw[c, 1]
        pz = R[2, 0] * X[0] + R[2, 1] * X[1] + R[2, 2] * X[2] + t_cw[c, 2]
        k = intrinsics[c]
        u, v, ux, uy, uz, vx, vy, vz = project_point(k[0], k[1], k[2], k[3], k[4], k[5], px, py, pz)
        w = obs_scale[o]
        residual[2 * o] = w * (u - obs_uv[o, 0])
        residual[2 * o + 1] = w * (v - obs_uv[o, 1])
        stereo_row = obs_stereo_row[o]
        disparity_rate = 0.0
        if stereo_row >= 0:
            disparity = fx_baseline[c] / pz
            residual[stereo_row] = w * (u - disparity - obs_u_right[o])
            disparity_rate = disparity / pz  # d(-fx b / z) / dz = fx b / z^2
        if want_jacobian:
            free = cam_free[c]
            _write_row(data, row_data_start[2 * o], free, R, w * ux, w * uy, w * uz, px, py, pz)
            _write_row(data, row_data_start[2 * o + 1], free, R, w * vx, w * vy, w * vz, px, py, pz)
            if stereo_row >= 0:
                _write_row(
                    data, row_data_start[stereo_row], free, R,
                    w * ux, w * uy, w * (uz + disparity_rate), px, py, pz,
                )


@numba.njit(cache=True)
def fill_pattern(row_pose_col: np.ndarray, row_point_col: np.ndarray, indptr: np.ndarray, indices: np.ndarray) -> None:
    """CSR column indices of every row: 6 pose columns (if free, ``row_pose_col >= 0``), then 3."""
    for row in range(row_pose_col.shape[0]):
        k = indptr[row]
        if row_pose_col[row] >= 0:
            for i in range(6):
                indices[k + i] = row_pose_col[row] + i
            k += 6
        for i in range(3):
            indices[k + i] = row_point_col[row] + i
