"""Preconditioned conjugate gradients on a symmetric positive definite operator ``A y = g``.

The CG of the iterative Schur solver (:mod:`mp_slam_ros.solvers.linear.iterative_schur`). It is
converged by the truncated-Newton test of Nash and Sofer (as Ceres' CG in its LM loop): with
``Q_i = 2 g.y_i - y_i.A y_i`` the decrease of the quadratic model after ``i`` iterations, stop
once ``i (Q_i - Q_{i-1}) / Q_i <= rtol`` (the forcing term ``eta``), i.e. once further
iterations add little to the model decrease. A relative-residual test ``||r|| / ||g|| <= rtol``
would be met while the directions of small curvature, small in ``r`` but worth most of the
decrease, are still unresolved: on monocular windows LM then crawls and stops on its function
tolerance well above the optimum. Other ends: ``max_iterations``, a stall (neither the decrease
nor the best residual improved for ``stall_iterations``), a non-finite value, a breakdown
``p^T A p <= 0``. Unless it converges, the iterate with the largest decrease is returned.
``Q_i = g.y + r.y`` comes from the recurrence residual ``r = g - A y``.
Vectors and dot products are in the dtype of ``g``; ``apply_A`` and ``precondition`` decide their
own precision and return that dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mp_slam_ros.solvers.linear.base import LinearStatus
from mp_slam_ros.solvers.summary import LinearSolverOptions

#: Relative improvement of the best residual that resets the stall counter (as in CGNR).
_STALL_IMPROVEMENT = 0.99
#: Growth of the objective decrease, in machine epsilons of the vector dtype, that also does.
_OBJECTIVE_PROGRESS_EPS = 8.0

Operator = Callable[[np.ndarray], np.ndarray]


def pcg(
    apply_A: Operator,
    g: np.ndarray,
    precondition: Operator,
    options: LinearSolverOptions,
    xp: object = np,
    flexible: bool = False,
) -> tuple[np.ndarray, LinearStatus, int, float]:
    """Solve ``A y = g`` from ``y = 0``; returns ``(y, status, iterations, ||r|| / ||g||)``.

    ``flexible``: Polak-Ribiere update of the search direction, for a preconditioner that is not
    an exactly fixed linear operator (half precision).
    """
    dtype = g.dtype
    y = xp.zeros_like(g)
    r = g.copy()
    g_norm = float(xp.linalg.norm(g.astype(np.float64)))
    if g_norm == 0.0 or not np.isfinite(g_norm):
        return y, LinearStatus.CONVERGED if g_norm == 0.0 else LinearStatus.NON_FINITE, 0, 0.0
    z = precondition(r)
    p = z.copy()
    gamma = float(xp.dot(r, z))
    progress = 1.0 + _OBJECTIVE_PROGRESS_EPS * float(np.finfo(dtype).eps)
    best_y, best, best_decrease, best_iteration, lowest = y.copy(), 1.0, 0.0, 0, 1.0
    previous = 0.0
    for iteration in range(1, options.max_iterations + 1):
        q = apply_A(p)
        curvature = float(xp.dot(p, q))
        if not (np.isfinite(curvature) and np.isfinite(gamma)):
            return best_y, LinearStatus.NON_FINITE, iteration, best
        if curvature <= 0.0 or gamma <= 0.0:
            status = LinearStatus.BREAKDOWN if best_iteration == 0 else LinearStatus.STALLED
            return best_y, status, iteration, best
        alpha = dtype.type(gamma / curvature)
        y += alpha * p
        r -= alpha * q
        relative = float(xp.linalg.norm(r.astype(np.float64))) / g_norm
        if not np.isfinite(relative):
            return best_y, LinearStatus.NON_FINITE, iteration, best
        decrease = float(xp.dot(g, y)) + float(xp.dot(r, y))
        if decrease > 0.0 and iteration * (decrease - previous) <= options.rtol * decrease:
            return y, LinearStatus.CONVERGED, iteration, relative
        previous = decrease
        improved = decrease > best_decrease * progress
        if improved or relative < _STALL_IMPROVEMENT * lowest:
            best_iteration = iteration
        lowest = min(lowest, relative)
        if improved or (decrease >= best_decrease * (2.0 - progress) and relative < best):
            best_y[...] = y
            best, best_decrease = relative, max(decrease, best_decrease)
        if iteration - best_iteration >= options.stall_iterations or decrease < 0.0:
            return best_y, LinearStatus.STALLED, iteration, best
        z_next = precondition(r)
        gamma_next = float(xp.dot(r, z_next))
        beta = (gamma_next - float(xp.dot(r, z))) / gamma if flexible else gamma_next / gamma
        p = z_next + dtype.type(beta) * p
        z, gamma = z_next, gamma_next
    return best_y, LinearStatus.MAX_ITERATIONS, options.max_iterations, best
