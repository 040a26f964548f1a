"""Robust inexact Newton for PGO: honest stopping, the fallback ladder, the small-problem path.

Each failure class of issue 9 is reproduced on a generated graph and the solve must either reach
the reference (fp64 Cholesky) chi2 or say that it did not (no ``converged_*`` termination).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mp_slam_ros.precision import Precision, precision_policy
from mp_slam_ros.sim.pose_graphs import GraphNoise, grid_graph
from mp_slam_ros.solvers.linear.base import LinearSolveResult, LinearStatus
from mp_slam_ros.solvers.linear.ichol import IncompleteCholeskyFactory
from mp_slam_ros.solvers.linear.inexact_newton import InexactNewton
from mp_slam_ros.solvers.pgo import default_options, optimize_pose_graph
from mp_slam_ros.solvers.summary import SolverOptions, Termination


def _options(precision: Precision = Precision.FP64, **linear: object) -> SolverOptions:
    options = default_options(precision=precision)
    # No direct path from the start and no race: these tests are of the iterative path and its ladder.
    return replace(options, linear=replace(options.linear, **{"direct_max_parameters": 0, "race_iterations": 0, **linear}))


@pytest.fixture(scope="module")
def city() -> object:
    """A 2-D Manhattan grid, 1,500 poses, every revisit closed, dead-reckoning start (chi2 ~1e7)."""
    return grid_graph(1500, dim=2, seed=3, noise=GraphNoise(0.05, 0.02), loop_probability=1.0).graph


@pytest.fixture(scope="module")
def reference_chi2(city: object) -> float:
    return optimize_pose_graph(city, default_options(precision=Precision.FP64), solver="cholesky").final_chi2


def test_capped_inner_solves_never_claim_convergence(city: object, reference_chi2: float) -> None:
    # 3 CG iterations per step and no fallback: every step is poor, the solve cannot finish.
    options = replace(_options(max_iterations=3, fallback=False, rate_check_iterations=0), max_iterations=15)
    result = optimize_pose_graph(city, options)
    assert result.final_chi2 > reference_chi2 * 1.001
    assert not result.summary.converged, result.summary.message
    assert result.summary.termination in (Termination.MAX_ITERATIONS, Termination.NO_PROGRESS)


@pytest.mark.parametrize("precision", [Precision.FP64, Precision.FP32, Precision.MIXED])
def test_a_failing_preconditioner_climbs_the_ladder_to_the_reference(
    city: object, reference_chi2: float, precision: Precision
) -> None:
    # A drop tolerance of 0.05 keeps a factor as large as IC(0) but weak: CG crawls past its cap (80).
    weak = IncompleteCholeskyFactory(drop_tolerance=0.05)
    result = optimize_pose_graph(city, _options(precision, max_iterations=80), preconditioner=weak)
    summary = result.summary
    actions = [change.action for change in summary.linear_solver_changes]
    assert actions and set(actions) <= {"refresh", "direct"}, actions  # 1,500 poses: no tighten rung
    assert actions[-1] == "direct" or "refresh" in actions
    assert result.final_chi2 <= reference_chi2 * 1.001
    assert summary.converged, summary.message
    if "direct" in actions:
        assert summary.iterations[-1].linear_solver == "cholesky"
        assert summary.precision_parts["linear_solve"] == "fp64 direct"
    assert all(change.reason for change in summary.linear_solver_changes)


def test_without_the_ladder_a_failing_preconditioner_is_reported(city: object, reference_chi2: float) -> None:
    weak = IncompleteCholeskyFactory(drop_tolerance=0.05)
    options = replace(_options(fallback=False, max_iterations=80), max_iterations=8)
    result = optimize_pose_graph(city, options, preconditioner=weak)
    if result.final_chi2 > reference_chi2 * 1.001:
        assert not result.summary.converged, result.summary.message
    assert not result.summary.linear_solver_changes


def test_odometry_start_reaches_the_reference_in_every_mode(city: object, reference_chi2: float) -> None:
    for precision in (Precision.FP64, Precision.FP32, Precision.MIXED):
        result = optimize_pose_graph(city, _options(precision))
        assert result.summary.converged, result.summary.message
        assert result.final_chi2 <= reference_chi2 * 1.001
        assert result.summary.final_relative_gradient < 1e-3


def test_refresh_only_when_the_jacobian_moved_and_tighten_only_on_large_problems(city: object) -> None:
    weak = IncompleteCholeskyFactory(drop_tolerance=0.05)
    large = _options(Precision.FP64, max_iterations=80, tighten_min_parameters=0)
    actions = [c.action for c in optimize_pose_graph(city, large, preconditioner=weak).summary.linear_solver_changes]
    assert "tighten" in actions, actions
    near = optimize_pose_graph(city, default_options(precision=Precision.FP64), solver="cholesky").graph
    at_optimum = optimize_pose_graph(near, _options(Precision.FP64, max_iterations=80), preconditioner=weak)
    first = at_optimum.summary.linear_solver_changes[:1]
    assert not first or first[0].action == "direct"  # at the optimum the Jacobian is the reference one


def test_a_degenerate_preconditioner_sends_the_solve_to_the_direct_solver(city: object, reference_chi2: float) -> None:
    # Dropping at 0.5 keeps a factor much sparser than the matrix itself (as very anisotropic
    # information does with the default tolerance): no CG is attempted with it.
    result = optimize_pose_graph(city, _options(Precision.MIXED), preconditioner=IncompleteCholeskyFactory(0.5))
    first = result.summary.linear_solver_changes[0]
    assert (first.iteration, first.action) == (1, "direct") and "degenerate" in first.reason
    assert result.summary.linear_solvers_used == ["cholesky"]
    assert result.final_chi2 <= reference_chi2 * 1.001 and result.summary.converged


def test_small_problems_use_the_direct_solver_and_say_so() -> None:
    graph = grid_graph(120, dim=3, seed=11).graph  # 714 unknowns, loop closures
    result = optimize_pose_graph(graph, default_options(precision=Precision.MIXED))
    summary = result.summary
    assert summary.linear_solvers_used == ["cholesky"]
    assert summary.linear_solver_changes[0].action == "direct"
    assert "direct_max_parameters" in summary.linear_solver_changes[0].reason
    assert summary.precision_parts["linear_solve"] == "fp64 direct"
    assert summary.precision_parts["mode"] == summary.precision_used.value
    recipe = optimize_pose_graph(graph, _options(Precision.MIXED))
    assert recipe.summary.linear_solvers_used == ["cgnr_ic"]
    assert recipe.final_chi2 == pytest.approx(result.final_chi2, rel=1e-5)


class _Recorder:
    """An inner solver that records the tolerance it was asked for."""

    name = "recorder"

    def __init__(self) -> None:
        self.rtols: list[float] = []

    def prepare(self, system, policy, backend) -> None:  # noqa: ANN001
        del system, policy, backend

    def solve(self, system, damping, policy, options) -> LinearSolveResult:  # noqa: ANN001
        self.rtols.append(options.rtol)
        return LinearSolveResult(np.zeros(system.shape[1]), LinearStatus.CONVERGED, 1, options.rtol)


def test_forcing_tightens_after_a_poor_gain_and_relaxes_after_good_ones() -> None:
    from mp_slam_ros.precision import Backend
    from mp_slam_ros.solvers.linear.base import ScaledSystem
    import scipy.sparse as sp

    system = ScaledSystem.from_linearization(sp.csr_matrix(np.eye(4)), np.ones(4))
    policy = precision_policy(Precision.FP64, "pgo")
    inner = _Recorder()
    forcing = InexactNewton(inner, eta_max=0.01)
    forcing.prepare(system, policy, Backend.CPU)
    linear = replace(default_options().linear, rtol=1e-4)
    forcing.solve(system, 0.0, policy, linear)
    assert inner.rtols[-1] == pytest.approx(0.01)
    assert forcing.observe_gain(-np.inf) is True  # rejected step from a loose solve: retry tighter
    forcing.solve(system, 0.0, policy, linear)
    assert inner.rtols[-1] == pytest.approx(1e-3)
    assert forcing.observe_gain(0.1) is True
    forcing.solve(system, 0.0, policy, linear)
    assert inner.rtols[-1] == pytest.approx(1e-4)
    assert forcing.observe_gain(-np.inf) is False  # already at rtol: the driver must damp instead
    forcing.observe_gain(0.9)
    forcing.observe_gain(0.9)
    forcing.solve(system, 0.0, policy, linear)
    assert inner.rtols[-1] == pytest.approx(0.01)


def test_a_slow_first_solve_is_raced_against_the_direct_solver(city: object, reference_chi2: float) -> None:
    # race_iterations=1: CG gets one iteration, then the race; the exact step is returned either way and
    # the faster path (CPU time: either may win here) solves the rest.
    result = optimize_pose_graph(city, _options(Precision.MIXED, race_iterations=1))
    summary = result.summary
    assert summary.iterations[0].linear_solver == "cholesky"
    direct = [c for c in summary.linear_solver_changes if c.action == "direct"]
    assert all("raced on the first step" in c.reason for c in direct)
    later = {record.linear_solver for record in summary.iterations[1:]}
    assert later == ({"cholesky"} if direct else {"cgnr_ic"})
    assert summary.converged and result.final_chi2 <= reference_chi2 * 1.001
    plain = optimize_pose_graph(city, _options(Precision.MIXED))  # race_iterations=0: never raced
    assert plain.summary.iterations[0].linear_solver == "cgnr_ic"
