"""Schur-complement solver: the classical BA baseline (landmark marginalization, dense Cholesky).

For the scaled damped system ``(J_s^T J_s + lambda I) y = J_s^T b`` with columns split into
camera poses ``p`` and landmarks ``l`` (3x3 block-diagonal ``H_ll``), it forms the reduced camera
system ``S = H_pp - H_pl H_ll^-1 H_lp`` and ``g = g_p - H_pl H_ll^-1 g_l`` in band storage (the
window's co-visibility makes ``S`` banded), factors it with LAPACK's banded Cholesky, and
back-substitutes the landmarks. ``S`` is accumulated per landmark
over pairs of its observations (numba), straight from the CSR values of the BA Jacobian layout, so
``J_s^T J_s`` is never formed as a sparse product.

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
        reduced = self._factorization.new_band()
        g_pose = np.empty(s.num_pose_columns)
        H_ll_inv = np.empty((s.num_points, 3, 3))
        g_point = np.empty((s.num_points, 3))
        W = np.empty((s.obs_cam.size, 3, 6))  # W_o^T = J_point^T J_pose of each observation
        _reduced_camera_system(
            J.indptr, data, system.rhs, damping, s.cam_column, s.obs_cam, s.obs_stereo_row,
            s.point_obs_ptr, reduced, g_pose, H_ll_inv, g_point, W, reduced.shape[0],
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
    """Cholesky solve of the reduced camera system ``S y = g``, ``S`` in LAPACK upper band storage.

    In a sliding window a landmark links only keyframes a few tens apart, so ``S`` is banded:
    its bandwidth ``kd`` is read from the structure once, :func:`_reduced_camera_system` writes
    ``S[i, j]`` (``i <= j``) straight to ``band[kd + i - j, j]`` (column-major, as LAPACK wants
    it) and LAPACK's banded Cholesky (``dpbtrf``, ``n kd^2`` flops) factors it. A window whose
    landmarks span it all just has ``kd = n - 1`` (``n^3 / 3`` flops, like the dense one).
    """

    def __init__(self, structure: BAStructure) -> None:
        self.size = structure.num_pose_columns
        self.bandwidth = reduced_bandwidth(structure)

    def new_band(self) -> np.ndarray:
        """Uninitialized band storage ``(kd + 1, n)``, column-major."""
        return np.empty((self.bandwidth + 1, self.size), order="F")

    def solve(self, band: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, float]:
        """``(y, ||S y - g|| / ||g||)``; raises ``LinAlgError`` if ``S`` is not positive definite.
        With every camera fixed (a structure-only adjustment) ``S`` is empty and so is ``y``."""
        if self.size == 0:
            return np.zeros(0), 0.0
        factor, info = _dpbtrf(band, lower=0, overwrite_ab=0)
        if info != 0:
            raise np.linalg.LinAlgError(f"reduced camera system: dpbtrf info={info}")
        y, info = _dpbtrs(factor, g, lower=0)
        if info != 0:
            raise np.linalg.LinAlgError(f"reduced camera system: dpbtrs info={info}")
        S_y = _dsbmv(self.bandwidth, 1.0, band, y, lower=0)
        g_norm = float(np.linalg.norm(g))
        return y, (float(np.linalg.norm(S_y - g)) / g_norm if g_norm > 0.0 else 0.0)


_dpbtrf, _dpbtrs = scipy.linalg.lapack.dpbtrf, scipy.linalg.lapack.dpbtrs
_dsbmv = scipy.linalg.blas.dsbmv


def reduced_bandwidth(structure: BAStructure) -> int:
    """The bandwidth ``kd`` of the reduced camera system: the widest camera-column span of a
    landmark's observers, plus 5 (within a 6x6 block too), at most ``n - 1``."""
    n = structure.num_pose_columns
    columns = structure.cam_column[structure.obs_cam]
    starts = structure.point_obs_ptr[:-1][np.diff(structure.point_obs_ptr) > 0]
    free = columns >= 0
    highest = np.maximum.reduceat(np.where(free, columns, -1), starts) if starts.size else np.empty(0)
    lowest = np.minimum.reduceat(np.where(free, columns, n), starts) if starts.size else np.empty(0)
    spans = (highest - lowest)[highest >= 0]
    return max(min(int(spans.max(initial=0)) + 5, n - 1), 0)


#: Band storage of a 6x6 diagonal block of ``S``: ``band[5 + i - j, c + j] = S[c + i, c + j]``.
_BAND_ROW = 5 + np.minimum.outer(np.arange(6), np.arange(6)) - np.maximum.outer(np.arange(6), np.arange(6))
_BAND_COLUMN = np.maximum.outer(np.arange(6), np.arange(6))


def diagonal_blocks(band: np.ndarray) -> np.ndarray:
    """The 6x6 diagonal blocks ``(C, 6, 6)`` of ``S`` from the upper band storage of
    :func:`_reduced_camera_system` with ``span = 0`` (``kd = 5``)."""
    starts = np.arange(0, band.shape[1], 6)
    return band[_BAND_ROW[None], starts[:, None, None] + _BAND_COLUMN[None]]


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract", "reassoc"})
def _reduced_camera_system(
    indptr: np.ndarray, data: np.ndarray, b: np.ndarray, damping: float,
    cam_column: np.ndarray, obs_cam: np.ndarray, obs_stereo_row: np.ndarray, point_obs_ptr: np.ndarray,
    band: np.ndarray, g_pose: np.ndarray, H_ll_inv: np.ndarray, g_point: np.ndarray, W: np.ndarray,
    span: int,
) -> None:
    """Fill ``S`` in upper band storage (``band[kd + i - j, j] = S[i, j]``, column-major),
    ``g_pose`` and the per-landmark/observation blocks, reading the Jacobian from the CSR values
    of the BA layout (:mod:`mp_slam_ros.solvers.ba_kernels`: each row's 6 pose values, if its
    camera is free, then its 3 landmark values, from ``indptr[row]``).

    ``span`` (columns) limits the camera-camera blocks: a landmark's observers (sorted by
    camera) are split into runs whose first and last camera columns lie at most ``span`` apart,
    a new run starting at the first camera beyond; only blocks within a run are added. Each
    landmark then adds the principal submatrices of its (positive semidefinite) contribution
    to ``S`` on its runs, so the result stays positive semidefinite, and ``kd = span + 5``
    suffices. ``span >= kd``: every block (the exact ``S``, when ``kd`` covers every landmark's
    camera span); ``0``: the 6x6 diagonal blocks only (the Schur-Jacobi preconditioner); between:
    the band preconditioner of :mod:`.iterative_schur`."""
    kd = band.shape[0] - 1
    run = np.empty(obs_cam.shape[0], dtype=np.int64)  # run of each observation within its landmark
    band[:] = 0.0
    g_pose[:] = 0.0
    for col in range(band.shape[1]):
        band[kd, col] = damping
    V = np.empty((6, 3))
    # One observation's rows (2, or 3 with a stereo/depth row; a missing row is zeros):
    # A its pose values, B its landmark values, r its right-hand side. Fixed-size blocks
    # instead of a loop over the present rows: 12-20% less time in this kernel.
    A = np.zeros((3, 6))
    B = np.zeros((3, 3))
    r = np.zeros(3)
    for point in range(point_obs_ptr.shape[0] - 1):
        H = np.zeros((3, 3))
        g = np.zeros(3)
        for i in range(3):
            H[i, i] = damping
        for o in range(point_obs_ptr[point], point_obs_ptr[point + 1]):
            c = cam_column[obs_cam[o]]
            for k in range(3):
                row = 2 * o + k if k < 2 else obs_stereo_row[o]
                if row < 0:
                    A[k, :] = 0.0
                    B[k, :] = 0.0
                    r[k] = 0.0
                    continue
                start = indptr[row]  # pose values (free camera), then the landmark's
                if c >= 0:
                    for j in range(6):
                        A[k, j] = data[start + j]
                    start += 6
                for j in range(3):
                    B[k, j] = data[start + j]
                r[k] = b[row]
            for i in range(3):
                g[i] += B[0, i] * r[0] + B[1, i] * r[1] + B[2, i] * r[2]
                for j in range(3):
                    H[i, j] += B[0, i] * B[0, j] + B[1, i] * B[1, j] + B[2, i] * B[2, j]
            if c < 0:
                W[o] = 0.0
                continue
            for i in range(6):
                g_pose[c + i] += A[0, i] * r[0] + A[1, i] * r[1] + A[2, i] * r[2]
            for j in range(6):
                for i in range(j + 1):
                    band[kd + i - j, c + j] += A[0, i] * A[0, j] + A[1, i] * A[1, j] + A[2, i] * A[2, j]
            for j in range(3):
                for i in range(6):
                    W[o, j, i] = B[0, j] * A[0, i] + B[1, j] * A[1, i] + B[2, j] * A[2, i]
        H_inv = H_ll_inv[point]
        _inverse_3x3(H, H_inv)
        g_point[point] = g
        first, current = -1, -1
        for o in range(point_obs_ptr[point], point_obs_ptr[point + 1]):
            c = cam_column[obs_cam[o]]
            if c >= 0 and (first < 0 or c - first > span):
                first, current = c, current + 1
            run[o] = current
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
            # with the camera index, so cj >= ci: block (ci, cj) lies in the upper triangle
            # (and in the band: one run spans at most ``span`` columns).
            for o2 in range(o, point_obs_ptr[point + 1]):
                cj = cam_column[obs_cam[o2]]
                if cj > ci and run[o2] == run[o]:
                    offset = kd + ci - cj
                    for j in range(6):
                        w0, w1, w2 = W[o2, 0, j], W[o2, 1, j], W[o2, 2, j]
                        for i in range(6):  # contiguous in the column-major band
                            band[offset + i - j, cj + j] -= V[i, 0] * w0 + V[i, 1] * w1 + V[i, 2] * w2
                elif cj == ci:  # the diagonal block, or one camera observing a landmark twice
                    for i in range(6):
                        for j in range(i, 6):
                            value = V[i, 0] * W[o2, 0, j] + V[i, 1] * W[o2, 1, j] + V[i, 2] * W[o2, 2, j]
                            if o2 != o:  # plus the (o2, o) term
                                value += V[j, 0] * W[o2, 0, i] + V[j, 1] * W[o2, 1, i] + V[j, 2] * W[o2, 2, i]
                            band[kd + i - j, cj + j] -= value


@numba.njit(cache=True, nogil=True, inline="always")
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


@numba.njit(cache=True, nogil=True)
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
