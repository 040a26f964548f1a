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
from mp_slam_ros.solvers.robust import loss_terms


@numba.njit(cache=True, nogil=True, inline="always")
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


@numba.njit(cache=True, nogil=True, inline="always")
def _observation(
    R: np.ndarray, t: np.ndarray, k: np.ndarray, X: np.ndarray, fx_baseline: float, uv: np.ndarray,
    u_right: float, stereo: bool, w: float,
) -> tuple[float, float, float, float, float, float, float, float, float, float, float, float, float]:
    """One observation of world point ``X`` by camera ``(R, t)`` (camera-from-world) with
    intrinsics ``k``: weighted residuals ``(r_u, r_v, r_right)`` (``r_right = 0`` unless
    ``stereo``), the camera-frame point ``p_c`` and the unweighted derivatives ``d(u, v) / d p_c``
    with ``d u_right / d z`` (``uz_right``): ``r0, r1, r2, px, py, pz, ux, uy, uz, uz_right, vx, vy, vz``."""
    px = R[0, 0] * X[0] + R[0, 1] * X[1] + R[0, 2] * X[2] + t[0]
    py = R[1, 0] * X[0] + R[1, 1] * X[1] + R[1, 2] * X[2] + t[1]
    pz = R[2, 0] * X[0] + R[2, 1] * X[1] + R[2, 2] * X[2] + t[2]
    u, v, ux, uy, uz, vx, vy, vz = project_point(k[0], k[1], k[2], k[3], k[4], k[5], px, py, pz)
    r2, uz_right = 0.0, uz
    if stereo:
        disparity = fx_baseline / pz
        r2 = w * (u - disparity - u_right)
        uz_right = uz + disparity / pz  # d(-fx b / z) / dz = fx b / z^2
    return w * (u - uv[0]), w * (v - uv[1]), r2, px, py, pz, ux, uy, uz, uz_right, vx, vy, vz


@numba.njit(cache=True, nogil=True, error_model="numpy")
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
        R = R_cw[c]
        stereo_row = obs_stereo_row[o]
        w = obs_scale[o]
        r0, r1, r2, px, py, pz, ux, uy, uz, uz_right, vx, vy, vz = _observation(
            R, t_cw[c], intrinsics[c], points_world[obs_point[o]], fx_baseline[c], obs_uv[o],
            obs_u_right[o], stereo_row >= 0, w,
        )
        residual[2 * o] = r0
        residual[2 * o + 1] = r1
        if stereo_row >= 0:
            residual[stereo_row] = r2
        if want_jacobian:
            free = cam_free[c]
            _write_row(data, row_data_start[2 * o], free, R, w * ux, w * uy, w * uz, px, py, pz)
            _write_row(data, row_data_start[2 * o + 1], free, R, w * vx, w * vy, w * vz, px, py, pz)
            if stereo_row >= 0:
                _write_row(data, row_data_start[stereo_row], free, R, w * ux, w * uy, w * uz_right, px, py, pz)


@numba.njit(cache=True, nogil=True)
def squared_norms(residual: np.ndarray, obs_stereo_row: np.ndarray, out: np.ndarray) -> None:
    """``out[o]`` = squared norm (float64) of observation ``o``'s residual rows (layout above)."""
    for o in range(out.shape[0]):
        u, v = np.float64(residual[2 * o]), np.float64(residual[2 * o + 1])
        total = u * u + v * v
        if obs_stereo_row[o] >= 0:
            right = np.float64(residual[obs_stereo_row[o]])
            total += right * right
        out[o] = total


@numba.njit(cache=True, nogil=True)
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


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _landmark_terms(
    X: np.ndarray, begin: int, end: int, R_cw: np.ndarray, t_cw: np.ndarray, intrinsics: np.ndarray,
    fx_baseline: np.ndarray, obs_cam: np.ndarray, obs_uv: np.ndarray, obs_u_right: np.ndarray,
    obs_weight: np.ndarray, obs_stereo_row: np.ndarray, loss_code: int, loss_scale: float,
    gradient: np.ndarray, hessian: np.ndarray,
) -> float:
    """Robust cost ``sum rho(||r_o||^2)`` of one landmark's observations ``begin:end`` at ``X``
    (cameras fixed); if ``gradient`` is not empty, also its gradient and the lower triangle of a
    positive semi-definite Newton Hessian (the loss's ``rho''`` term included, floored at zero
    curvature)."""
    want = gradient.shape[0] > 0
    if want:
        gradient[:] = 0.0
        hessian[:] = 0.0
    cost = 0.0
    for o in range(begin, end):
        c = obs_cam[o]
        R = R_cw[c]
        stereo = obs_stereo_row[o] >= 0
        w = obs_weight[o]
        r0, r1, r2, _, _, _, ux, uy, uz, uz_right, vx, vy, vz = _observation(
            R, t_cw[c], intrinsics[c], X, fx_baseline[c], obs_uv[o], obs_u_right[o], stereo, w
        )
        s = r0 * r0 + r1 * r1 + r2 * r2
        rho, rho1, rho2 = loss_terms(loss_code, loss_scale, s)
        cost += rho
        if not want:
            continue
        # J^T r with J = d r / d X = (d r / d p_c) R_cw, and the rho'' term 2 rho'' (J^T r)(J^T r)^T
        # floored so that the curvature along the residual, rho' + 2 s rho'', stays >= 0 (Cauchy's
        # outliers would make it negative)
        curvature = max(2.0 * rho2, -rho1 / s) if s > 0.0 else 0.0
        for i in range(3):
            a0 = w * (ux * R[0, i] + uy * R[1, i] + uz * R[2, i])
            a1 = w * (vx * R[0, i] + vy * R[1, i] + vz * R[2, i])
            a2 = w * (ux * R[0, i] + uy * R[1, i] + uz_right * R[2, i]) if stereo else 0.0
            jr_i = a0 * r0 + a1 * r1 + a2 * r2
            gradient[i] += rho1 * jr_i
            for j in range(i + 1):
                b0 = w * (ux * R[0, j] + uy * R[1, j] + uz * R[2, j])
                b1 = w * (vx * R[0, j] + vy * R[1, j] + vz * R[2, j])
                b2 = w * (ux * R[0, j] + uy * R[1, j] + uz_right * R[2, j]) if stereo else 0.0
                jr_j = b0 * r0 + b1 * r1 + b2 * r2
                hessian[i, j] += rho1 * (a0 * b0 + a1 * b1 + a2 * b2) + curvature * jr_i * jr_j
    return cost


@numba.njit(cache=True, nogil=True, inline="always")
def _solve_spd_3x3(A: np.ndarray, b: np.ndarray, x: np.ndarray) -> bool:
    """``x = A^-1 b`` by Cholesky for a symmetric 3x3 ``A``; False if ``A`` is not positive definite."""
    l00 = A[0, 0]
    if not l00 > 0.0:
        return False
    l00 = np.sqrt(l00)
    l10 = A[1, 0] / l00
    l20 = A[2, 0] / l00
    d1 = A[1, 1] - l10 * l10
    if not d1 > 0.0:
        return False
    l11 = np.sqrt(d1)
    l21 = (A[2, 1] - l20 * l10) / l11
    d2 = A[2, 2] - l20 * l20 - l21 * l21
    if not d2 > 0.0:
        return False
    l22 = np.sqrt(d2)
    y0 = b[0] / l00
    y1 = (b[1] - l10 * y0) / l11
    y2 = (b[2] - l20 * y0 - l21 * y1) / l22
    x[2] = y2 / l22
    x[1] = (y1 - l21 * x[2]) / l11
    x[0] = (y0 - l10 * x[1] - l20 * x[2]) / l00
    return True


@numba.njit(cache=True, nogil=True, error_model="numpy")
def refine_landmarks(
    points_world: np.ndarray,  # (P, 3) in/out
    R_cw: np.ndarray, t_cw: np.ndarray, intrinsics: np.ndarray, fx_baseline: np.ndarray,
    obs_cam: np.ndarray, obs_uv: np.ndarray, obs_u_right: np.ndarray, obs_weight: np.ndarray,
    obs_stereo_row: np.ndarray, point_obs_ptr: np.ndarray, loss_code: int, loss_scale: float,
    selected: np.ndarray,  # (N,) bool: refine the landmarks of these observations
    max_iterations: int, relative_tolerance: float,
) -> int:
    """Embedded point iterations: Newton steps (with backtracking) on every landmark with a
    ``selected`` observation alone, the cameras held fixed, each only ever lowering that
    landmark's robust cost, until a step gains less than ``relative_tolerance`` of it; returns
    the number of steps taken. Observations are sorted by landmark (``point_obs_ptr``)."""
    gradient = np.empty(3)
    hessian = np.empty((3, 3))
    no_gradient = np.empty(0)
    no_hessian = np.empty((0, 0))
    step = np.empty(3)
    trial = np.empty(3)
    steps = 0
    for point in range(points_world.shape[0]):
        begin, end = point_obs_ptr[point], point_obs_ptr[point + 1]
        if not np.any(selected[begin:end]):
            continue
        X = points_world[point]
        cost = _landmark_terms(X, begin, end, R_cw, t_cw, intrinsics, fx_baseline, obs_cam, obs_uv,
                               obs_u_right, obs_weight, obs_stereo_row, loss_code, loss_scale, gradient, hessian)
        for iteration in range(max_iterations):
            if not _solve_spd_3x3(hessian, gradient, step):
                break
            predicted = 0.5 * (step[0] * gradient[0] + step[1] * gradient[1] + step[2] * gradient[2])
            if not predicted > relative_tolerance * cost:
                break  # converged
            alpha = 1.0
            new_cost = cost
            for _ in range(10):
                for i in range(3):
                    trial[i] = X[i] - alpha * step[i]
                new_cost = _landmark_terms(trial, begin, end, R_cw, t_cw, intrinsics, fx_baseline, obs_cam,
                                           obs_uv, obs_u_right, obs_weight, obs_stereo_row, loss_code,
                                           loss_scale, no_gradient, no_hessian)
                if new_cost < cost:
                    break
                alpha *= 0.5
            if not new_cost < cost:
                break
            X[:] = trial
            steps += 1
            if iteration + 1 == max_iterations or cost - new_cost <= relative_tolerance * cost:
                break
            cost = _landmark_terms(X, begin, end, R_cw, t_cw, intrinsics, fx_baseline, obs_cam, obs_uv,
                                   obs_u_right, obs_weight, obs_stereo_row, loss_code, loss_scale, gradient, hessian)
    return steps
