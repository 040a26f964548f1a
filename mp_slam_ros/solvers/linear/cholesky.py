"""fp64 sparse direct solver: the accuracy reference for the iterative linear solvers.

:class:`SparseCholeskySolver` solves the scaled damped least-squares problem of each LM
iteration exactly through the normal equations ``(J_s^T J_s + damping I) y = J_s^T b`` with a
sparse Cholesky factorization, always in float64 whatever the precision policy (the policy
still sets the residual precision of the problem). The backend is:

* CHOLMOD (:mod:`.cholmod`: the cvxopt wheel, or scikit-sparse where it was built)
  when importable; with scikit-sparse the fill-reducing ordering and symbolic factorization of
  ``J_s^T J_s`` are computed once in :meth:`prepare` and every solve only refactors numerically
  (the damping added as ``beta``); the analysis is redone only if the pattern of ``J_s`` changes;
* otherwise SciPy's SuperLU: the column ordering computed by the first factorization is
  reused, later factorizations use it with no ordering step (``permc_spec="NATURAL"``).

Runs on the host only (a CUDA backend is accepted; the solve runs on the CPU).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from mp_slam_ros.precision import Backend, PrecisionPolicy
from mp_slam_ros.solvers.linear.base import LinearSolveResult, LinearStatus, ScaledSystem
from mp_slam_ros.solvers.linear.normal_equations import NormalPattern
from mp_slam_ros.solvers.summary import LinearSolverOptions

from mp_slam_ros.solvers.linear import cholmod


def cholmod_available() -> bool:
    """True when a CHOLMOD binding (cvxopt or scikit-sparse) is importable."""
    return bool(cholmod.binding())


class SparseCholeskySolver:
    """Exact (float64) solves of the damped normal equations; a :class:`LinearSolver`.

    ``use_cholmod``: ``None`` picks CHOLMOD when available, ``False`` forces the SciPy path.
    ``analyses`` counts the symbolic analyses done (1 per problem unless the pattern changed).
    """

    def __init__(self, use_cholmod: bool | None = None) -> None:
        self.use_cholmod = cholmod_available() if use_cholmod is None else use_cholmod and cholmod_available()
        self.name = "cholesky" if self.use_cholmod else "cholesky_scipy"
        self.analyses = 0
        self._pattern: tuple[np.ndarray, np.ndarray] | None = None
        self._symbolic: object = None  # cholmod.NormalEquationsFactor, or SuperLU's permutation
        self._pattern_hint: NormalPattern | None = None

    def reuse_pattern(self, pattern: NormalPattern) -> None:
        """Analyse with ``pattern`` (a normal-matrix pattern the caller already built for the
        Jacobians to come, e.g. for a preconditioner check) instead of building it again."""
        self._pattern_hint = pattern

    @property
    def solves_in_float64(self) -> bool:
        """Always: a direct float64 solver (:class:`~.base.DirectSolver`)."""
        return True

    def prepare(self, system: ScaledSystem, policy: PrecisionPolicy, backend: Backend) -> None:
        """Compute the fill-reducing ordering / symbolic factorization of ``J_s^T J_s``."""
        del policy, backend  # always float64 on the host
        self._analyze(system.jacobian_scaled)

    def _analyze(self, J: sp.csr_matrix) -> None:
        self.analyses += 1
        self._pattern = (J.indptr.copy(), J.indices.copy())
        if self.use_cholmod:
            self._symbolic = cholmod.NormalEquationsFactor(J, self._pattern_hint)
            self._pattern_hint = None
        else:
            normal = sp.csc_matrix(J.T @ J + sp.eye(J.shape[1]))
            self._symbolic = spla.splu(normal, permc_spec="MMD_AT_PLUS_A").perm_c

    def _same_pattern(self, J: sp.csr_matrix) -> bool:
        assert self._pattern is not None
        indptr, indices = self._pattern
        return np.array_equal(indptr, J.indptr) and np.array_equal(indices, J.indices)

    def solve(
        self,
        system: ScaledSystem,
        damping: float,
        policy: PrecisionPolicy,
        options: LinearSolverOptions,
    ) -> LinearSolveResult:
        """Solve ``(J_s^T J_s + damping I) y = J_s^T b`` exactly in float64."""
        del policy, options  # a direct solve: no tolerances, always float64
        J = sp.csr_matrix(system.jacobian_scaled, dtype=np.float64)
        n = J.shape[1]
        gradient = J.T @ system.rhs
        if n == 0 or not np.any(gradient):
            return LinearSolveResult(np.zeros(n), LinearStatus.CONVERGED, 0, 0.0)
        if self._pattern is None or not self._same_pattern(J):
            self._analyze(J)
        try:
            step = self._factor_solve(J, damping, gradient)
        except cholmod.FACTOR_ERRORS:
            return LinearSolveResult(np.zeros(n), LinearStatus.BREAKDOWN, 1, float("inf"))
        if not np.all(np.isfinite(step)):
            return LinearSolveResult(step, LinearStatus.NON_FINITE, 1, float("inf"))
        normal_residual = J.T @ (system.rhs - J @ step) - damping * step
        relative = float(np.linalg.norm(normal_residual) / np.linalg.norm(gradient))
        return LinearSolveResult(step, LinearStatus.CONVERGED, 1, relative)

    def _factor_solve(self, J: sp.csr_matrix, damping: float, gradient: np.ndarray) -> np.ndarray:
        if self.use_cholmod:
            assert isinstance(self._symbolic, cholmod.NormalEquationsFactor)
            return self._symbolic.solve(J, damping, gradient)
        perm = self._symbolic
        normal = sp.csc_matrix(J.T @ J + damping * sp.eye(J.shape[1]))
        permuted = normal[perm][:, perm]
        lu = spla.splu(sp.csc_matrix(permuted), permc_spec="NATURAL", diag_pivot_thresh=0.0)
        step = np.empty_like(gradient)
        step[perm] = lu.solve(gradient[perm])
        return step
