"""A fallback ladder for a preconditioned iterative solver that stops working (robust inexact Newton).

A static incomplete-Cholesky preconditioner is built once per problem, from the Jacobian at
zero residual. Far from that point (an odometry-initialised graph after a long loop, very
anisotropic information) it can stop working: CG hits its cap, stagnates, or its rate projects
past the cap (``too_slow``). :class:`FallbackLadder` watches every inner solve and, when one
fails that way, takes the next rung, in order of cost, and solves the same system again:

1. ``refresh``: refactor the preconditioner at the current point (this system's Jacobian),
   taken only when the scaled Jacobian moved by more than :data:`MOVED` (relative Frobenius
   norm) from the one the preconditioner was built from (else refactoring changes nothing);
2. ``tighten``: refactor it with a ten times smaller drop tolerance (more fill, stronger), taken
   only for problems with at least ``tighten_min_parameters`` unknowns (below that a direct
   factorization costs less: see :class:`~mp_slam_ros.solvers.summary.LinearSolverOptions`);
3. ``direct``: the sparse direct factorization (float64) for the rest of the solve.

Before any of that, the first solve is a race: CG gets ``race_iterations`` iterations; if it has
not converged by then, the same system is solved directly too, the exact step is the one
returned, and the direct solver solves the rest (recorded as a ``direct`` change) unless its
numeric solve took more than :data:`RACE_DIRECT_MARGIN` times the CPU time CG is projected to
need for its tolerance (from its rate so far). The direct solver's one-time analysis (ordering,
symbolic factorization) is left out of that comparison, and the margin favours the exact step:
later CG solves cost more than the first (tighter forcing terms near the solution) and inexact
steps cost LM iterations. A weak
preconditioner shows on the first solve, and its inexact early steps can lead LM into a worse
basin that no later rung recovers from. Measured on the public graphs GTSAM ships
(``bench_pgo.py --suite public``) before the race: ``w10000`` (Olson's 10,000-pose world, 64,311
edges) took 79-200 CG iterations per solve to a relative residual of 1e-2, and LM stopped at 100
iterations at 4.6-5.0x GTSAM's chi2 (48-98 s) where the direct solver converges in 9 iterations
(1.0 s); ``w20000`` (20,061 poses, edges only) ended at 22-36x (solved to 1e-6, CG converges in
11 LM iterations but needs 12,060 CG iterations: 49 s against 1.0 s direct). With the race (20
iterations), CPU time in ``mixed``: w10000 0.81 s, w20000 0.72 s, both at GTSAM's chi2; on the
generated graphs the race costs 0-10% where CG stays (household 10,000 poses 0.82 -> 0.90 s)
and saves 15-57% where the direct solver wins (city 10,000 poses 0.51 -> 0.23 s, grid 1.49 ->
0.65 s). The race first compared the whole direct solve, analysis included, with CG's projection
and no margin; on w20000 the two were within 5% (0.066 against 0.069 s), so timing noise chose
CG in some runs, and LM then took 36 iterations and 11 s instead of 16 and 0.7 s. A ladder built with a kept choice (``iterative_chosen``: a growing graph's later
solves) does not race again.

Every rung taken is reported in the solve result's ``events`` (the LM summary lists them as
``linear_solver_changes``) and every result names the solver that produced it. Problems with
at most ``direct_max_parameters`` unknowns go straight to the direct solver, and so do problems
whose drop tolerance would discard most of the matrix's own entries (a degenerate
preconditioner, e.g. from very anisotropic information: checked before it is built). With naive fp16
vectors a stall is the precision floor, not a weak preconditioner: that is left to the LM
driver's precision escalation.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from mp_slam_ros.precision import Backend, PrecisionPolicy
from mp_slam_ros.solvers.linear.base import (
    GainObserver,
    LinearSolveResult,
    LinearSolver,
    LinearStatus,
    ScaledSystem,
)
from mp_slam_ros.solvers.linear.cgnr import CGNRSolver
from mp_slam_ros.solvers.linear.cholesky import SparseCholeskySolver
from mp_slam_ros.solvers.linear.ichol import IncompleteCholeskyFactory, first_order_kept_fraction
from mp_slam_ros.solvers.linear.inexact_newton import InexactNewton
from mp_slam_ros.solvers.linear.normal_equations import NormalPattern
from mp_slam_ros.solvers.summary import LinearSolverOptions

#: Factor applied to the drop tolerance by the ``tighten`` rung.
TIGHTEN_FACTOR = 0.1
#: Relative change of the scaled Jacobian above which a refreshed preconditioner can differ.
MOVED = 0.05
#: Below this first-order kept fraction (:func:`~.ichol.first_order_kept_fraction`) the
#: thresholded factor would discard the matrix itself (very anisotropic information: 0.18 on a
#: garage graph whose CG stalled; 0.44-0.79 on household, sphere, grid and city graphs).
MIN_KEPT_FRACTION = 0.3
#: The race keeps CG only when the direct solver's numeric solve takes more than this many times
#: CG's projected time (module docstring). Measured per-step ratios (direct numeric solve / CG
#: projection, fp32, this CPU): w20000 0.35, w10000 0.28, city 10,000 0.33, grid 10,000 0.46;
#: household 10,000 1.73 and sphere 10,000 1.57, where the whole LM solve was still 20-35% faster
#: direct (CG's later solves cost about twice its first, and it took 6-7 LM iterations against 5).
RACE_DIRECT_MARGIN = 2.0


class FallbackLadder:
    """A :class:`LinearSolver`: ``iterative`` (wrapping ``cgnr``) with the ladder of the module doc.

    ``iterative`` is the solver called for each step (e.g. an inexact-Newton wrapper around
    ``cgnr``); ``cgnr`` is the CGNR solver whose preconditioner the ``refresh``/``tighten``
    rungs rebuild from ``factory``; ``direct`` takes over on the last rung.
    ``iterative_chosen``: skip the direct-or-preconditioner check (the caller knows the
    preconditioner works, e.g. one kept from an earlier solve of the same growing problem).
    """

    def __init__(
        self,
        iterative: LinearSolver,
        cgnr: CGNRSolver,
        factory: IncompleteCholeskyFactory,
        direct: LinearSolver,
        options: LinearSolverOptions,
        iterative_chosen: bool = False,
    ) -> None:
        self.name = iterative.name
        self.iterative = iterative
        self.cgnr = cgnr
        self.factory = factory
        self.direct = direct
        self.options = options
        self._rungs: list[str] = []
        self._built_from = np.zeros(0)  # scaled Jacobian values the preconditioner was built from
        self._direct_active = False
        self._pattern: NormalPattern | None = None  # built by the check, handed to the direct solver
        self._pending: list[tuple[str, str]] = []
        self._backend = Backend.CPU
        self._raced = iterative_chosen  # a kept choice (e.g. of a growing graph) is not raced again
        self._chosen = iterative_chosen  # e.g. a preconditioner kept from an earlier solve
        if factory.reference_jacobian is not None and not iterative_chosen:  # choose now, before linearizing
            reference = factory.reference_jacobian
            self._choose(ScaledSystem.from_linearization(reference, np.zeros(reference.shape[0])).jacobian_scaled)

    @property
    def solves_in_float64(self) -> bool:
        """True once the direct rung is taken, or chosen from the start (known at construction
        when the factory has a reference Jacobian, else after :meth:`prepare`)."""
        return self._direct_active

    def _choose(self, built_from: sp.csr_matrix) -> None:
        """Direct from the start or not, judged on ``built_from`` (the preconditioner's matrix)."""
        self._built_from = built_from.data
        reason, self._pattern = self._direct_reason(built_from.shape[1], built_from)
        self._direct_active = reason is not None
        self._pending = [] if reason is None else [("direct", reason)]
        self._chosen = True

    def prepare(self, system: ScaledSystem, policy: PrecisionPolicy, backend: Backend) -> None:
        """Prepare the direct solver for small problems and degenerate preconditioners, else the
        iterative one (whose static preconditioner is built here)."""
        self._backend = backend
        unknowns = system.shape[1]
        # IC(0) has nothing to drop; below tighten_min_parameters the direct rung costs less.
        tighten = self.factory.drop_tolerance > 0.0 and unknowns >= self.options.tighten_min_parameters
        self._rungs = ["refresh", *(["tighten"] if tighten else []), "direct"] if self.options.fallback else []
        if not self._chosen:
            self._choose(system.jacobian_scaled)
        if self._direct_active:
            if self._pattern is not None and isinstance(self.direct, SparseCholeskySolver):
                self.direct.reuse_pattern(self._pattern)
            self.direct.prepare(system, policy, backend)
        else:
            self.iterative.prepare(system, policy, backend)
        self._pattern = None  # handed over, or not needed: not kept alive with the solver

    def _direct_reason(self, unknowns: int, jacobian_scaled: sp.csr_matrix) -> tuple[str | None, NormalPattern | None]:
        """Why this problem goes to the direct solver from the start (or None), and the normal
        matrix pattern the check built (None if it built none)."""
        if unknowns <= self.options.direct_max_parameters:
            return (f"{unknowns} unknowns <= direct_max_parameters ({self.options.direct_max_parameters}): "
                    "cheaper than a preconditioner"), None
        tolerance = self.factory.drop_tolerance
        if not (self.options.fallback and tolerance > 0.0):
            return None, None
        pattern = NormalPattern(jacobian_scaled)
        kept = first_order_kept_fraction(pattern, jacobian_scaled, tolerance)
        if kept < MIN_KEPT_FRACTION:
            return (f"degenerate preconditioner: the drop tolerance {tolerance:g} discards "
                    f"{1.0 - kept:.0%} of the matrix's own entries"), pattern
        return None, pattern

    def solve(
        self, system: ScaledSystem, damping: float, policy: PrecisionPolicy, options: LinearSolverOptions
    ) -> LinearSolveResult:
        """Solve; climb the ladder while the iterative solve fails (module docstring)."""
        events, self._pending = self._pending, []
        if not (self._raced or self._direct_active) and self._rungs and self.options.race_iterations > 0:
            self._raced = True
            result = self._raced_solve(system, damping, policy, options, events)
        else:
            result = self._solve_once(system, damping, policy, options)
        while self._rungs and not self._direct_active and self._preconditioner_failed(result, policy):
            rung = self._rungs.pop(0)
            if rung == "refresh" and not self._moved(system):
                continue
            events.append((rung, f"{result.status.value} after {result.iterations} iterations at "
                                 f"relative residual {result.relative_residual:.1e}"))
            self._climb(rung, system, policy)
            result = self._solve_once(system, damping, policy, options)
        result.events = events + result.events
        return result

    def _raced_solve(self, system: ScaledSystem, damping: float, policy: PrecisionPolicy,
                     options: LinearSolverOptions, events: list[tuple[str, str]]) -> LinearSolveResult:
        """The first solve (module docstring): CG for at most ``race_iterations``; if it has not
        converged by then, the direct solve of the same system, which solves the rest unless its
        numeric solve took more than ``RACE_DIRECT_MARGIN`` times the CPU time CG is projected
        to need (its rate so far), and whose exact step is returned either way."""
        started = time.process_time()
        budget = replace(options, max_iterations=min(options.max_iterations, self.options.race_iterations))
        iterative = self._solve_once(system, damping, policy, budget)
        iterative_s = time.process_time() - started
        if iterative.status is LinearStatus.CONVERGED or iterative.status.failed:
            return iterative
        target = self.iterative.last_rtol if isinstance(self.iterative, InexactNewton) else options.rtol
        reached = min(max(iterative.relative_residual, 1e-300), 1.0 - 1e-12)
        projected_s = iterative_s * max(1.0, np.log(target) / np.log(reached))
        self.direct.prepare(system, policy, self._backend)  # the one-time analysis: not raced
        started = time.process_time()
        direct = self.direct.solve(system, damping, policy, options)
        direct_s = time.process_time() - started
        if direct.status.failed:  # solve it with CG after all
            return self._solve_once(system, damping, policy, options)
        direct.solver = self.direct.name
        if direct_s < RACE_DIRECT_MARGIN * projected_s:
            self._direct_active, self._rungs = True, []
            events.append(("direct", f"raced on the first step: CG at relative residual {iterative.relative_residual:.1e} "
                                     f"after {iterative.iterations} iterations ({iterative_s:.3f} s of CPU, "
                                     f"{projected_s:.3f} s projected to {target:.0e}), the direct solve {direct_s:.3f} s "
                                     f"(< {RACE_DIRECT_MARGIN:g}x)"))
        return direct

    def observe_gain(self, gain_ratio: float) -> bool:
        """Pass the gain ratio to the iterative solver (the direct one has nothing to adapt)."""
        if self._direct_active or not isinstance(self.iterative, GainObserver):
            return False
        return self.iterative.observe_gain(gain_ratio)

    def _solve_once(
        self, system: ScaledSystem, damping: float, policy: PrecisionPolicy, options: LinearSolverOptions
    ) -> LinearSolveResult:
        solver = self.direct if self._direct_active else self.iterative
        result = solver.solve(system, damping, policy, options)
        result.solver = solver.name
        return result

    @staticmethod
    def _preconditioner_failed(result: LinearSolveResult, policy: PrecisionPolicy) -> bool:
        """An untrusted result (cap, too slow, stall above a tenth of the initial residual) with
        fp32 or fp64 vectors. A capped solve that reached a tenth still gives a usable step:
        switching a large problem to the direct solver for it would cost more than it saves."""
        if result.status.failed or result.trusted or policy.vector == np.float16:
            return False
        return result.status in (LinearStatus.MAX_ITERATIONS, LinearStatus.TOO_SLOW, LinearStatus.STALLED)

    def _moved(self, system: ScaledSystem) -> bool:
        """True when ``system``'s scaled Jacobian differs from the preconditioner's by > MOVED."""
        values = system.jacobian_scaled.data
        if values.shape != self._built_from.shape:
            return True
        change = float(np.linalg.norm(values - self._built_from))
        return change > MOVED * float(np.linalg.norm(self._built_from))

    def _climb(self, rung: str, system: ScaledSystem, policy: PrecisionPolicy) -> None:
        if rung == "direct":
            self._direct_active = True
            self.direct.prepare(system, policy, self._backend)
            return
        factory = replace(self.factory, reference_jacobian=None)
        if rung == "tighten":
            factory = replace(factory, drop_tolerance=factory.drop_tolerance * TIGHTEN_FACTOR)
        self.factory = factory
        self._built_from = system.jacobian_scaled.data
        self.cgnr.rebuild_preconditioner(system, policy, factory)
