"""Escalation of a bundle adjustment's iterative linear solver to the direct Schur solver.

CGNR (and PCG on the reduced camera system) with a Schur-Jacobi preconditioner solves the
well-conditioned windows in a few dozen iterations. On monocular windows whose scale is barely
fixed (two gauge cameras 2 cm apart) or not at all, the preconditioner leaves the camera
directions of that drift unresolved: a solve hits its iteration cap (or projects past it), its
inexact steps make LM crawl, and the solve ends at ``max_iterations`` above the optimum the direct
solver reaches. :class:`DirectFallback` watches every inner solve and, on the first one that
stops that way, solves that system and every later one of the problem directly (the landmark
elimination and dense Cholesky of :class:`~mp_slam_ros.solvers.linear.schur.SchurSolver`, in
float64), the issue's last rung of the robust inexact Newton ladder; the change is reported as a
``direct`` event (the LM summary's ``linear_solver_changes``) and, because the direct solver
solves in float64, the LM driver moves the residuals to float64 too (an escalation).

Measured on ``bench_ba.py``'s 200 windows (``cgnr`` mixed, solved tight: function tolerance 1e-6,
100 iterations), against the tight fp64 Schur optimum: within 0.1% on 97.5% -> 99.0% of the
windows, with 35 of the 50 "2 fixed cameras" windows escalating (9 of 50 without a fixed camera,
4 of 50 in plain least squares, 1 of 50 RGB-D).
"""

from __future__ import annotations

from mp_slam_ros.precision import Backend, PrecisionPolicy
from mp_slam_ros.solvers.linear.base import GainObserver, LinearSolveResult, LinearSolver, LinearStatus, ScaledSystem
from mp_slam_ros.solvers.summary import LinearSolverOptions

#: Inner-solve endings that mean the preconditioner stopped working.
STOPPED = (LinearStatus.MAX_ITERATIONS, LinearStatus.TOO_SLOW)


class DirectFallback:
    """``iterative`` until one of its solves ends in :data:`STOPPED`, then ``direct`` (see the
    module docstring); a :class:`~mp_slam_ros.solvers.linear.base.LinearSolver`."""

    def __init__(self, iterative: LinearSolver, direct: LinearSolver) -> None:
        self.iterative = iterative
        self.direct = direct
        self.name = iterative.name
        self._direct_active = False
        self._direct_prepared = False
        self._backend = Backend.CPU

    @property
    def solves_in_float64(self) -> bool:
        """True once the direct solver has taken over."""
        return self._direct_active

    def prepare(self, system: ScaledSystem, policy: PrecisionPolicy, backend: Backend) -> None:
        """Prepare the iterative solver (the direct one is prepared when it takes over)."""
        self._backend = backend
        self.iterative.prepare(system, policy, backend)

    def observe_gain(self, gain_ratio: float) -> bool:
        """Pass the gain ratio to the iterative solver while it is in use."""
        if self._direct_active or not isinstance(self.iterative, GainObserver):
            return False
        return self.iterative.observe_gain(gain_ratio)

    def solve(
        self, system: ScaledSystem, damping: float, policy: PrecisionPolicy, options: LinearSolverOptions
    ) -> LinearSolveResult:
        """Solve with the solver in use; escalate when the iterative solve stopped working."""
        events: list[tuple[str, str]] = []
        if not self._direct_active:
            result = self.iterative.solve(system, damping, policy, options)
            result.solver = result.solver or self.iterative.name
            if result.status not in STOPPED:
                return result
            self._direct_active = True
            self._prepare_direct(system, policy)
            events += result.events  # what the iterative solve did first (e.g. a higher precision)
            events.append(("direct", f"{self.iterative.name} {result.status.value} after {result.iterations} "
                                     f"iterations at relative residual {result.relative_residual:.1e}"))
        result = self.direct.solve(system, damping, policy, options)
        result.solver = self.direct.name
        result.events = events + result.events
        return result

    def solve_exactly(
        self, system: ScaledSystem, damping: float, policy: PrecisionPolicy, options: LinearSolverOptions
    ) -> LinearSolveResult:
        """Solve this one system with the direct solver (LM's convergence certificate) and keep
        the solver in use for the next steps as it is."""
        self._prepare_direct(system, policy)
        result = self.direct.solve(system, damping, policy, options)
        result.solver = self.direct.name
        return result

    def _prepare_direct(self, system: ScaledSystem, policy: PrecisionPolicy) -> None:
        """Prepare the direct solver once."""
        if not self._direct_prepared:
            self.direct.prepare(system, policy, self._backend)
            self._direct_prepared = True
