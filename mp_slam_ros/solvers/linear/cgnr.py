"""CGNR: conjugate gradients on the normal equations, applied to the Jacobian itself.

Solves ``min ||J_s y - b||^2 + damping ||y||^2`` without forming ``J_s^T J_s`` (no Hessian, no
Schur complement): each iteration costs one ``J_s p`` and one ``J_s^T q`` product, done by a
:class:`SparseOperator` in ``policy.matvec``; every other operation (vector updates, dot
products, the optional preconditioner's arithmetic unless the policy says otherwise) runs in
``policy.vector``. The right-hand side is normalized to unit length first, so no intermediate
vector can overflow float16; the solution is scaled back in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from mp_slam_ros.precision import Backend, PrecisionPolicy, array_module
from mp_slam_ros.solvers.linear.base import LinearSolveResult, LinearStatus, ScaledSystem
from mp_slam_ros.solvers.linear.operators import SparseOperator
from mp_slam_ros.solvers.summary import LinearSolverOptions

#: Relative improvement of the best residual that resets the stall counter.
_STALL_IMPROVEMENT = 0.99
#: Relative growth of the objective decrease (in units of the vector dtype's machine epsilon)
#: that also resets the stall counter: with a preconditioner the residual norm is not monotone
#: and may grow for many iterations while the objective keeps decreasing.
_OBJECTIVE_PROGRESS_EPS = 8.0


class Preconditioner(Protocol):
    """``z = M^-1 s`` for ``M ~ J_s^T J_s + damping I``.

    ``shifts`` counts the diagonal-shift retries its construction needed (breakdowns).
    """

    shifts: int

    def apply(self, s: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """Return ``M^-1 s`` computed in ``dtype`` (the policy's preconditioner precision),
        converted back to the dtype of ``s``."""
        ...


#: Builds a preconditioner from ``(J_s, damping, policy, backend)``.
PreconditionerFactory = Callable[[sp.csr_matrix, float, PrecisionPolicy, Backend], Preconditioner]


class CGNRSolver:
    """Matrix-free (preconditioned) CGNR satisfying the :class:`LinearSolver` protocol.

    ``static_preconditioner=True`` builds the preconditioner once per problem in :meth:`prepare`
    (the recipe's static incomplete Cholesky); otherwise it is rebuilt for every solve.
    ``truncated_newton=True`` replaces the relative-residual test by the Nash-Sofer test of
    :mod:`~mp_slam_ros.solvers.linear.pcg` on the objective decrease (BA: a relative residual of
    0.1 is met while the small-curvature directions, worth most of the decrease, are unresolved).
    """

    def __init__(
        self,
        preconditioner: PreconditionerFactory | None = None,
        static_preconditioner: bool = True,
        name: str = "cgnr",
        truncated_newton: bool = False,
    ) -> None:
        self.name = name
        self._truncated_newton = truncated_newton
        self._factory = preconditioner
        self._static = static_preconditioner
        self._preconditioner: Preconditioner | None = None
        self._backend = Backend.CPU

    def prepare(self, system: ScaledSystem, policy: PrecisionPolicy, backend: Backend) -> None:
        """Remember the backend; build the static preconditioner from the first system."""
        self._backend = backend
        self._preconditioner = None
        if self._factory is not None and self._static:
            self._preconditioner = self._factory(system.jacobian_scaled, 0.0, policy, backend)

    def rebuild_preconditioner(
        self, system: ScaledSystem, policy: PrecisionPolicy, factory: PreconditionerFactory
    ) -> None:
        """Use ``factory`` from now on and (if static) rebuild the preconditioner from ``system``."""
        self._factory = factory
        if self._static:
            self._preconditioner = factory(system.jacobian_scaled, 0.0, policy, self._backend)

    def solve(
        self,
        system: ScaledSystem,
        damping: float,
        policy: PrecisionPolicy,
        options: LinearSolverOptions,
    ) -> LinearSolveResult:
        """Run preconditioned CGNR on the scaled damped system (see module docstring)."""
        xp = array_module(self._backend)
        n = system.shape[1]
        b_norm = float(np.linalg.norm(system.rhs))
        if b_norm == 0.0 or n == 0:
            return LinearSolveResult(np.zeros(n), LinearStatus.CONVERGED, 0, 0.0)
        preconditioner = self._preconditioner
        if self._factory is not None and not self._static:
            preconditioner = self._factory(system.jacobian_scaled, damping, policy, self._backend)
        J = SparseOperator(system.jacobian_scaled, policy.matvec, self._backend, policy.vector)
        def precondition(v: np.ndarray) -> np.ndarray:
            return v if preconditioner is None else preconditioner.apply(v, policy.preconditioner)

        b_unit = xp.asarray((system.rhs / b_norm).astype(policy.vector))
        # A half-precision preconditioner is not an exactly fixed linear operator: use the
        # flexible (Polak-Ribiere) update of the search direction, robust to that.
        flexible = preconditioner is not None and policy.preconditioner == np.float16
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite values are detected
            x, status, iterations, relative = _cgnr_iterations(
                J, b_unit, damping, precondition, options, xp, flexible, self._truncated_newton
            )
        step = x.get() if hasattr(x, "get") else x
        shifts = 0 if preconditioner is None else preconditioner.shifts
        return LinearSolveResult(
            np.asarray(step, dtype=np.float64) * b_norm, status, iterations, relative, shifts
        )


def _projected_past_cap(iteration: int, lowest_relative: float, options: LinearSolverOptions) -> bool:
    """True when the average rate so far needs more than ``max_iterations`` to reach ``rtol``.

    Checked every 10 iterations from ``rate_check_iterations`` on: after ``k`` iterations at a
    best relative residual ``r``, reaching ``rtol`` at the same geometric rate takes
    ``k log(rtol) / log(r)`` iterations. (CG usually speeds up, so this errs on the patient side.)
    """
    start = options.rate_check_iterations
    if start == 0 or iteration < start or iteration % 10 or not 0.0 < lowest_relative < 1.0:
        return False
    return iteration * np.log(options.rtol) / np.log(lowest_relative) > options.max_iterations


def _cgnr_iterations(
    J: SparseOperator,
    b: np.ndarray,
    damping: float,
    precondition: Callable[[np.ndarray], np.ndarray],
    options: LinearSolverOptions,
    xp: object,
    flexible: bool = False,
    truncated_newton: bool = False,
) -> tuple[np.ndarray, LinearStatus, int, float]:
    """The CGLS recurrences; returns ``(x, status, iterations, ||s|| / ||s_0||)``.

    Unless it converges, the iterate with the largest decrease of the objective
    ``||b - J x||^2 + lambda ||x||^2`` (ties up to rounding: the smallest ``||s||``) is returned (what the LM step needs; monotone in exact
    arithmetic, unlike the normal-equation residual ``||s||`` of a preconditioned solve, which
    can grow for many iterations). The decrease is computed from ``u = J x`` (tracked as
    ``u += alpha q``) as ``2 b.u - u.u - lambda x.x``, free of the cancellation of
    ``||b||^2 - ||r||^2`` when the achievable decrease is tiny. The solve stalls when neither the
    decrease nor the best ``||s||`` has improved for ``stall_iterations`` (in low precision the
    recurrences lose orthogonality once rounding dominates), stops as too slow when its rate
    projects past the cap (:func:`_projected_past_cap`) and stops as diverged when the
    objective exceeds that of the zero step. ``flexible``: Polak-Ribiere update of the search
    direction, for a preconditioner that is not exactly linear (half precision).
    ``truncated_newton``: converged when ``i (Q_i - Q_{i-1}) <= rtol Q_i`` for the decrease ``Q``
    (Nash-Sofer) instead of when ``||s|| / ||s_0|| <= rtol``.
    """
    dtype = b.dtype
    lam = dtype.type(damping)
    x = xp.zeros(J.shape[1], dtype=dtype)
    u = xp.zeros_like(b)
    r = b.copy()
    s = J.rmatvec(r)
    s0_norm = float(xp.linalg.norm(s.astype(np.float64)))
    if s0_norm == 0.0 or not np.isfinite(s0_norm):
        status = LinearStatus.CONVERGED if s0_norm == 0.0 else LinearStatus.NON_FINITE
        return x, status, 0, 0.0 if s0_norm == 0.0 else float("inf")

    z = precondition(s)
    p = z.copy()
    gamma = xp.dot(s, z)
    progress = 1.0 + _OBJECTIVE_PROGRESS_EPS * float(np.finfo(dtype).eps)
    best_x, best, best_decrease, best_iteration = x.copy(), 1.0, 0.0, 0
    lowest_relative, previous = 1.0, 0.0
    for iteration in range(1, options.max_iterations + 1):
        q = J.matvec(p)
        delta = xp.dot(q, q) + lam * xp.dot(p, p)
        if not bool(xp.isfinite(delta)) or not bool(xp.isfinite(gamma)):
            return best_x, LinearStatus.NON_FINITE, iteration, best
        if float(delta) <= 0.0 or float(gamma) <= 0.0:
            status = LinearStatus.BREAKDOWN if best_iteration == 0 else LinearStatus.STALLED
            return best_x, status, iteration, best
        alpha = gamma / delta
        x += alpha * p
        u += alpha * q
        r -= alpha * q
        s = J.rmatvec(r) - lam * x
        relative = float(xp.linalg.norm(s.astype(np.float64))) / s0_norm
        if not np.isfinite(relative):
            return best_x, LinearStatus.NON_FINITE, iteration, best
        decrease = 2.0 * float(xp.dot(b, u)) - float(xp.dot(u, u)) - damping * float(xp.dot(x, x))
        if truncated_newton:
            if decrease > 0.0 and iteration * (decrease - previous) <= options.rtol * decrease:
                return x, LinearStatus.CONVERGED, iteration, relative
            previous = decrease
        elif relative <= options.rtol:
            return x, LinearStatus.CONVERGED, iteration, relative
        improved = decrease > best_decrease * progress
        if improved or relative < _STALL_IMPROVEMENT * lowest_relative:
            best_iteration = iteration
        lowest_relative = min(lowest_relative, relative)
        # Keep the iterate with the largest decrease; among decreases equal up to rounding,
        # the one with the smallest normal-equation residual.
        if improved or (decrease >= best_decrease * (2.0 - progress) and relative < best):
            best_x[...] = x
            best, best_decrease = relative, max(decrease, best_decrease)
        if iteration - best_iteration >= options.stall_iterations or decrease < 0.0:
            return best_x, LinearStatus.STALLED, iteration, best
        if _projected_past_cap(iteration, lowest_relative, options):
            return best_x, LinearStatus.TOO_SLOW, iteration, best
        z_next = precondition(s)
        gamma_next = xp.dot(s, z_next)
        beta = (gamma_next - xp.dot(s, z)) / gamma if flexible else gamma_next / gamma
        p = z_next + beta * p
        z, gamma = z_next, gamma_next
    return best_x, LinearStatus.MAX_ITERATIONS, options.max_iterations, best
