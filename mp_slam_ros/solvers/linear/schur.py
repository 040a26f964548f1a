"""Schur-complement solver: the classical BA baseline (landmark marginalization, dense Cholesky).

For the scaled damped system ``(J_s^T J_s + lambda I) y = J_s^T b`` with columns split into
camera poses ``p`` and landmarks ``l`` (3x3 block-diagonal ``H_ll``), it forms the reduced camera
system ``S = H_pp - H_pl H_ll^-1 H_lp`` and ``g = g_p - H_pl H_ll^-1 g_l``, factors ``S`` with a
Cholesky (LAPACK; banded when the window's co-visibility makes ``S`` banded, dense otherwise),
and back-substitutes the landmarks. ``S`` is accumulated per landmark
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
        self._factorization = _ReducedCholesky(structure)

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
        W = np.zeros((s.obs_cam.size, 3, 6))  # W_o^T = J_point^T J_pose of each observation
        _reduced_camera_system(
            J_pose, J_point, system.rhs, damping, s.cam_column, s.obs_cam, s.obs_stereo_row,
            s.point_obs_ptr, reduced, g_pose, H_ll_inv, g_point, W,
        )
        try:
            y_pose, relative = self._factorization.solve(reduced, g_pose)
        except (np.linalg.LinAlgError, ValueError):
            return LinearSolveResult(np.zeros(s.num_columns), LinearStatus.BREAKDOWN, 1, float("inf"))
        if not np.all(np.isfinite(y_pose)):
            return LinearSolveResult(np.zeros(s.num_columns), LinearStatus.NON_FINITE, 1, float("inf"))
        y_point = np.empty((s.num_points, 3))
        _back_substitute(y_pose, H_ll_inv, g_point, W, s.cam_column, s.obs_cam, s.point_obs_ptr, y_point)
        return LinearSolveResult(np.concatenate([y_pose, y_point.ravel()]), LinearStatus.CONVERGED, 1, relative)


class _ReducedCholesky:
    """Cholesky solve of the reduced camera system ``S y = g`` from the upper triangle of ``S``.

    In a sliding window a landmark links only keyframes a few tens apart, so ``S`` is banded:
    then LAPACK's banded Cholesky (``dpbtrf``, ``n kd^2`` flops) replaces the dense one
    (``dpotrf``, ``n^3 / 3``); the bandwidth ``kd`` is read from the structure once.
    """

    def __init__(self, structure: BAStructure) -> None:
        n = structure.num_pose_columns
        columns = structure.cam_column[structure.obs_cam]
        starts = structure.point_obs_ptr[:-1][np.diff(structure.point_obs_ptr) > 0]
        free = columns >= 0
        highest = np.maximum.reduceat(np.where(free, columns, -1), starts) if starts.size else np.empty(0)
        lowest = np.minimum.reduceat(np.where(free, columns, n), starts) if starts.size else np.empty(0)
        spans = (highest - lowest)[highest >= 0]
        self.bandwidth = int(spans.max(initial=0)) + 5  # within a 6x6 block too
        self.banded = self.bandwidth + 1 <= n // 2
        if self.banded:
            offset, column = np.meshgrid(np.arange(self.bandwidth + 1), np.arange(n), indexing="ij")
            row = column - (self.bandwidth - offset)  # ab[kd + i - j, j] = S[i, j]
            valid = row >= 0
            self._band_index = (offset * n + column)[valid]
            self._dense_index = (row * n + column)[valid]

    def solve(self, S_upper: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, float]:
        """``(y, ||S y - g|| / ||g||)``; raises ``LinAlgError`` if ``S`` is not positive definite."""
        if self.banded:
            band = np.zeros((self.bandwidth + 1, S_upper.shape[0]))
            band.flat[self._band_index] = S_upper.ravel().take(self._dense_index)
            factor = scipy.linalg.cholesky_banded(band, lower=False, overwrite_ab=True, check_finite=False)
            y = scipy.linalg.cho_solve_banded((factor, False), g, check_finite=False)
            # S y from the upper triangle: (U + U^T - diag) y
            S_y = S_upper @ y + S_upper.T @ y - np.diagonal(S_upper) * y
        else:
            # The lower triangle of S_upper is zero, so the factor is exactly U with S = U^T U.
            U, _ = scipy.linalg.cho_factor(S_upper, lower=False, overwrite_a=True, check_finite=False)
            y = scipy.linalg.cho_solve((U, False), g, check_finite=False)
            S_y = U.T @ (U @ y)
        g_norm = float(np.linalg.norm(g))
        return y, (float(np.linalg.norm(S_y - g)) / g_norm if g_norm > 0.0 else 0.0)


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


@numba.njit(cache=True, error_model="numpy", fastmath={"contract", "reassoc"})
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
                            W[o, j, i] += J_pose[row, i] * J_point[row, j]
        H_inv = H_ll_inv[point]
        _inverse_3x3(H, H_inv)
        g_point[point] = g
        for o in range(point_obs_ptr[point], point_obs_ptr[point + 1]):
            ci = cam_column[obs_cam[o]]
            if ci < 0:
                continue
            for i in range(6):
                for j in range(3):
                    V[i, j] = W[o, 0, i] * H_inv[0, j] + W[o, 1, i] * H_inv[1, j] + W[o, 2, i] * H_inv[2, j]
            for i in range(6):
                g_pose[ci + i] -= V[i, 0] * g[0] + V[i, 1] * g[1] + V[i, 2] * g[2]
            # Observations are sorted by camera within a landmark and camera columns increase
            # with the camera index, so cj >= ci: block (ci, cj) lies in the upper triangle.
            for o2 in range(o, point_obs_ptr[point + 1]):
                cj = cam_column[obs_cam[o2]]
                if cj > ci:
                    for i in range(6):
                        v0, v1, v2 = V[i, 0], V[i, 1], V[i, 2]
                        for j in range(6):
                            S[ci + i, cj + j] -= v0 * W[o2, 0, j] + v1 * W[o2, 1, j] + v2 * W[o2, 2, j]
                elif cj == ci:  # the diagonal block, or one camera observing a landmark twice
                    for i in range(6):
                        for j in range(i, 6):
                            value = V[i, 0] * W[o2, 0, j] + V[i, 1] * W[o2, 1, j] + V[i, 2] * W[o2, 2, j]
                            if o2 != o:  # plus the (o2, o) term
                                value += V[j, 0] * W[o2, 0, i] + V[j, 1] * W[o2, 1, i] + V[j, 2] * W[o2, 2, i]
                            S[ci + i, cj + j] -= value


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
                    rhs[j] -= W[o, j, i] * y_pose[c + i]
        for i in range(3):
            y_point[point, i] = H_ll_inv[point, i, 0] * rhs[0] + H_ll_inv[point, i, 1] * rhs[1] + H_ll_inv[point, i, 2] * rhs[2]
