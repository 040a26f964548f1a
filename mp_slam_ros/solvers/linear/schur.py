"""Schur-complement solver: the classical BA baseline (landmark marginalization, dense Cholesky).

For the scaled damped system ``(J_s^T J_s + lambda I) y = J_s^T b`` with columns split into
camera poses ``p`` and landmarks ``l`` (3x3 block-diagonal ``H_ll``), it forms the reduced camera
system ``S = H_pp - H_pl H_ll^-1 H_lp`` and ``g = g_p - H_pl H_ll^-1 g_l``, factors ``S`` with a
dense Cholesky (LAPACK), and back-substitutes the landmarks. ``S`` is accumulated per landmark
over pairs of its observations (numba), so ``J_s^T J_s`` is never formed as a sparse product.

Everything is float64 (the baseline), except that the Jacobian values are first rounded to the
policy's ``matvec`` storage dtype, so every precision mode sees the same Jacobian it would in
CGNR. Runs on the CPU whatever the backend. The reported relative residual is that of the
reduced camera system, ``||S y_p - g|| / ||g||`` (the landmark back-substitution is exact).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba
import numpy as np
import scipy.linalg

from mp_slam_ros.precision import Backend, PrecisionPolicy, round_to
from mp_slam_ros.solvers.linear.base import LinearSolveResult, LinearStatus, ScaledSystem
from mp_slam_ros.solvers.summary import LinearSolverOptions

if TYPE_CHECKING:  # ba.py builds this solver; import only for the annotation
    from mp_slam_ros.solvers.ba import BAStructure


class SchurSolver:
    """Direct solver for BA Jacobians of a :class:`~mp_slam_ros.solvers.ba.BAStructure`."""

    def __init__(self, structure: BAStructure, name: str = "schur") -> None:
        self.name = name
        self.structure = structure

    def prepare(self, system: ScaledSystem, policy: PrecisionPolicy, backend: Backend) -> None:
        """Nothing to precompute (the structure is known); present for the protocol."""

    def solve(
        self,
        system: ScaledSystem,
        damping: float,
        policy: PrecisionPolicy,
        options: LinearSolverOptions,
    ) -> LinearSolveResult:
        """Solve ``min ||J_s y - b||^2 + damping ||y||^2`` by landmark elimination."""
        s = self.structure
        J = system.jacobian_scaled
        data = round_to(J.data, policy.matvec).astype(np.float64, copy=False)
        num_rows = J.shape[0]
        J_pose = np.zeros((num_rows, 6))
        J_point = np.zeros((num_rows, 3))
        _split_blocks(J.indptr, J.indices, data, s.num_pose_columns, J_pose, J_point)
        n_pose = s.num_pose_columns
        reduced = np.zeros((n_pose, n_pose))
        g_pose = np.zeros(n_pose)
        H_ll_inv = np.empty((s.num_points, 3, 3))
        g_point = np.empty((s.num_points, 3))
        W = np.zeros((s.obs_cam.size, 6, 3))
        _reduced_camera_system(
            J_pose, J_point, system.rhs, damping, s.cam_column, s.obs_cam, s.obs_stereo_row,
            s.point_obs_ptr, reduced, g_pose, H_ll_inv, g_point, W,
        )
        try:
            # Only the upper triangle of ``reduced`` is filled (the lower one is zero), so the
            # factor is exactly the upper-triangular U with S = U^T U.
            U, _ = scipy.linalg.cho_factor(reduced, lower=False, overwrite_a=True, check_finite=False)
            y_pose = scipy.linalg.cho_solve((U, False), g_pose, check_finite=False)
        except (np.linalg.LinAlgError, ValueError):
            return LinearSolveResult(np.zeros(s.num_columns), LinearStatus.BREAKDOWN, 1, float("inf"))
        if not np.all(np.isfinite(y_pose)):
            return LinearSolveResult(np.zeros(s.num_columns), LinearStatus.NON_FINITE, 1, float("inf"))
        y_point = np.empty((s.num_points, 3))
        _back_substitute(y_pose, H_ll_inv, g_point, W, s.cam_column, s.obs_cam, s.point_obs_ptr, y_point)
        step = np.concatenate([y_pose, y_point.ravel()])
        g_norm = float(np.linalg.norm(g_pose))
        relative = float(np.linalg.norm(U.T @ (U @ y_pose) - g_pose)) / g_norm if g_norm > 0.0 else 0.0
        return LinearSolveResult(step, LinearStatus.CONVERGED, 1, relative)


@numba.njit(cache=True)
def _split_blocks(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, num_pose_columns: int,
    J_pose: np.ndarray, J_point: np.ndarray,
) -> None:
    """Scatter CSR values into per-row pose ``(M, 6)`` and landmark ``(M, 3)`` blocks."""
    for row in range(indptr.shape[0] - 1):
        for k in range(indptr[row], indptr[row + 1]):
            col = indices[k]
            if col < num_pose_columns:
                J_pose[row, col % 6] = data[k]
            else:
                J_point[row, (col - num_pose_columns) % 3] = data[k]


@numba.njit(cache=True, inline="always")
def _observation_rows(o: int, obs_stereo_row: np.ndarray) -> tuple[int, int, int]:
    """The 2 or 3 residual rows of observation ``o`` (third is -1 without a stereo row)."""
    return 2 * o, 2 * o + 1, obs_stereo_row[o]


@numba.njit(cache=True, error_model="numpy")
def _reduced_camera_system(
    J_pose: np.ndarray, J_point: np.ndarray, b: np.ndarray, damping: float,
    cam_column: np.ndarray, obs_cam: np.ndarray, obs_stereo_row: np.ndarray, point_obs_ptr: np.ndarray,
    S: np.ndarray, g_pose: np.ndarray, H_ll_inv: np.ndarray, g_point: np.ndarray, W: np.ndarray,
) -> None:
    """Fill the upper triangle of ``S``, ``g_pose`` and the per-landmark/observation blocks."""
    for col in range(S.shape[0]):
        S[col, col] = damping
    V = np.empty((6, 3))
    for point in range(point_obs_ptr.shape[0] - 1):
        H = np.zeros((3, 3))
        g = np.zeros(3)
        for i in range(3):
            H[i, i] = damping
        for o in range(point_obs_ptr[point], point_obs_ptr[point + 1]):
            c = cam_column[obs_cam[o]]
            r0, r1, r2 = _observation_rows(o, obs_stereo_row)
            for row in (r0, r1, r2):
                if row < 0:
                    continue
                for i in range(3):
                    g[i] += J_point[row, i] * b[row]
                    for j in range(3):
                        H[i, j] += J_point[row, i] * J_point[row, j]
                if c >= 0:
                    for i in range(6):
                        g_pose[c + i] += J_pose[row, i] * b[row]
                        for j in range(i, 6):
                            S[c + i, c + j] += J_pose[row, i] * J_pose[row, j]
                        for j in range(3):
                            W[o, i, j] += J_pose[row, i] * J_point[row, j]
        H_inv = H_ll_inv[point]
        _inverse_3x3(H, H_inv)
        g_point[point] = g
        for o in range(point_obs_ptr[point], point_obs_ptr[point + 1]):
            ci = cam_column[obs_cam[o]]
            if ci < 0:
                continue
            for i in range(6):
                for j in range(3):
                    V[i, j] = W[o, i, 0] * H_inv[0, j] + W[o, i, 1] * H_inv[1, j] + W[o, i, 2] * H_inv[2, j]
            for i in range(6):
                g_pose[ci + i] -= V[i, 0] * g[0] + V[i, 1] * g[1] + V[i, 2] * g[2]
            # Observations are sorted by camera within a landmark and camera columns increase
            # with the camera index, so cj >= ci: block (ci, cj) lies in the upper triangle.
            for o2 in range(o, point_obs_ptr[point + 1]):
                cj = cam_column[obs_cam[o2]]
                if cj < 0:
                    continue
                repeated = cj == ci and o2 != o  # one camera observing a landmark twice
                for i in range(6):
                    for j in range(6):
                        value = V[i, 0] * W[o2, j, 0] + V[i, 1] * W[o2, j, 1] + V[i, 2] * W[o2, j, 2]
                        if cj > ci or j >= i:
                            S[ci + i, cj + j] -= value
                        if repeated and i >= j:  # the (o2, o) term, transposed
                            S[ci + j, cj + i] -= value


@numba.njit(cache=True, inline="always")
def _inverse_3x3(A: np.ndarray, out: np.ndarray) -> None:
    """``out = A^-1`` for a 3x3 matrix by the adjugate (A is SPD here: damped, unit-scaled)."""
    c00 = A[1, 1] * A[2, 2] - A[1, 2] * A[2, 1]
    c01 = A[1, 2] * A[2, 0] - A[1, 0] * A[2, 2]
    c02 = A[1, 0] * A[2, 1] - A[1, 1] * A[2, 0]
    inv_det = 1.0 / (A[0, 0] * c00 + A[0, 1] * c01 + A[0, 2] * c02)
    out[0, 0] = c00 * inv_det
    out[1, 0] = c01 * inv_det
    out[2, 0] = c02 * inv_det
    out[0, 1] = (A[0, 2] * A[2, 1] - A[0, 1] * A[2, 2]) * inv_det
    out[1, 1] = (A[0, 0] * A[2, 2] - A[0, 2] * A[2, 0]) * inv_det
    out[2, 1] = (A[0, 1] * A[2, 0] - A[0, 0] * A[2, 1]) * inv_det
    out[0, 2] = (A[0, 1] * A[1, 2] - A[0, 2] * A[1, 1]) * inv_det
    out[1, 2] = (A[0, 2] * A[1, 0] - A[0, 0] * A[1, 2]) * inv_det
    out[2, 2] = (A[0, 0] * A[1, 1] - A[0, 1] * A[1, 0]) * inv_det


@numba.njit(cache=True)
def _back_substitute(
    y_pose: np.ndarray, H_ll_inv: np.ndarray, g_point: np.ndarray, W: np.ndarray,
    cam_column: np.ndarray, obs_cam: np.ndarray, point_obs_ptr: np.ndarray, y_point: np.ndarray,
) -> None:
    """``y_l = H_ll^-1 (g_l - sum_o W_o^T y_p[c_o])`` for every landmark."""
    rhs = np.empty(3)
    for point in range(point_obs_ptr.shape[0] - 1):
        rhs[:] = g_point[point]
        for o in range(point_obs_ptr[point], point_obs_ptr[point + 1]):
            c = cam_column[obs_cam[o]]
            if c < 0:
                continue
            for j in range(3):
                for i in range(6):
                    rhs[j] -= W[o, i, j] * y_pose[c + i]
        for i in range(3):
            y_point[point, i] = H_ll_inv[point, i, 0] * rhs[0] + H_ll_inv[point, i, 1] * rhs[1] + H_ll_inv[point, i, 2] * rhs[2]
