"""LM driver, CGNR and precision policy on small synthetic problems (no PGO/BA specifics)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest
import scipy.sparse as sp

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.precision import Backend, Precision, ProblemKind, precision_policy, round_to
from mp_slam_ros.solvers.linear.base import LinearStatus, ScaledSystem
from mp_slam_ros.solvers.linear.cgnr import CGNRSolver
from mp_slam_ros.solvers.lm import Linearization, solve
from mp_slam_ros.solvers.summary import LinearSolverOptions, SolverOptions, Termination


@dataclass
class ExpFit:
    """Fit y = a * exp(b * t) + c to samples: a small, well-posed nonlinear problem."""

    t: np.ndarray
    y: np.ndarray
    x0: np.ndarray
    kind: ProblemKind = ProblemKind.PGO

    def initial_state(self) -> np.ndarray:
        return self.x0.copy()

    def _residual(self, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        return round_to(x[0] * np.exp(x[1] * self.t) + x[2] - self.y, dtype)

    def linearize(self, x: np.ndarray, dtype: np.dtype) -> Linearization:
        e = np.exp(x[1] * self.t)
        J = round_to(np.stack([e, x[0] * self.t * e, np.ones_like(self.t)], axis=1), dtype)
        r = self._residual(x, dtype)
        return Linearization(r, sp.csr_matrix(J), 0.5 * float(np.sum(r.astype(np.float64) ** 2)))

    def cost(self, x: np.ndarray, dtype: np.dtype) -> float:
        return 0.5 * float(np.sum(self._residual(x, dtype).astype(np.float64) ** 2))

    def retract(self, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return x + delta

    def state_norm(self, x: np.ndarray) -> float:
        return float(np.linalg.norm(x))


def _exp_fit(offset: float = 0.0) -> ExpFit:
    rng = np.random.default_rng(1)
    t = np.linspace(0.0, 2.0, 60)
    y = 2.0 * np.exp(-1.3 * t) + 0.5 + offset + 1e-3 * rng.standard_normal(t.size)
    return ExpFit(t, y, np.array([1.0, -0.5, offset]))


def _reference_cost(problem: ExpFit) -> float:
    result = solve(problem, CGNRSolver(), SolverOptions(precision=Precision.FP64))
    return result.summary.final_cost


@pytest.mark.parametrize("mode", [Precision.FP64, Precision.FP32, Precision.MIXED])
def test_every_mode_converges_on_exp_fit(mode: Precision) -> None:
    problem = _exp_fit()
    result = solve(problem, CGNRSolver(), SolverOptions(precision=mode, max_iterations=100))
    reference = _reference_cost(problem)
    assert result.summary.final_cost <= reference * (1 + 1e-3)
    np.testing.assert_allclose(result.state, [2.0, -1.3, 0.5], atol=2e-2)
    assert result.summary.cost_history[0] > result.summary.final_cost


def test_fp64_converges_to_tight_tolerance() -> None:
    problem = _exp_fit()
    summary = solve(problem, CGNRSolver(), SolverOptions(precision=Precision.FP64)).summary
    assert summary.converged, summary.message
    assert summary.precision_used is Precision.FP64
    assert summary.escalations == []
    assert len(summary.cost_history) >= 2
    assert summary.timings.total_s >= summary.timings.linear_solve_s


def test_fp16_escalates_when_half_precision_cannot_make_progress() -> None:
    # A large constant offset makes fp16 residuals too coarse to see the cost decrease.
    problem = _exp_fit(offset=900.0)
    summary = solve(problem, CGNRSolver(), SolverOptions(precision=Precision.FP16)).summary
    assert summary.escalations, "expected at least one escalation"
    assert summary.precision_used is not Precision.FP16
    assert summary.final_cost <= _reference_cost(problem) * (1 + 1e-3)


def test_fp16_without_escalation_stays_in_fp16() -> None:
    problem = _exp_fit(offset=900.0)
    options = SolverOptions(precision=Precision.FP16, escalate=False)
    result = solve(problem, CGNRSolver(), options)
    assert result.summary.escalations == []
    assert result.summary.precision_used is Precision.FP16
    rejected = [record for record in result.summary.iterations if not record.accepted]
    assert rejected, "fp16 steps should be rejected where the escalating run moved up"



@pytest.mark.parametrize("mode", list(Precision))
def test_cgnr_solves_damped_system(mode: Precision) -> None:
    rng = np.random.default_rng(0)
    J = sp.random(80, 30, density=0.2, random_state=2, format="csr") + sp.eye(80, 30)
    system = ScaledSystem.from_linearization(J, rng.standard_normal(80))
    damping = 1e-3
    policy = precision_policy(mode, ProblemKind.BA)
    solver = CGNRSolver()
    solver.prepare(system, policy, Backend.CPU)
    result = solver.solve(system, damping, policy, LinearSolverOptions(rtol=1e-8))
    A = (system.jacobian_scaled.T @ system.jacobian_scaled).toarray() + damping * np.eye(30)
    expected = np.linalg.solve(A, system.scaled_gradient())
    error = np.linalg.norm(result.step_scaled - expected) / np.linalg.norm(expected)
    tolerance = {"fp64": 1e-6, "fp32": 1e-4, "mixed": 5e-2, "fp16": 5e-1}[mode.value]
    assert error < tolerance
    if mode is Precision.FP64:
        assert result.status is LinearStatus.CONVERGED


def test_policy_follows_the_recipe() -> None:
    ba = precision_policy("mixed", "ba")
    pgo = precision_policy("mixed", "pgo")
    assert ba.matvec == np.float16 and ba.preconditioner == np.float32
    assert pgo.matvec == np.float32 and pgo.preconditioner == np.float16
    for policy in (ba, pgo):
        assert policy.residual == np.float32 and policy.update == np.float64
    assert precision_policy("fp16", "ba").update == np.float16
    assert ba.escalated().mode is Precision.FP32
    assert precision_policy("fp64", "ba").escalated() is None


def test_bad_options_name_the_key() -> None:
    with pytest.raises(ConfigError, match="precision"):
        SolverOptions(precision="fp8").validate()  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ba.linear.rtol"):
        SolverOptions(linear=LinearSolverOptions(rtol=2.0)).validate("ba")


def test_summary_is_json_serializable() -> None:
    import json

    summary = solve(_exp_fit(), CGNRSolver(), SolverOptions()).summary
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["termination"] in {t.value for t in Termination}
    assert data["precision_used"] == "mixed"


@dataclass
class SteepLine:
    """r = 1e5 (x - 1): the residual fits in float16 at the start, its Jacobian (1e5) does not."""

    start: float = 1.1
    kind: ProblemKind = ProblemKind.PGO

    def initial_state(self) -> np.ndarray:
        return np.array([self.start])

    def linearize(self, x: np.ndarray, dtype: np.dtype) -> Linearization:
        r = round_to(1e5 * (x - 1.0), dtype)
        J = round_to(np.array([[1e5]]), dtype)
        return Linearization(r, sp.csr_matrix(J), self.cost(x, dtype))

    def cost(self, x: np.ndarray, dtype: np.dtype) -> float:
        r = round_to(1e5 * (x - 1.0), dtype)
        return 0.5 * float(np.sum(r.astype(np.float64) ** 2))

    def retract(self, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return x + delta

    def state_norm(self, x: np.ndarray) -> float:
        return float(np.linalg.norm(x))


def test_escalation_relinearizes_in_the_higher_precision() -> None:
    # The fp16 Jacobian overflows; only a re-linearization in fp32 can rescue the step.
    with np.errstate(over="ignore", invalid="ignore"):
        result = solve(SteepLine(), CGNRSolver(), SolverOptions(precision=Precision.FP16))
    summary = result.summary
    assert summary.escalations and summary.escalations[0].from_precision is Precision.FP16
    assert summary.precision_used is not Precision.FP16
    np.testing.assert_allclose(result.state, [1.0], atol=1e-6)


def test_callback_sees_every_iteration_including_the_last() -> None:
    seen: list[int] = []
    summary = solve(
        _exp_fit(), CGNRSolver(), SolverOptions(precision=Precision.FP64),
        callback=lambda record: seen.append(record.iteration),
    ).summary
    assert summary.converged
    assert seen == [record.iteration for record in summary.iterations]


def test_callback_returning_false_stops_the_solve() -> None:
    summary = solve(
        _exp_fit(), CGNRSolver(), SolverOptions(precision=Precision.FP64),
        callback=lambda record: False,
    ).summary
    assert summary.termination is Termination.USER_STOPPED
    assert summary.num_iterations == 1


class SlowExpFit(ExpFit):
    """:class:`ExpFit` whose every linearization takes at least 30 ms."""

    def linearize(self, x: np.ndarray, dtype: np.dtype) -> Linearization:
        time.sleep(0.03)
        return super().linearize(x, dtype)


def test_a_time_budget_stops_the_solve_before_it_would_pass_it_not_converged() -> None:
    fit = _exp_fit()
    unbounded = solve(fit, CGNRSolver(), SolverOptions(precision=Precision.FP64, max_time_s=60.0)).summary
    assert unbounded.converged  # 7 linearizations: >= 0.21 s when each takes 30 ms
    slow = SlowExpFit(fit.t, fit.y, fit.x0)
    summary = solve(slow, CGNRSolver(), SolverOptions(precision=Precision.FP64, max_time_s=0.12)).summary
    assert summary.termination is Termination.TIME_LIMIT and not summary.converged
    assert summary.num_iterations < unbounded.num_iterations and summary.final_cost <= summary.initial_cost
    assert "max_time_s" in summary.message
    with pytest.raises(ConfigError, match="max_time_s"):
        SolverOptions(max_time_s=-1.0).validate()


def test_overflowing_initial_cost_escalates_before_the_first_step() -> None:
    with np.errstate(over="ignore", invalid="ignore"):
        result = solve(SteepLine(start=2.0), CGNRSolver(), SolverOptions(precision=Precision.FP16))
    first = result.summary.escalations[0]
    assert first.iteration == 0 and "not finite" in first.reason
    np.testing.assert_allclose(result.state, [1.0], atol=1e-6)
    with np.errstate(over="ignore", invalid="ignore"):
        options = SolverOptions(precision=Precision.FP16, escalate=False)
        stuck = solve(SteepLine(start=2.0), CGNRSolver(), options).summary
    assert stuck.termination is Termination.NUMERICAL_FAILURE


@dataclass
class AccurateMeasurements:
    """Measurements 1e-6 apart of a value near 1000, weighted 1e6: fp32 residuals cannot see them."""

    kind: ProblemKind = ProblemKind.PGO

    def __post_init__(self) -> None:
        self.measured = 1000.0 + 1e-6 * np.random.default_rng(0).standard_normal(20)

    def initial_state(self) -> np.ndarray:
        return np.array([1000.01])

    def _residual(self, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        return (x.astype(dtype) - self.measured.astype(dtype)) * dtype.type(1e6)

    def linearize(self, x: np.ndarray, dtype: np.dtype) -> Linearization:
        r = self._residual(x, dtype)
        J = sp.csr_matrix(np.full((r.size, 1), 1e6, dtype=dtype))
        return Linearization(r, J, self.cost(x, dtype))

    def cost(self, x: np.ndarray, dtype: np.dtype) -> float:
        return 0.5 * float(np.sum(self._residual(x, dtype).astype(np.float64) ** 2))

    def retract(self, x: np.ndarray, delta: np.ndarray) -> np.ndarray:
        return x + delta

    def state_norm(self, x: np.ndarray) -> float:
        return float(np.linalg.norm(x))


def test_low_precision_residuals_are_checked_against_fp64_before_stopping() -> None:
    problem = AccurateMeasurements()
    optimum = problem.measured.mean()
    result = solve(problem, CGNRSolver(), SolverOptions(precision=Precision.MIXED))
    assert any("at convergence" in e.reason for e in result.summary.escalations)
    assert result.summary.precision_used is Precision.FP64
    np.testing.assert_allclose(result.state, [optimum], rtol=0, atol=1e-9)
    unchecked = solve(problem, CGNRSolver(), SolverOptions(precision=Precision.MIXED, escalate=False))
    assert abs(unchecked.state[0] - optimum) > 1e-6  # what the check prevents: a silent wrong answer


def test_convergence_from_loose_steps_is_certified_or_not_claimed() -> None:
    # One CG iteration per step (steepest descent in the scaled variables): small decreases far
    # from the optimum. A claim from such a step must survive an accurate least-damped solve.
    problem = _exp_fit()
    reference = _reference_cost(problem)
    loose = LinearSolverOptions(rtol=0.5, max_iterations=1, stall_iterations=2)
    options = SolverOptions(precision=Precision.FP64, function_tolerance=1e-3, max_iterations=200, linear=loose)
    summary = solve(problem, CGNRSolver(), options).summary
    assert summary.final_cost <= reference * (1 + 1e-3) or not summary.converged, summary.message  # uncertified: +2e-3


@dataclass
class LinearFit(ExpFit):
    """A linear least-squares problem (one Gauss-Newton step solves it) whose linearization
    may declare its model inexact, as a robust loss with down-weighted blocks does."""

    exact_model: bool = True

    def _residual(self, x: np.ndarray, dtype: np.dtype) -> np.ndarray:
        return round_to(x[0] + x[1] * self.t + x[2] * self.t**2 - self.y, dtype)

    def linearize(self, x: np.ndarray, dtype: np.dtype) -> Linearization:
        J = round_to(np.stack([np.ones_like(self.t), self.t, self.t**2], axis=1), dtype)
        r = self._residual(x, dtype)
        return Linearization(r, sp.csr_matrix(J), self.cost(x, dtype), self.exact_model)


def test_an_inexact_model_needs_two_small_steps_to_claim_convergence() -> None:
    """One small step proves convergence only where the model is exact; under a robust loss
    (a linearly converging IRLS crawl) the last two accepted steps must both be small."""
    base = _exp_fit()
    options = SolverOptions(precision=Precision.FP64, function_tolerance=1e-6, gradient_tolerance=0.0)
    iterations = {}
    for exact in (True, False):
        problem = LinearFit(base.t, base.y, base.x0, exact_model=exact)
        summary = solve(problem, CGNRSolver(), options).summary
        assert summary.termination is Termination.CONVERGED_FUNCTION, summary.message
        iterations[exact] = summary.num_iterations
    assert iterations[False] == iterations[True] + 1


@dataclass
class ShortModelFit(LinearFit):
    """A LinearFit whose model sees half the residual (as IRLS weights that are too small): its
    Gauss-Newton step is half the exact one and predicts a third of what it gains."""

    def linearize(self, x: np.ndarray, dtype: np.dtype) -> Linearization:
        linearization = super().linearize(x, dtype)
        return Linearization(0.5 * linearization.residual, linearization.jacobian, linearization.cost, False)


def test_a_step_that_gains_far_more_than_predicted_is_doubled() -> None:
    base = _exp_fit()
    exact = LinearFit(base.t, base.y, base.x0)
    optimum = solve(exact, CGNRSolver(), SolverOptions(precision=Precision.FP64)).summary.final_cost
    accurate = LinearSolverOptions(rtol=1e-12, max_iterations=20, stall_iterations=20)
    options = SolverOptions(precision=Precision.FP64, max_iterations=1, initial_damping=1e-12, linear=accurate)
    summary = solve(ShortModelFit(base.t, base.y, base.x0), CGNRSolver(), options).summary
    assert summary.iterations[0].gain_ratio == pytest.approx(3.0, rel=1e-2)
    assert summary.final_cost == pytest.approx(optimum, rel=1e-6)  # the doubled step is the exact one
