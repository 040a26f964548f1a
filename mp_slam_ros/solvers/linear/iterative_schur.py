"""Iterative Schur: PCG on the reduced camera system, its products taken through the Jacobian.

Ceres' ``ITERATIVE_SCHUR`` with the ``SCHUR_JACOBI`` preconditioner, in the precisions of the
recipe. For the scaled damped BA system with camera columns ``J_c`` and landmark columns ``J_p``
the landmarks are eliminated exactly, leaving the reduced camera system

    S y_c = g,   S = J_c^T P J_c + lambda I,   P = I - J_p (J_p^T J_p + lambda I)^-1 J_p^T,

``g = J_c^T P b``, and ``y_p = (J_p^T J_p + lambda I)^-1 J_p^T (b - J_c y_c)``. CG runs on ``S``
without forming it: ``S x = J_c^T (u - J_p H^-1 J_p^T u) + lambda x`` with ``u = J_c x`` is four
products in ``policy.matvec`` (float16 in ``mixed``), touching every camera value and every landmark
value of ``J`` twice: the product flops of one CGNR iteration (``J p`` and ``J^T q``). The 3x3
landmark blocks ``H^-1`` are applied in ``policy.vector``, and so are the CG vectors; the
preconditioner, the 6x6 diagonal blocks of ``S`` (inverted), in ``policy.preconditioner``.

Why not CGNR on ``J``: the landmarks' 3x3 blocks are solved exactly here, so CG only meets the
conditioning of ``S`` (preconditioned by its own diagonal blocks), not that of ``J^T J``, where
the camera-landmark coupling of a monocular window (depth against camera motion, and the 7
similarity directions of a window without fixed cameras) leaves CGNR's block-Jacobi many
clustered small eigenvalues (on 50-keyframe monocular windows it stopped 5-9% above the optimum).
Without fixed cameras ``S`` is singular up to the damping: ``lambda I`` keeps it positive definite,
and ``g`` has no component along the exact gauge directions (it is a gradient of a gauge-invariant
cost), so CG never has to resolve them.

The setup (the 3x3 landmark blocks, the diagonal blocks of ``S``, ``g``) and the landmark
back-substitution are float64 passes over the Jacobian values rounded to the ``matvec`` storage
dtype (the kernels of :class:`~mp_slam_ros.solvers.linear.schur.SchurSolver`), so every product
sees the same Jacobian. The reported relative residual is that of the reduced system.

With float16 products PCG's recurrences drift from the true residual on ill-conditioned reduced
systems, and its truncated-Newton test can stop on a model decrease that only the recurrences
see. A float16 solve that converged is therefore checked with one float64 product of the exact
Jacobian; beyond :data:`DRIFT_FACTOR` times the recurrence's residual it is solved again with
float32 products (the solve's ``higher_precision`` event; the LM policy stays as it is). On
bench_ba's window 25 of "2 fixed cameras" the unchecked steps led LM to a claim 0.23% above the
optimum, at another local minimum (``results/ba/window25/``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numba
import numpy as np
import scipy.sparse as sp

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.precision import Backend, PrecisionPolicy, array_module, round_to
from mp_slam_ros.solvers.linear.base import LinearSolver, LinearSolveResult, LinearStatus, ScaledSystem
from mp_slam_ros.solvers.linear.block_jacobi import BlockJacobiPreconditioner
from mp_slam_ros.solvers.linear.ichol import IncompleteCholesky, IncompleteCholeskyFactory
from mp_slam_ros.solvers.linear.operators import SparseOperator
from mp_slam_ros.solvers.linear.pcg import pcg
from mp_slam_ros.solvers.linear.schur import _back_substitute, _reduced_camera_system, diagonal_blocks, reduced_bandwidth
from mp_slam_ros.solvers.summary import LinearSolverOptions

if TYPE_CHECKING:  # ba.py builds this solver; import only for the annotation
    from mp_slam_ros.solvers.ba import BAStructure

POSE_DIM, POINT_DIM = 6, 3
#: A float16 solve that converged by its recurrences is solved again with float32 products (the
#: LM policy stays as it is) when its true relative residual, float64 products of the exact
#: Jacobian, exceeds the recurrence's by this factor. Float16 products lose the recurrence's
#: accuracy on ill-conditioned reduced systems: over 120 bench_ba windows the gap exceeded 1.5 in
#: 207 of 1,381 float16 solves (up to 13.9) and in 2 of 1,049 float32 ones. Window 25's was 1.55.
DRIFT_FACTOR = 1.5
#: IC(0) in the cameras' order for the band preconditioner (its breakdown shifts as in the PGO's)
_BAND_FACTOR = IncompleteCholeskyFactory(drop_tolerance=0.0, ordering="natural")


class IterativeSchurSolver:
    """PCG on the implicit reduced camera system of a :class:`~mp_slam_ros.solvers.ba.BAStructure`
    (see the module docstring); satisfies the :class:`LinearSolver` protocol."""

    def __init__(self, structure: BAStructure, name: str = "iterative_schur", band: int = 0) -> None:
        if band < 0:
            raise ConfigError("ba.preconditioner_band", band, "must be >= 0")
        self.name = name
        self.structure = structure
        self.band = band
        #: the band that holds all of ``S`` (a wider one would only store zeros)
        self._widest = reduced_bandwidth(structure) if band else 0
        self._backend = Backend.CPU
        self._split: _ColumnSplit | None = None

    def prepare(self, system: ScaledSystem, policy: PrecisionPolicy, backend: Backend) -> None:
        """Remember the backend; index the camera and landmark values of the Jacobian's rows."""
        self._backend = backend
        self._split = _ColumnSplit(system.jacobian_scaled, self.structure.num_pose_columns)

    def solve(
        self,
        system: ScaledSystem,
        damping: float,
        policy: PrecisionPolicy,
        options: LinearSolverOptions,
    ) -> LinearSolveResult:
        """Solve ``min ||J_s y - b||^2 + damping ||y||^2``: PCG on ``S``, then the landmarks; a
        float16 solve that drifted (:data:`DRIFT_FACTOR`) is solved again, setup included, on the
        first rung up the precision ladder without float16 products (a ``higher_precision`` event)."""
        s = self.structure
        J = system.jacobian_scaled
        if self._split is None:
            self.prepare(system, policy, self._backend)
        assert self._split is not None
        n_pose = s.num_pose_columns
        data = round_to(J.data, policy.matvec).astype(np.float64, copy=False)
        span = min(POSE_DIM * self.band, self._widest)  # columns: couplings of cameras up to ``band`` apart
        band = np.empty((span + POSE_DIM, n_pose), order="F")
        g_pose = np.empty(n_pose)
        H_ll_inv = np.empty((s.num_points, POINT_DIM, POINT_DIM))
        g_point = np.empty((s.num_points, POINT_DIM))
        W = np.empty((s.obs_cam.size, POINT_DIM, POSE_DIM))
        _reduced_camera_system(
            J.indptr, data, system.rhs, damping, s.cam_column, s.obs_cam, s.obs_stereo_row,
            s.point_obs_ptr, band, g_pose, H_ll_inv, g_point, W, span,
        )
        y_pose, status, iterations, relative = np.zeros(n_pose), LinearStatus.CONVERGED, 0, 0.0
        shifts = 0
        g_norm = float(np.linalg.norm(g_pose))
        if g_norm > 0.0:
            g_unit = g_pose / g_norm
            y_unit, status, iterations, relative, shifts = self._reduced_solve(
                J, band, H_ll_inv, g_unit, damping, policy, options
            )
            higher = _without_float16_products(policy)
            if status is LinearStatus.CONVERGED and higher is not None:
                true = self._true_residual(J, H_ll_inv, g_unit, damping, y_unit)
                if true > DRIFT_FACTOR * relative:
                    again = self.solve(system, damping, higher, options)
                    again.iterations += iterations
                    again.events.insert(0, ("higher_precision", (
                        f"float16 PCG drifted: true relative residual {true:.2g}, {relative:.2g} by its recurrence; "
                        f"solved again with {np.dtype(higher.matvec).name} products")))
                    return again
            y_pose = np.asarray(y_unit.get() if hasattr(y_unit, "get") else y_unit, dtype=np.float64) * g_norm
        if status.failed or not np.all(np.isfinite(y_pose)):
            status = LinearStatus.NON_FINITE if not status.failed else status
            return LinearSolveResult(np.zeros(s.num_columns), status, iterations, float("inf"), shifts)
        y_point = np.empty((s.num_points, POINT_DIM))
        _back_substitute(y_pose, H_ll_inv, g_point, W, s.cam_column, s.obs_cam, s.point_obs_ptr, y_point)
        return LinearSolveResult(np.concatenate([y_pose, y_point.ravel()]), status, iterations, relative, shifts)

    def _reduced_solve(
        self, J: sp.csr_matrix, band: np.ndarray, H_ll_inv: np.ndarray, g_unit: np.ndarray,
        damping: float, policy: PrecisionPolicy, options: LinearSolverOptions,
    ) -> tuple[np.ndarray, LinearStatus, int, float, int]:
        """PCG on ``S y = g_unit`` (``||g_unit|| = 1``, so no float16 vector can overflow)."""
        assert self._split is not None
        xp = array_module(self._backend)
        J_c, J_p = self._split.blocks(J)
        apply_S = self._schur_operator(J_c, J_p, H_ll_inv, damping, policy.matvec, policy.vector)
        preconditioner = self._preconditioner(band, policy)

        def precondition(v: np.ndarray) -> np.ndarray:
            return preconditioner.apply(v, policy.preconditioner)

        flexible = np.dtype(policy.preconditioner) == np.float16
        g = xp.asarray(g_unit.astype(policy.vector))
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite values are detected
            y, status, iterations, relative = pcg(apply_S, g, precondition, options, xp, flexible)
        return y, status, iterations, relative, preconditioner.shifts

    def _preconditioner(self, band: np.ndarray, policy: PrecisionPolicy) -> BlockJacobiPreconditioner | IncompleteCholesky:
        """The inverted 6x6 diagonal blocks of ``S`` (``band`` 0), else the incomplete Cholesky
        factor (natural order: the cameras' time order) of ``S`` restricted to the couplings
        within ``band`` cameras (upper band storage, see :func:`_reduced_camera_system`), factored
        in ``policy.preconditioner`` (float16 emulated: :mod:`.ichol`)."""
        if self.band == 0:
            starts = np.arange(0, band.shape[1] + 1, POSE_DIM)
            return BlockJacobiPreconditioner(diagonal_blocks(band), 0.0, starts, policy, self._backend)
        n = band.shape[1]
        symmetric = sp.csr_matrix(_symmetric_csr(band), shape=(n, n))
        preconditioner = IncompleteCholesky(symmetric, np.arange(n), _BAND_FACTOR, self._backend)
        preconditioner.factor(policy.preconditioner)
        return preconditioner

    def _true_residual(
        self, J: sp.csr_matrix, H_ll_inv: np.ndarray, g_unit: np.ndarray, damping: float, y: np.ndarray,
    ) -> float:
        """``||g_unit - S y||`` with float64 products of the exact Jacobian (``||g_unit|| = 1``)."""
        assert self._split is not None
        xp = array_module(self._backend)
        exact_S = self._schur_operator(*self._split.blocks(J), H_ll_inv, damping, np.float64, np.float64)
        return float(xp.linalg.norm(xp.asarray(g_unit) - exact_S(y.astype(np.float64))))

    def _schur_operator(
        self, J_c: sp.csr_matrix, J_p: sp.csr_matrix, H_ll_inv: np.ndarray, damping: float,
        matvec: np.dtype | type, vector: np.dtype | type,
    ) -> Callable[[np.ndarray], np.ndarray]:
        """``x -> S x`` (module docstring): products in ``matvec``, vectors in ``vector``."""
        xp = array_module(self._backend)
        vector = np.dtype(vector)
        cams = SparseOperator(J_c, matvec, self._backend, vector)
        points = SparseOperator(J_p, matvec, self._backend, vector)
        H_inv = xp.asarray(H_ll_inv.astype(vector))
        lam = vector.type(damping)

        def apply_S(x: np.ndarray) -> np.ndarray:
            u = cams.matvec(x)
            w = points.rmatvec(u).reshape(-1, POINT_DIM)
            z = xp.einsum("pij,pj->pi", H_inv, w).ravel()
            return cams.rmatvec(u - points.matvec(z)) + lam * x

        return apply_S


@numba.njit(cache=True, nogil=True)
def _symmetric_csr(band: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(data, indices, indptr)`` of the symmetric matrix whose upper band storage is ``band``
    (``band[kd + i - j, j] = S[i, j]``, ``i <= j``), its zero entries left out (sorted rows)."""
    kd, n = band.shape[0] - 1, band.shape[1]
    indptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):  # count, then fill the same entries
        count = 0
        for j in range(max(0, i - kd), min(n, i + kd + 1)):
            if (band[kd + j - i, i] if j < i else band[kd + i - j, j]) != 0.0:
                count += 1
        indptr[i + 1] = indptr[i] + count
    data = np.empty(indptr[n])
    indices = np.empty(indptr[n], dtype=np.int32)
    for i in range(n):
        at = indptr[i]
        for j in range(max(0, i - kd), min(n, i + kd + 1)):
            value = band[kd + j - i, i] if j < i else band[kd + i - j, j]
            if value != 0.0:
                data[at], indices[at] = value, j
                at += 1
    return data, indices, indptr


def _without_float16_products(policy: PrecisionPolicy) -> PrecisionPolicy | None:
    """The first policy up the escalation ladder whose products are not float16, for a policy
    whose products are (``fp16`` -> ``mixed`` keeps them: then ``fp32``); else ``None``."""
    if np.dtype(policy.matvec) != np.float16:
        return None
    higher = policy.escalated()
    while higher is not None and np.dtype(higher.matvec) == np.float16:
        higher = higher.escalated()
    return higher


class _ColumnSplit:
    """Slots of the camera and landmark values in the CSR values of a BA Jacobian.

    Each row holds 6 pose values (when its camera is free) then its landmark's 3 values
    (:mod:`mp_slam_ros.solvers.ba_kernels`); :meth:`blocks` gathers them into ``J_c`` ``(m, 6 C)``
    and ``J_p`` ``(m, 3 P)`` with patterns built once.
    """

    def __init__(self, J: sp.csr_matrix, num_pose_columns: int) -> None:
        starts = J.indptr[:-1]
        has_pose = np.diff(J.indptr) == POSE_DIM + POINT_DIM
        self._pose_slots = (starts[has_pose, None] + np.arange(POSE_DIM)).ravel()
        point_start = starts + np.where(has_pose, POSE_DIM, 0)
        self._point_slots = (point_start[:, None] + np.arange(POINT_DIM)).ravel()
        self._pose_indptr = np.concatenate([[0], np.cumsum(np.where(has_pose, POSE_DIM, 0))])
        self._point_indptr = POINT_DIM * np.arange(J.shape[0] + 1)
        self._pose_indices = J.indices[self._pose_slots]
        self._point_indices = J.indices[self._point_slots] - num_pose_columns
        self._shapes = ((J.shape[0], num_pose_columns), (J.shape[0], J.shape[1] - num_pose_columns))

    def blocks(self, J: sp.csr_matrix) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """``(J_c, J_p)`` with the values of ``J`` (same pattern as at construction)."""
        J_c = sp.csr_matrix((J.data[self._pose_slots], self._pose_indices, self._pose_indptr), shape=self._shapes[0])
        J_p = sp.csr_matrix((J.data[self._point_slots], self._point_indices, self._point_indptr), shape=self._shapes[1])
        return J_c, J_p


class CheckedStep:
    """A :class:`LinearSolver` wrapper that checks each step of a low-precision iterative solve.

    CG's stopping tests read the decrease of the model from its recurrences, in the precisions of
    the policy. With float16 products on an ill-conditioned system (a monocular window's scale
    drift: reduced-camera eigenvalues near the damping) the iterates can grow along directions
    the products cannot resolve while the recurrences still report a decrease: steps that
    increase the model (measured on 50-keyframe monocular windows: up to ``-1.7e4`` for a unit
    right-hand side) or solve none of its residual, reported converged, so that LM claimed
    convergence 1% above the optimum. One float64 product with the same (rounded) Jacobian gives
    the true decrease ``2 b.J y - |J y|^2 - lambda |y|^2``: when it is not positive the zero
    step is returned with status ``STALLED`` at relative residual 1 (no progress: the LM driver
    escalates the precision); a converged solve whose relative residual exceeds 1 is reported
    ``STALLED`` (untrusted: it cannot support a convergence claim).
    """

    def __init__(self, inner: LinearSolver) -> None:
        self.inner = inner
        self.name = inner.name

    def prepare(self, system: ScaledSystem, policy: PrecisionPolicy, backend: Backend) -> None:
        """Prepare the wrapped solver."""
        self.inner.prepare(system, policy, backend)

    def solve(
        self, system: ScaledSystem, damping: float, policy: PrecisionPolicy, options: LinearSolverOptions
    ) -> LinearSolveResult:
        """Solve with the wrapped solver, then check the step's true model decrease."""
        result = self.inner.solve(system, damping, policy, options)
        if result.status.failed:
            return result
        J = system.jacobian_scaled
        data = round_to(J.data, policy.matvec).astype(np.float64, copy=False)
        y = result.step_scaled
        u = sp.csr_matrix((data, J.indices, J.indptr), shape=J.shape) @ y
        decrease = 2.0 * float(system.rhs @ u) - float(u @ u) - damping * float(y @ y)
        if not (np.isfinite(decrease) and decrease > 0.0):
            result.step_scaled = np.zeros_like(y)
            result.status, result.relative_residual = LinearStatus.STALLED, 1.0
        elif result.status is LinearStatus.CONVERGED and result.relative_residual > 1.0:
            result.status = LinearStatus.STALLED
        return result
