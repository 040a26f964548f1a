"""Inexact Newton: how accurately each LM step's linear system is solved (the forcing sequence).

:class:`InexactNewton` wraps an iterative :class:`LinearSolver` and picks each solve's relative
tolerance. Far from the solution a loose solve gives most of the decrease for a fraction of the
iterations; near it the step must be accurate. The forcing term at LM iteration ``k`` is

    eta_k = max(rtol, floor_k, min(cap_k, sqrt(||g_k|| / ||g_0||)))

(an Eisenstat-Walker style choice: the gradient norm measures the distance to the solution;
``eta_max`` = 0.01: on an odometry-initialised 10,000-pose 2-D grid, 0.1-accurate early steps,
each accepted with gain ratio 0.93, led LM into a region where it crawled for 47 iterations
(781 CG iterations) while 0.01 takes 8 (392); on the perturbed-start household, sphere and grid
graphs of ``bench/bench_pgo.py`` both cost the same CPU time within 10%),
where ``g = J_s^T b`` is the scaled gradient and ``floor_k = 30 eps(vector dtype) ||b|| /
||g_k||`` the rounding floor of the normal-equation residual in the policy's vector dtype.

The cap is tied to the LM gain ratio ``rho`` (actual / predicted decrease), reported by the
driver through :meth:`InexactNewton.observe_gain`: a step with ``rho < 1/4`` (or rejected)
that came from a loose solve lowers the cap to a tenth of the tolerance that solve used (the
model was fine, its solution was not: the driver then retries the same system without raising
the damping); a step with ``rho > 3/4`` relaxes the cap tenfold, up to ``eta_max``.

When ``floor_k`` reaches 1 (no digit of the gradient is resolved: naive fp16 near a solution)
no solve is attempted; the result is a zero step with status ``STALLED`` (the LM driver
escalates the precision on it).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mp_slam_ros.precision import Backend, PrecisionPolicy
from mp_slam_ros.solvers.linear.base import LinearSolver, LinearSolveResult, LinearStatus, ScaledSystem
from mp_slam_ros.solvers.summary import LinearSolverOptions

#: Gain ratios below this lower the forcing cap; above :data:`_GOOD_GAIN` they relax it.
_POOR_GAIN, _GOOD_GAIN = 0.25, 0.75
#: Factor between consecutive forcing caps.
_CAP_STEP = 10.0


class InexactNewton:
    """A :class:`LinearSolver` wrapper choosing each inner tolerance (module docstring)."""

    def __init__(self, inner: LinearSolver, eta_max: float = 0.01) -> None:
        self.inner = inner
        self.name = inner.name
        self.eta_max = eta_max
        self._initial_gradient = 0.0
        self._cap = eta_max
        self._last_rtol = 0.0
        self._min_rtol = 0.0

    def prepare(self, system: ScaledSystem, policy: PrecisionPolicy, backend: Backend) -> None:
        """Remember the initial gradient norm and prepare the wrapped solver."""
        self._initial_gradient = float(np.linalg.norm(system.scaled_gradient()))
        self._cap = self.eta_max
        self.inner.prepare(system, policy, backend)

    def solve(
        self, system: ScaledSystem, damping: float, policy: PrecisionPolicy, options: LinearSolverOptions
    ) -> LinearSolveResult:
        """Solve with the wrapped solver at this iteration's tolerance."""
        gradient = float(np.linalg.norm(system.scaled_gradient()))
        self._last_rtol = self._min_rtol = options.rtol
        if gradient == 0.0 or self._initial_gradient == 0.0:
            return self.inner.solve(system, damping, policy, options)
        forcing = min(self._cap, np.sqrt(gradient / self._initial_gradient))
        floor = 30.0 * float(np.finfo(policy.vector).eps) * float(np.linalg.norm(system.rhs)) / gradient
        if floor >= 1.0:  # the gradient is below the resolution of this vector precision
            return LinearSolveResult(np.zeros(system.shape[1]), LinearStatus.STALLED, 0, 1.0)
        self._min_rtol = float(max(options.rtol, floor))
        self._last_rtol = float(min(max(self._min_rtol, forcing), 0.9))
        return self.inner.solve(system, damping, policy, replace(options, rtol=self._last_rtol))

    @property
    def last_rtol(self) -> float:
        """The relative tolerance the last solve was asked for."""
        return self._last_rtol

    def observe_gain(self, gain_ratio: float) -> bool:
        """Adapt the forcing cap to the last step's gain ratio (``-inf`` for a rejected step).

        Returns True when the next solve will be tighter than the last one (a poor step from a
        loose solve: retry before damping more), False otherwise.
        """
        if gain_ratio > _GOOD_GAIN:
            self._cap = min(self.eta_max, self._cap * _CAP_STEP)
            return False
        if gain_ratio >= _POOR_GAIN or self._last_rtol <= self._min_rtol:
            return False
        self._cap = self._last_rtol / _CAP_STEP
        return True
