"""Levenberg-Marquardt driver with a precision policy and automatic escalation.

One outer iteration: linearize (residual and Jacobian in ``policy.residual``), scale the columns
of the Jacobian, solve the damped linear least-squares problem with the problem's linear solver
(in the policy's precisions), round the step to ``policy.update`` and apply it to the state in
float64, evaluate the trial cost and accept or reject the step (Nielsen's damping update).

Escalation (``options.escalate``): a step is redone one rung up the precision ladder
(fp16 -> mixed -> fp32 -> fp64) when the low-precision linear solve produced a non-finite value
or broke down, or when its step increased the cost while the same step computed one rung up does
not. An escalation is kept for the rest of the solve, resets the damping (the damping grown by the
failed low-precision steps would otherwise shrink the steps of the higher rung to a crawl that
the function tolerance mistakes for convergence) and is recorded in the :class:`Summary`.
Before a solve on residuals below fp64 stops (converged or out of damping), its cost is checked
against the fp64 cost of the same state; a relative gap above ``residual_check_tolerance`` means
the residual precision cannot resolve the problem, and the solve goes on one rung up.
A rejected step whose *predicted* relative decrease is already below ``function_tolerance``
ends the solve as converged instead (rounding, not precision, limits further progress there).
An accepted step that gained more than 1.5 times its predicted decrease (the model
underestimates the cost's fall: a reweighted robust loss, the landmark iterations of BA) is
doubled while the cost keeps falling, up to 16 times its length: on bench_ba's 200 windows
solved tight this cut the median LM iterations of RGB-D windows from 52 to 30, and at the BA
defaults one false convergence claim (7 -> 6; the others are plateaus of the non-convex cost).

Convergence is only claimed on evidence (see :class:`SolverOptions`): a small cost decrease
counts only when the model also predicts one and the inner solve is trusted (converged, or
within a tenth of its initial residual: :attr:`LinearSolveResult.trusted`); a capped or stalled
inner solve never ends a solve as converged, it runs on to ``max_iterations`` or
``no_progress`` and the summary says which. A claim from a heavily damped or loosely solved step
is certified first: an accurate solve (a direct one where the linear solver has it) of the
least-damped step at the final point must not both predict and achieve a relative decrease above
``function_tolerance`` (else the solve goes on,
damping reset; an inner solver that cannot solve that model accurately cannot certify). Where the
model is not exact (:attr:`Linearization.exact_model`: robust losses), one small step proves
nothing either: the claim needs the accepted steps of the last ``INEXACT_MODEL_STEPS`` iterations
together to gain less than ``function_tolerance``. The summary records which linear solver produced
each step and every change a fallback ladder made (``linear_solver_changes``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import scipy.sparse as sp

from mp_slam_ros.precision import Precision, PrecisionPolicy, ProblemKind, precision_policy, select_backend
from mp_slam_ros.solvers.linear.base import (
    DirectSolver,
    ExactSolver,
    GainObserver,
    LinearSolver,
    LinearSolveResult,
    LinearStatus,
    ScaledSystem,
)
from mp_slam_ros.solvers.summary import (
    Escalation,
    IterationRecord,
    LinearSolverChange,
    LinearSolverOptions,
    SolverOptions,
    Summary,
    Termination,
    Timings,
)

StateT = TypeVar("StateT")

#: Convergence claims that rest on the model's prediction (certified when the step was damped).
_MODEL_CLAIMS = (Termination.CONVERGED_FUNCTION, Termination.CONVERGED_STEP)
#: A claim from a step damped above this multiple of ``initial_damping``, or solved to a relative
#: residual above the second constant, is certified (:meth:`_certify`).
_CERTIFY_DAMPING_FACTOR = 100.0
_CERTIFY_RELATIVE_RESIDUAL = 1e-2
#: An accepted step whose actual decrease exceeds this multiple of the predicted one is doubled
#: while the cost falls (:meth:`_extend`), at most ``_EXTEND_DOUBLINGS`` times.
_EXTEND_GAIN_RATIO = 1.5
_EXTEND_DOUBLINGS = 4
#: The certificate solves at the claim's damping times each of these factors (:meth:`_certify`).
_CERTIFY_DAMPING_STEPS = (1.0, 1e-2, 1e-4)
#: Inner tolerance (at most) of the certification solve.
_CERTIFY_RTOL = 1e-3
#: Under an inexact model (robust loss), a function-tolerance claim needs this many accepted steps
#: whose summed relative decrease is below the tolerance: a linearly converging crawl (relative
#: decreases such as 7e-5, 1.5e-3, 5e-4 ...) is still ~1% above its minimum, one small step says
#: little. Measured on 200 bench_ba windows (cgnr mixed, tolerance 1e-4): converged_* claims more
#: than 0.1% above the optimum 10 -> 7 with 2 steps (5 with 3), LM iterations on RGB-D windows
#: +29% (+76% with 3); the rest are plateaus of the non-convex robust cost (a landmark that runs
#: to 1e12 m or crosses a ridge after 20-100 more iterations), which no local test sees.
INEXACT_MODEL_STEPS = 2


@dataclass
class Linearization:
    """Residual ``(m,)`` and sparse Jacobian ``(m, n)`` at a state, with its cost (float64).

    For robust losses ``residual``/``jacobian`` are the reweighted ones whose Gauss-Newton model
    matches the robust cost to first order; ``cost`` is the robust cost itself.
    """

    residual: np.ndarray
    jacobian: sp.spmatrix
    cost: float
    #: False when the Gauss-Newton model is only first-order exact in the cost (a robust loss with
    #: down-weighted blocks: the reweighted model overstates the curvature along their residuals,
    #: and LM converges linearly there, each step gaining little while much is left to gain).
    exact_model: bool = True


class LeastSquaresProblem(Protocol[StateT]):
    """A nonlinear least-squares problem the driver can solve."""

    kind: ProblemKind

    def initial_state(self) -> StateT:
        """The starting state (never modified by the driver)."""
        ...

    def linearize(self, state: StateT, dtype: np.dtype) -> Linearization:
        """Residual, Jacobian and cost at ``state``, evaluated in ``dtype`` (cost in float64)."""
        ...

    def cost(self, state: StateT, dtype: np.dtype) -> float:
        """The (robust) cost at ``state``, residuals evaluated in ``dtype``, summed in float64."""
        ...

    def retract(self, state: StateT, delta: np.ndarray) -> StateT:
        """A new state: ``state`` moved by the float64 tangent step ``delta`` ``(n,)``."""
        ...

    def state_norm(self, state: StateT) -> float:
        """A norm of the state for the step-size stopping rule (e.g. of all translations)."""
        ...


@dataclass
class SolveResult(Generic[StateT]):
    """The optimized state and the :class:`Summary` of the solve."""

    state: StateT
    summary: Summary


IterationCallback = Callable[[IterationRecord], Any]


def _made_no_progress(result: LinearSolveResult) -> bool:
    """A stalled solve that never reduced its residual: the precision cannot resolve the problem."""
    return result.status is LinearStatus.STALLED and result.relative_residual >= 1.0


class _Trial:
    """A computed step and its evaluation (internal)."""

    def __init__(self, result: LinearSolveResult, policy: PrecisionPolicy) -> None:
        self.result = result
        self.policy = policy
        self.state: Any = None
        self.cost = float("nan")
        self.step_norm = float("nan")
        self.model_decrease = float("nan")
        self.delta: np.ndarray | None = None  # the step applied to the state (float64)

    @property
    def decreases_cost(self) -> bool:
        return bool(np.isfinite(self.cost)) and self.model_decrease > 0.0


@dataclass
class _Point:
    """A state with its linearization and scaled system (internal; ``None`` when not needed)."""

    state: Any
    linearization: Linearization | None
    system: ScaledSystem | None

    @property
    def cost(self) -> float:
        assert self.linearization is not None
        return self.linearization.cost


def solve(
    problem: LeastSquaresProblem[StateT],
    linear_solver: LinearSolver,
    options: SolverOptions | None = None,
    callback: IterationCallback | None = None,
) -> SolveResult[StateT]:
    """Minimize ``problem`` with Levenberg-Marquardt; see the module docstring.

    ``callback`` is called with each :class:`IterationRecord`; returning ``False`` stops the solve
    with :attr:`Termination.USER_STOPPED`.
    """
    options = options or SolverOptions()
    options.validate()
    return _Driver(problem, linear_solver, options, callback).run()


class _Driver(Generic[StateT]):
    """State of one LM solve (internal; keeps :func:`solve` readable)."""

    def __init__(
        self,
        problem: LeastSquaresProblem[StateT],
        linear_solver: LinearSolver,
        options: SolverOptions,
        callback: IterationCallback | None,
    ) -> None:
        self.problem = problem
        self.linear_solver = linear_solver
        self.options = options
        self.callback = callback
        self.backend = select_backend(options.backend)
        self.policy = precision_policy(options.precision, problem.kind)
        self.timings = Timings()
        self.records: list[IterationRecord] = []
        self.escalations: list[Escalation] = []
        self._results: list[LinearSolveResult] = []
        self.linear_solver_changes: list[LinearSolverChange] = []
        self._iteration = 0
        self._final_gradient = float("nan")
        self._last_jacobian: sp.spmatrix = sp.csr_matrix((0, 0))

    def run(self) -> SolveResult[StateT]:
        started = time.perf_counter()
        self._follow_direct_solver(0)  # a solver that already knows: linearize once, in fp64
        point = self._finite_start(self._point(self.problem.initial_state(), self.policy.residual))
        t0 = time.perf_counter()
        self.linear_solver.prepare(point.system, self.policy, self.backend)
        self.timings.linear_solve_s += time.perf_counter() - t0
        if self._follow_direct_solver(0):
            point = self._point(point.state, self.policy.residual)
        initial_cost = point.linearization.cost
        history = [initial_cost]
        damping, nu = self.options.initial_damping, 2.0
        termination, message = Termination.MAX_ITERATIONS, "reached max_iterations"
        if not np.isfinite(initial_cost):
            termination, message = Termination.NUMERICAL_FAILURE, "initial cost is not finite"
        elif self._zero(initial_cost):
            termination, message = Termination.CONVERGED_FUNCTION, "initial cost below zero_cost_per_residual"
        elif self._gradient_converged(point.system):
            termination, message = Termination.CONVERGED_GRADIENT, "initial gradient is zero"
        else:
            loop_started = time.perf_counter()
            for iteration in range(1, self.options.max_iterations + 1):
                self._iteration = iteration
                escalations_before = len(self.escalations)
                trial, point = self._step(point, damping, iteration)
                accepted = trial.decreases_cost and trial.cost < point.cost
                rho = (point.cost - trial.cost) / trial.model_decrease if accepted else -np.inf
                if rho > _EXTEND_GAIN_RATIO:
                    trial = self._extend(point, trial)
                tightened = self._observe_gain(rho)
                record = IterationRecord(
                    iteration, trial.cost, trial.step_norm, damping, trial.policy.mode,
                    trial.result.iterations, trial.result.relative_residual,
                    trial.result.status.value, accepted, trial.result.solver or self.linear_solver.name, rho,
                )
                self.records.append(record)
                done: tuple[Termination, str] | None
                if accepted:
                    damping *= max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)
                    nu = 2.0
                    history.append(trial.cost)
                    done = self._converged(point, trial, history)
                    point = self._point(trial.state, self.policy.residual, linearize=done is None)
                    if done is None and self._gradient_converged(point.system):
                        done = Termination.CONVERGED_GRADIENT, "gradient below tolerance"
                elif (self._negligible(trial, point.cost) and trial.result.trusted
                      and self._settled(point, history, history[-1])):  # this step gained 0
                    done = Termination.CONVERGED_FUNCTION, (
                        "predicted cost decrease below tolerance (precision floor)"
                    )
                elif tightened:  # a loose inner solve made the poor step: solve it again, tighter
                    done = None
                else:
                    damping *= nu
                    nu *= 2.0
                    done = None
                    if damping > self.options.max_damping:
                        done = Termination.NO_PROGRESS, "damping exceeded max_damping" + (
                            "" if trial.result.trusted
                            else f" (linear solver {trial.result.status.value} at relative "
                            f"residual {trial.result.relative_residual:.1e})"
                        )
                if len(self.escalations) > escalations_before:  # a higher rung: trust it afresh
                    damping, nu = self.options.initial_damping, 2.0
                if done is not None and done[0] in _MODEL_CLAIMS and self._needs_certificate(record):
                    point, certified, lower = self._certify(point, min(damping, self.options.initial_damping))
                    if not certified:  # a less damped model still sees a decrease: go on from it
                        done, damping, nu = None, lower, 2.0
                        if point.cost < history[-1]:  # from the certificate's step, which gained
                            history.append(point.cost)
                if done is not None and (done[0].converged or done[0] is Termination.NO_PROGRESS):
                    checked = self._residual_check(point.state, history[-1], iteration)
                    if checked is not None:  # the low-precision cost misjudged: go on, one rung up
                        point, done = checked, None
                        damping, nu = self.options.initial_damping, 2.0
                if self.callback is not None and self.callback(record) is False and done is None:
                    done = Termination.USER_STOPPED, "stopped by callback"
                if done is None and iteration < self.options.max_iterations:
                    done = self._out_of_time(started, loop_started, iteration)
                if done is not None:
                    termination, message = done
                    break
                if self._follow_direct_solver(iteration):
                    point = self._point(point.state, self.policy.residual)
        self.timings.total_s = time.perf_counter() - started
        jacobian = self._last_jacobian
        parts = self.policy.describe()
        if any(r.solver.startswith("cholesky") for r in self._results[-1:]):
            parts["linear_solve"] = "fp64 direct"
        summary = Summary(
            termination=termination,
            message=message,
            precision_requested=self.options.precision,
            precision_used=self.policy.mode,
            initial_cost=initial_cost,
            final_cost=history[-1],
            cost_history=history,
            iterations=self.records,
            escalations=self.escalations,
            linear_solver=self.linear_solver.name,
            backend=self.backend,
            num_residuals=int(jacobian.shape[0]),
            num_parameters=int(jacobian.shape[1]),
            jacobian_nnz=int(jacobian.nnz),
            preconditioner_shifts=max((r.shifts for r in self._results), default=0),
            timings=self.timings,
            linear_solver_changes=self.linear_solver_changes,
            precision_parts=parts,
            final_relative_gradient=self._final_gradient,
        )
        return SolveResult(point.state, summary)

    def _out_of_time(self, started: float, loop_started: float, iterations: int) -> tuple[Termination, str] | None:
        """``time_limit`` when one more iteration of the mean duration so far would end past
        ``options.max_time_s`` (counted from ``started``; 0: no budget), else None."""
        budget = self.options.max_time_s
        if budget <= 0.0:
            return None
        now = time.perf_counter()
        per_iteration = (now - loop_started) / iterations
        if now - started + per_iteration <= budget:
            return None
        return Termination.TIME_LIMIT, (
            f"stopped after {now - started:.3f} s: one more iteration (~{per_iteration:.3f} s) "
            f"would pass max_time_s {budget:g}"
        )

    def _point(self, state: StateT, dtype: np.dtype, linearize: bool = True) -> _Point:
        """``state`` with its linearization and scaled system in ``dtype`` (unless not needed)."""
        if not linearize:
            return _Point(state, None, None)
        t0 = time.perf_counter()
        linearization = self.problem.linearize(state, dtype)
        t1 = time.perf_counter()
        system = ScaledSystem.from_linearization(linearization.jacobian, linearization.residual)
        self.timings.jacobian_s += t1 - t0
        self.timings.linear_solve_s += time.perf_counter() - t1
        self._last_jacobian = linearization.jacobian
        return _Point(state, linearization, system)

    def _finite_start(self, point: _Point) -> _Point:
        """Escalate before the first iteration while the initial cost overflows (e.g. in fp16)."""
        while not np.isfinite(point.cost) and self.options.escalate:
            higher = self.policy.escalated()
            if higher is None:
                break
            reason = f"initial cost not finite in {self.policy.residual.name}"
            self.escalations.append(Escalation(0, self.policy.mode, higher.mode, reason))
            if higher.residual != self.policy.residual:
                point = self._point(point.state, higher.residual)
            self.policy = higher
        return point

    def _follow_direct_solver(self, iteration: int) -> bool:
        """Move residuals below fp64 up to fp64 once the linear solver solves directly in
        float64 (:class:`~mp_slam_ros.solvers.linear.base.DirectSolver`: small problems, a
        degenerate preconditioner, the last fallback rung): on that path low-precision
        residuals save nothing and cost accuracy (an fp32 model of a very anisotropic graph
        needs one more LM iteration). Recorded as an escalation; True if it moved them (the
        caller re-linearizes)."""
        solver = self.linear_solver
        if (not self.options.escalate or self.policy.residual == np.float64
                or not (isinstance(solver, DirectSolver) and solver.solves_in_float64)):
            return False
        higher = precision_policy(Precision.FP64, self.policy.kind)
        reason = (f"the linear solver is direct (float64): {self.policy.residual.name} "
                  "residuals would only cost accuracy")
        self.escalations.append(Escalation(iteration, self.policy.mode, higher.mode, reason))
        self.policy = higher
        return True

    def _needs_certificate(self, record: IterationRecord) -> bool:
        """A convergence claim from a heavily damped step, or from an inner solve that did not
        converge or stopped above a relative residual of 1e-2, needs a certificate."""
        return (
            record.damping > _CERTIFY_DAMPING_FACTOR * self.options.initial_damping
            or record.linear_status != LinearStatus.CONVERGED.value
            or record.linear_relative_residual > _CERTIFY_RELATIVE_RESIDUAL
        )

    def _certify(self, point: _Point, damping: float) -> tuple[_Point, bool, float]:
        """Check a convergence claim with less damped models at ``point`` (linearized here).

        A small decrease from a heavily damped step, or from an inner solve that missed the
        low-curvature directions, says little about the distance to the optimum (an LM crawl).
        The steps of ``damping`` (the smaller of the last one and ``initial_damping``) times each
        of :data:`_CERTIFY_DAMPING_STEPS` are computed (exactly where the linear solver can:
        :class:`~mp_slam_ros.solvers.linear.base.ExactSolver`; else with an inner tolerance of at
        most 1e-3) and tried:
        the claim stands if every solve converged and no step both predicts and achieves a
        relative decrease above ``function_tolerance``. Returns ``(point, certified, damping to
        go on with)``: a step that gained is taken (the point returned is its end) and its
        damping goes on, else ``initial_damping``. (A flat valley
        of a monocular window: steps of 4e-3 at a damping of 1e-4 gain 3e-7 of the cost, those
        of 1.4 at 4e-7 gain 1e-5, and the crawl from there ends 1e-3 lower.) The exact solve
        matters: CGNR's truncated-Newton test stopped certificate solves at relative residuals of
        0.1-0.4 whose models predicted 3e-5 where 1.4e-3 was left; with BA's direct Schur solve
        for the certificate, bench_ba's 200 windows at the BA defaults (cgnr mixed) have 5 false
        claims instead of 6 and 191 instead of 190 within 0.1% of the optimum.
        """
        if point.linearization is None:
            point = self._point(point.state, self.policy.residual)
        linear = self.options.linear
        accurate = replace(linear, rtol=min(linear.rtol, _CERTIFY_RTOL), max_iterations=4 * linear.max_iterations)
        tolerance = self.options.function_tolerance * point.cost
        for factor in _CERTIFY_DAMPING_STEPS:
            trial = self._try(point, damping * factor, self.policy, accurate, exact=True)
            if trial.result.status is not LinearStatus.CONVERGED:
                return point, False, self.options.initial_damping
            if trial.decreases_cost and point.cost - trial.cost > tolerance and trial.model_decrease > tolerance:
                return self._point(trial.state, self.policy.residual), False, damping * factor
        return point, True, damping

    def _residual_check(self, state: StateT, cost: float, iteration: int) -> _Point | None:
        """Before stopping on low-precision residuals, compare ``cost`` with the fp64 cost.

        When they differ by more than ``residual_check_tolerance`` (relative), the residual
        precision cannot resolve this problem (e.g. very accurate measurements whose whitened
        residuals cancel in fp32): escalate to the first rung with more precise residuals and
        return the re-linearized point to go on from; else ``None``.
        """
        tolerance = self.options.residual_check_tolerance
        if not self.options.escalate or tolerance == 0.0 or self.policy.residual == np.float64:
            return None
        t0 = time.perf_counter()
        cost_fp64 = self.problem.cost(state, np.dtype(np.float64))
        self.timings.update_s += time.perf_counter() - t0
        # Relative to the fp64 cost, but never to less than the zero-cost floor: below it the
        # state fits every measurement (a graph without loops) and the gap is rounding noise.
        floor = self._zero_cost
        gap = abs(cost_fp64 - cost) / max(abs(cost_fp64), floor, float(np.finfo(np.float64).tiny))
        higher = self.policy.escalated()
        while higher is not None and higher.residual == self.policy.residual:
            higher = higher.escalated()
        if gap <= tolerance or higher is None:
            return None
        reason = f"{self.policy.residual.name} cost off by {gap:.1e} (relative) at convergence"
        self.escalations.append(Escalation(iteration, self.policy.mode, higher.mode, reason))
        self.policy = higher
        return self._point(state, higher.residual)

    @property
    def _zero_cost(self) -> float:
        """The cost counted as zero: ``zero_cost_per_residual`` times the residuals."""
        return self.options.zero_cost_per_residual * self._last_jacobian.shape[0]

    def _zero(self, cost: float) -> bool:
        """True for a cost at or below the zero-cost floor (when the floor is enabled)."""
        return self._zero_cost > 0.0 and cost <= self._zero_cost

    def _observe_gain(self, gain_ratio: float) -> bool:
        """Report the gain ratio to an adaptive linear solver; True if its next solve is tighter."""
        if isinstance(self.linear_solver, GainObserver):
            return self.linear_solver.observe_gain(gain_ratio)
        return False

    def _gradient_converged(self, system: ScaledSystem) -> bool:
        """The first-order test: ``max |S J^T r| / ||r||`` below ``gradient_tolerance``."""
        gradient = system.scaled_gradient()
        residual_norm = float(np.linalg.norm(system.rhs))
        largest = float(np.max(np.abs(gradient), initial=0.0))
        self._final_gradient = largest / residual_norm if residual_norm > 0.0 else 0.0
        return self._final_gradient <= self.options.gradient_tolerance

    def _step(self, point: _Point, damping: float, iteration: int) -> tuple[_Trial, _Point]:
        """Compute and evaluate one step, escalating precision when it fails (module doc).

        Returns the trial and the point it was computed from: after an escalation to a higher
        residual precision, that is the state re-linearized in the new precision.
        """
        trial = self._try(point, damping, self.policy)
        while self.options.escalate and self.policy.escalated() is not None:
            failed_solve = trial.result.status.failed or _made_no_progress(trial.result)
            if not failed_solve and trial.decreases_cost and trial.cost < point.cost:
                break
            if not failed_solve and self._negligible(trial, point.cost):
                break  # converged to the precision floor: a higher rung has nothing to gain
            higher = self.policy.escalated()
            assert higher is not None
            higher_point = point
            if higher.residual != self.policy.residual:
                higher_point = self._point(point.state, higher.residual)
            redo = self._try(higher_point, damping, higher)
            if not failed_solve and not (redo.decreases_cost and redo.cost < higher_point.cost):
                break  # a genuine LM rejection, not a precision failure: stay where we are
            reason = (
                f"linear solve {trial.result.status.value}"
                if failed_solve
                else f"cost increased ({trial.cost:.6g} >= {point.cost:.6g})"
            )
            self.escalations.append(Escalation(iteration, self.policy.mode, higher.mode, reason))
            self.policy, trial, point = higher, redo, higher_point
        return trial, point

    def _try(
        self, point: _Point, damping: float, policy: PrecisionPolicy, linear: LinearSolverOptions | None = None,
        exact: bool = False,
    ) -> _Trial:
        system = point.system
        assert system is not None
        t0 = time.perf_counter()
        solver = self.linear_solver
        solve = solver.solve_exactly if exact and isinstance(solver, ExactSolver) else solver.solve
        result = solve(system, damping, policy, linear or self.options.linear)
        t1 = time.perf_counter()
        self.timings.linear_solve_s += t1 - t0
        self._results.append(result)
        self.linear_solver_changes.extend(
            LinearSolverChange(self._iteration, action, reason) for action, reason in result.events
        )
        trial = _Trial(result, policy)
        if result.status.failed or not np.all(np.isfinite(result.step_scaled)):
            self.timings.update_s += time.perf_counter() - t1
            return trial
        step_scaled = result.step_scaled
        delta = system.unscale(step_scaled).astype(policy.update).astype(np.float64)
        trial.step_norm = float(np.linalg.norm(delta))
        trial.delta = delta
        predicted = system.jacobian_scaled @ step_scaled - system.rhs
        trial.model_decrease = 0.5 * (
            float(system.rhs @ system.rhs) - float(predicted @ predicted)
        )
        trial.state = self.problem.retract(point.state, delta)
        trial.cost = self.problem.cost(trial.state, policy.residual)
        self.timings.update_s += time.perf_counter() - t1
        return trial

    def _extend(self, point: _Point, trial: _Trial) -> _Trial:
        """Double an accepted step while the cost keeps falling (at most
        :data:`_EXTEND_DOUBLINGS` times); the best trial (its model decrease is the step's own)."""
        assert trial.delta is not None
        t0 = time.perf_counter()
        best = trial
        for doubling in range(1, _EXTEND_DOUBLINGS + 1):
            delta = (2.0 ** doubling) * trial.delta
            state = self.problem.retract(point.state, delta)
            cost = self.problem.cost(state, trial.policy.residual)
            if not cost < best.cost:
                break
            best = _Trial(trial.result, trial.policy)
            best.state, best.cost, best.delta = state, cost, delta
            best.step_norm, best.model_decrease = float(np.linalg.norm(delta)), trial.model_decrease
        self.timings.update_s += time.perf_counter() - t0
        return best

    def _negligible(self, trial: _Trial, cost: float) -> bool:
        """True when even the model predicts a relative decrease below ``function_tolerance``.

        A step whose model *increase* exceeds that tolerance is a broken inner solve, not a
        converged one: it is not negligible (rounding may leave a tiny negative prediction).
        """
        decrease, tolerance = trial.model_decrease, self.options.function_tolerance * cost
        return bool(np.isfinite(decrease)) and -tolerance <= decrease <= tolerance

    def _converged(
        self, point: _Point, trial: _Trial, history: list[float]
    ) -> tuple[Termination, str] | None:
        """Convergence after an accepted step from ``point``, claimed only on evidence (module
        docstring); ``history`` holds the accepted costs, ``trial.cost`` last."""
        opts = self.options
        if not trial.result.trusted:
            return None  # a poor inner solve: its small step or decrease proves nothing
        old_cost = point.cost
        small_decrease = old_cost - trial.cost <= opts.function_tolerance * old_cost
        if small_decrease and self._negligible(trial, old_cost) and self._settled(point, history[:-1], trial.cost):
            return Termination.CONVERGED_FUNCTION, "relative cost decrease below tolerance"
        if self._zero(trial.cost):
            return Termination.CONVERGED_FUNCTION, "cost below zero_cost_per_residual"
        x_norm = self.problem.state_norm(trial.state)
        if trial.step_norm <= opts.parameter_tolerance * (x_norm + opts.parameter_tolerance):
            return Termination.CONVERGED_STEP, "step below tolerance"
        return None

    def _settled(self, point: _Point, previous: list[float], cost: float) -> bool:
        """True unless the model at ``point`` is inexact and the accepted costs ``previous``
        (oldest first) then ``cost`` gained more than ``function_tolerance`` (relative) over the
        last :data:`INEXACT_MODEL_STEPS` steps, or there were fewer steps than that."""
        if point.linearization is None or point.linearization.exact_model:
            return True
        steps = INEXACT_MODEL_STEPS - 1
        if len(previous) <= steps:
            return False
        return previous[-1 - steps] - cost <= self.options.function_tolerance * cost
