"""The interface between the LM driver and its linear solvers.

Each LM iteration solves the damped, Jacobi-scaled least-squares problem

    min_y || J_s y - b ||^2 + damping * ||y||^2,     J_s = J S,  b = -r,  dx = S y,

where ``S = diag(1 / ||J[:, j]||)`` makes every column of ``J_s`` unit-norm. The scaling is the
regularization of the recipe: ``J_s`` has entries in [-1, 1] (no fp16 overflow), ``J_s^T J_s``
has a unit diagonal, and the damping acts as Marquardt's ``diag(J^T J)`` on the unscaled problem.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numba
import numpy as np
import scipy.sparse as sp

from mp_slam_ros.precision import Backend, PrecisionPolicy
from mp_slam_ros.solvers.summary import LinearSolverOptions

#: Columns with a norm below this are treated as empty (their scale is 1, their step 0).
_EMPTY_COLUMN_NORM = 1e-300
#: Relative normal-equation residual up to which an unconverged inner solve is still trusted.
TRUSTED_RELATIVE_RESIDUAL = 0.1


class LinearStatus(str, enum.Enum):
    """How an inner solve ended."""

    CONVERGED = "converged"
    MAX_ITERATIONS = "max_iterations"
    STALLED = "stalled"  # no progress: the precision floor of the low-precision parts
    NON_FINITE = "non_finite"  # overflow or NaN in a low-precision part
    BREAKDOWN = "breakdown"  # e.g. a non-positive curvature p^T A p <= 0
    TOO_SLOW = "too_slow"  # stopped early: its convergence rate projects past max_iterations

    @property
    def failed(self) -> bool:
        """True when the step must not be used at all."""
        return self in (LinearStatus.NON_FINITE, LinearStatus.BREAKDOWN)


@numba.njit(cache=True, nogil=True)
def _scale_columns(data, indices, num_columns):  # type: ignore[no-untyped-def]
    """``(data * S[indices], S)`` in float64 with ``S = 1 / column norm`` (1 for empty columns)."""
    norm_squared = np.zeros(num_columns)
    for p in range(numba.uint64(data.size)):  # unsigned: no negative-index test per access
        value = np.float64(data[p])
        norm_squared[numba.uint64(indices[p])] += value * value
    scale = np.empty(num_columns)
    for j in range(num_columns):
        norm = np.sqrt(norm_squared[j])
        scale[j] = 1.0 / norm if norm > _EMPTY_COLUMN_NORM else 1.0
    scaled = np.empty(data.size)
    for p in range(numba.uint64(data.size)):
        scaled[p] = np.float64(data[p]) * scale[numba.uint64(indices[p])]
    return scaled, scale


@dataclass
class ScaledSystem:
    """One linearization, column-scaled: ``J_s`` ``(m, n)`` CSR float64, ``b`` ``(m,)`` float64."""

    jacobian_scaled: sp.csr_matrix
    rhs: np.ndarray
    column_scale: np.ndarray  # S, (n,) float64

    @classmethod
    def from_linearization(cls, jacobian: sp.spmatrix, residual: np.ndarray) -> ScaledSystem:
        """Scale the columns of ``jacobian`` to unit norm; the right-hand side is ``-residual``."""
        J = jacobian if sp.isspmatrix_csr(jacobian) else sp.csr_matrix(jacobian, dtype=np.float64)
        if not J.has_canonical_format:  # duplicates would be squared separately below
            J = sp.csr_matrix(J, dtype=np.float64, copy=True)
            J.sum_duplicates()
        # Scaling the values (not J @ D) keeps the caller's sparsity pattern (same indices/indptr,
        # explicit zeros kept), which structure-aware solvers rely on; one numba pass, float64.
        scaled, column_scale = _scale_columns(J.data, J.indices, J.shape[1])
        J_s = sp.csr_matrix((scaled, J.indices, J.indptr), shape=J.shape)
        return cls(J_s, -np.asarray(residual, dtype=np.float64), column_scale)

    @property
    def shape(self) -> tuple[int, int]:
        """``(num_residuals, num_parameters)``."""
        return self.jacobian_scaled.shape

    def scaled_gradient(self) -> np.ndarray:
        """``J_s^T b`` (float64): minus the gradient of the cost in scaled variables."""
        return self.jacobian_scaled.T @ self.rhs

    def unscale(self, step_scaled: np.ndarray) -> np.ndarray:
        """The parameter step ``dx = S y`` (float64) of a scaled solution ``y``."""
        return self.column_scale * np.asarray(step_scaled, dtype=np.float64)


@dataclass
class LinearSolveResult:
    """Solution ``y`` (float64, host) of the scaled damped system and how it was obtained."""

    step_scaled: np.ndarray
    status: LinearStatus
    iterations: int
    relative_residual: float
    shifts: int = 0  # diagonal shifts the preconditioner needed (breakdown retries) so far
    solver: str = ""  # the linear solver that produced this step (set by fallback ladders)
    #: what a fallback ladder did during this solve: ``(action, reason)`` pairs, in order
    events: list[tuple[str, str]] = field(default_factory=list)

    @property
    def trusted(self) -> bool:
        """True when the step solves its model well enough to judge convergence by it.

        A solve that converged, or reached a tenth of its initial normal-equation residual;
        a capped, stalled or too slow solve above that gives a step whose predicted decrease
        says nothing about how far the solution is.
        """
        return self.status is LinearStatus.CONVERGED or (
            not self.status.failed and self.relative_residual <= TRUSTED_RELATIVE_RESIDUAL
        )


class LinearSolver(Protocol):
    """What the LM driver needs from a linear solver."""

    name: str

    def prepare(self, system: ScaledSystem, policy: PrecisionPolicy, backend: Backend) -> None:
        """Build per-problem data (a static preconditioner) from the first system.

        Called once per problem, before the first :meth:`solve`. Later solves may use a higher
        precision (escalation): per-precision data is then derived from what was built here.
        """
        ...

    def solve(
        self,
        system: ScaledSystem,
        damping: float,
        policy: PrecisionPolicy,
        options: LinearSolverOptions,
    ) -> LinearSolveResult:
        """Solve ``min ||J_s y - b||^2 + damping ||y||^2`` in the precisions of ``policy``."""
        ...


@runtime_checkable
class DirectSolver(Protocol):
    """A linear solver that may solve exactly in float64 whatever the policy (a direct one)."""

    @property
    def solves_in_float64(self) -> bool:
        """True while its solves are direct float64 ones (below-fp64 residuals then only cost
        accuracy: the LM driver moves them up, see :mod:`mp_slam_ros.solvers.lm`)."""
        ...


@runtime_checkable
class ExactSolver(Protocol):
    """An iterative linear solver that can also solve one system exactly (direct, float64).

    The LM driver's convergence certificate asks for it: an iterative solve stopped by the
    truncated-Newton test may leave a relative residual of 0.1-0.4, and its model then
    under-predicts the decrease still to be had (a crawl certified as converged).
    """

    def solve_exactly(
        self, system: ScaledSystem, damping: float, policy: PrecisionPolicy, options: LinearSolverOptions
    ) -> LinearSolveResult:
        """Solve this one system directly; later :meth:`solve` calls are unchanged."""
        ...


@runtime_checkable
class GainObserver(Protocol):
    """A linear solver that adapts to the LM gain ratio of its steps (e.g. the forcing term)."""

    def observe_gain(self, gain_ratio: float) -> bool:
        """Take the last step's gain ratio (``-inf`` if rejected); True if the next solve is tighter."""
        ...
