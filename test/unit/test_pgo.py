"""Pose-graph optimization: convergence of every mode, agreement of the linear solvers, escalation."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.precision import Precision
from mp_slam_ros.sim.pose_graphs import GraphNoise, grid_graph, household_graph, sphere_graph
from mp_slam_ros.solvers.linear.cholesky import SparseCholeskySolver, cholmod_available
from mp_slam_ros.solvers.linear.ichol import IncompleteCholeskyFactory
from mp_slam_ros.solvers.lm import solve
from mp_slam_ros.solvers.pgo import PoseGraphProblem, default_options, optimize_pose_graph
from mp_slam_ros.solvers.robust import RobustLoss
from mp_slam_ros.solvers.summary import LinearSolverOptions, SolverOptions, Termination

_NOISE = GraphNoise(correlated=True)
_GRAPHS = {
    "household3d": lambda: household_graph(150, dim=3, seed=1, noise=_NOISE).graph,
    "grid2d": lambda: grid_graph(150, dim=2, seed=2, noise=_NOISE).graph,
    "sphere3d": lambda: sphere_graph(100, seed=3).graph,
}
# direct_max_parameters=0, race_iterations=0: these graphs are small enough for the direct path,
# the tests are of the recipe
_TIGHT = dict(function_tolerance=1e-14, gradient_tolerance=1e-14, parameter_tolerance=1e-14,
              linear=LinearSolverOptions(rtol=1e-10, max_iterations=500, stall_iterations=10, direct_max_parameters=0,
                                         race_iterations=0))


def _recipe(**overrides: object) -> SolverOptions:
    """PGO defaults with the iterative recipe forced even on small graphs (no direct shortcut, no race)."""
    options = default_options(**overrides)
    return replace(options, linear=replace(options.linear, direct_max_parameters=0, race_iterations=0))


def _reference(graph: PoseGraph):  # noqa: ANN202
    return optimize_pose_graph(graph, default_options(precision=Precision.FP64, **_TIGHT), solver="cholesky")


@pytest.mark.parametrize("name", sorted(_GRAPHS))
def test_fp64_cgnr_ic_agrees_with_cholesky_to_1e10(name: str) -> None:
    graph = _GRAPHS[name]()
    reference = _reference(graph)
    result = optimize_pose_graph(graph, default_options(precision=Precision.FP64, **_TIGHT), solver="cgnr_ic")
    assert reference.summary.converged and result.summary.converged
    assert result.final_chi2 < 0.1 * result.initial_chi2
    assert abs(result.final_chi2 - reference.final_chi2) <= 1e-10 * reference.final_chi2
    np.testing.assert_allclose(result.graph.T_world_node, reference.graph.T_world_node, atol=1e-6)
    assert result.summary.precision_used is Precision.FP64 and not result.summary.escalations


@pytest.mark.parametrize("mode", [Precision.FP32, Precision.MIXED, Precision.FP16])
@pytest.mark.parametrize("name", ["household3d", "grid2d"])
def test_every_precision_mode_converges(name: str, mode: Precision) -> None:
    graph = _GRAPHS[name]()
    reference = _reference(graph).final_chi2
    result = optimize_pose_graph(graph, _recipe(precision=mode))
    tolerance = {Precision.FP32: 1e-6, Precision.MIXED: 1e-6, Precision.FP16: 1e-3}[mode]
    assert result.final_chi2 <= reference * (1.0 + tolerance)
    if mode is not Precision.FP16:
        assert result.summary.converged, result.summary.message
        assert result.summary.precision_used is mode


def test_input_graph_is_not_modified_and_gauge_stays_fixed() -> None:
    graph = household_graph(80, seed=5, noise=_NOISE, initial="perturbed").graph
    before = graph.T_world_node.copy()
    result = optimize_pose_graph(graph)
    np.testing.assert_array_equal(graph.T_world_node, before)
    np.testing.assert_array_equal(result.graph.T_world_node[0], before[0])
    assert not np.allclose(result.graph.T_world_node[1:], before[1:])
    fixed = optimize_pose_graph(graph, fixed_ids=np.array([10, 40])).graph.T_world_node
    np.testing.assert_array_equal(fixed[[10, 40]], before[[10, 40]])


def _badly_scaled(graph: PoseGraph) -> PoseGraph:
    """The same graph 3 km from the origin (float16 spacing there: 2 m) with 10x stiffer edges."""
    T = graph.T_world_node.copy()
    T[:, :3, 3] += 3.0e3
    return PoseGraph(graph.node_ids, T, graph.edge_from, graph.edge_to, graph.T_from_to,
                     graph.information * 1e2, graph.is_loop)


def test_badly_scaled_problem_escalates_from_fp16_and_still_converges() -> None:
    graph = _badly_scaled(grid_graph(150, dim=3, seed=6, initial="perturbed").graph)
    reference = _reference(graph).final_chi2
    summary = optimize_pose_graph(graph, _recipe(precision=Precision.FP16)).summary
    assert summary.escalations, "fp16 cannot represent poses 3 km away to better than 2 m"
    assert summary.escalations[0].from_precision is Precision.FP16
    assert summary.precision_used is not Precision.FP16
    result = optimize_pose_graph(graph, _recipe(precision=Precision.FP16))
    assert result.final_chi2 <= reference * (1.0 + 1e-3)


def test_naive_fp16_without_escalation_is_worse() -> None:
    graph = grid_graph(150, dim=3, seed=7, initial="perturbed").graph
    reference = _reference(graph).final_chi2
    options = _recipe(precision=Precision.FP16, escalate=False, max_iterations=30)
    result = optimize_pose_graph(graph, options)
    assert result.summary.precision_used is Precision.FP16 and not result.summary.escalations
    assert result.final_chi2 > reference * (1.0 + 1e-6)


def test_residuals_and_jacobians_match_finite_differences() -> None:
    for graph in (household_graph(40, dim=3, seed=8, noise=_NOISE, initial="perturbed").graph,
                  grid_graph(40, dim=2, seed=9, noise=_NOISE, initial="perturbed").graph):
        problem = PoseGraphProblem(graph)
        state = problem.initial_state()
        linearization = problem.linearize(state, np.dtype(np.float64))
        J = linearization.jacobian.toarray()
        h = 1e-6
        for column in range(0, J.shape[1], 7):
            step = np.zeros(J.shape[1])
            step[column] = h
            plus = problem.linearize(problem.retract(state, step), np.dtype(np.float64)).residual
            minus = problem.linearize(problem.retract(state, -step), np.dtype(np.float64)).residual
            np.testing.assert_allclose((plus - minus) / (2 * h), J[:, column], atol=1e-5 * np.abs(J).max())
        assert problem.chi2(state) == pytest.approx(2.0 * linearization.cost)


@pytest.mark.parametrize("dim", [2, 3])
def test_a_robust_loss_reweights_each_edge_and_its_gradient_is_the_robust_costs(dim: int) -> None:
    """Under Cauchy on the loop edges only: the cost is ``1/2 sum rho`` there and plain elsewhere,
    the reweighted model's gradient ``J^T r`` matches the robust cost's finite differences, the
    summary's costs are robust while chi2 stays plain (= ``PoseGraph.edge_chi2`` summed)."""
    graph = (household_graph(150, dim=3, seed=1, noise=_NOISE, initial="perturbed") if dim == 3
             else grid_graph(150, dim=2, seed=2, noise=_NOISE, initial="perturbed")).graph
    assert graph.is_loop.any()
    loss = RobustLoss("cauchy", 1.0)
    problem = PoseGraphProblem(graph, loss=loss, robust_edges=graph.is_loop)
    state = problem.initial_state()
    squared = graph.edge_chi2()
    assert problem.chi2(state) == pytest.approx(squared.sum())
    np.testing.assert_allclose(graph.edge_chi2(graph.is_loop), squared[graph.is_loop], rtol=1e-12)
    expected = 0.5 * (loss.rho(squared[graph.is_loop]).sum() + squared[~graph.is_loop].sum())
    linearization = problem.linearize(state, np.dtype(np.float64))
    assert linearization.cost == pytest.approx(expected) and not linearization.exact_model
    gradient = linearization.jacobian.T @ linearization.residual
    h = 1e-6
    for column in range(0, gradient.size, 17):
        step = np.zeros(gradient.size)
        step[column] = h
        slope = (problem.cost(problem.retract(state, step), np.dtype(np.float64))
                 - problem.cost(problem.retract(state, -step), np.dtype(np.float64))) / (2 * h)
        assert slope == pytest.approx(gradient[column], rel=1e-4, abs=1e-6 * np.abs(gradient).max())
    result = optimize_pose_graph(graph, default_options(), loss=loss, robust_edges=graph.is_loop)
    assert result.summary.converged and result.summary.final_cost < 0.5 * result.final_chi2


def test_low_precision_linearization_holds_rounded_values() -> None:
    problem = PoseGraphProblem(household_graph(40, seed=10).graph)
    half = problem.linearize(problem.initial_state(), np.dtype(np.float16))
    assert half.residual.dtype == np.float32 and half.jacobian.dtype == np.float32
    np.testing.assert_array_equal(half.jacobian.data, half.jacobian.data.astype(np.float16).astype(np.float32))
    single = problem.linearize(problem.initial_state(), np.dtype(np.float32))
    assert single.jacobian.dtype == np.float32


@pytest.mark.skipif(not cholmod_available(), reason="scikit-sparse (CHOLMOD) not installed")
def test_cholmod_reuses_its_analysis_and_matches_the_scipy_fallback() -> None:
    problem = PoseGraphProblem(grid_graph(120, dim=3, seed=11).graph)
    options = default_options(precision=Precision.FP64)
    cholmod_solver, scipy_solver = SparseCholeskySolver(), SparseCholeskySolver(use_cholmod=False)
    with_cholmod = solve(problem, cholmod_solver, options)
    with_scipy = solve(problem, scipy_solver, options)
    assert cholmod_solver.analyses == 1 and scipy_solver.analyses == 1
    assert with_cholmod.summary.num_iterations > 1
    np.testing.assert_allclose(with_scipy.state, with_cholmod.state, atol=1e-8)


def test_ic0_preconditioner_and_callback_stop() -> None:
    graph = household_graph(120, seed=12).graph
    seen = []
    result = optimize_pose_graph(
        graph, default_options(precision=Precision.MIXED), callback=lambda record: seen.append(record) or len(seen) < 2,
        preconditioner=IncompleteCholeskyFactory(drop_tolerance=0.0),
    )
    assert result.summary.termination is Termination.USER_STOPPED and len(seen) == 2
    full = optimize_pose_graph(graph, preconditioner=IncompleteCholeskyFactory(drop_tolerance=0.0))
    assert full.summary.converged and full.summary.preconditioner_shifts == 0


def test_generators_are_seeded_and_valid() -> None:
    for make in (lambda seed: sphere_graph(64, seed=seed), lambda seed: grid_graph(64, dim=3, seed=seed),
                 lambda seed: household_graph(64, dim=2, seed=seed)):
        a, b, c = make(1), make(1), make(2)
        a.graph.validate()
        np.testing.assert_array_equal(a.graph.T_from_to, b.graph.T_from_to)
        assert not np.array_equal(a.graph.T_from_to, c.graph.T_from_to)
        assert a.T_world_node_true.shape == a.graph.T_world_node.shape
    assert sphere_graph(400).graph.is_loop.sum() > 300


@pytest.mark.parametrize("mode", [Precision.FP32, Precision.MIXED])
def test_a_graph_solved_directly_is_evaluated_in_fp64_and_says_so(mode: Precision) -> None:
    """On the direct path (small graph: fp64 Cholesky) below-fp64 residuals only cost accuracy:
    the solve moves them to fp64 before the first step, as a recorded escalation."""
    graph = _GRAPHS["household3d"]()
    result = optimize_pose_graph(graph, default_options(precision=mode))
    summary = result.summary
    assert summary.converged, summary.message
    assert [(e.iteration, e.from_precision, e.to_precision) for e in summary.escalations] == [(0, mode, Precision.FP64)]
    assert "the linear solver is direct" in summary.escalations[0].reason
    assert summary.precision_used is Precision.FP64 and summary.precision_parts["linear_solve"] == "fp64 direct"
    assert all(record.precision is Precision.FP64 for record in summary.iterations)
    assert any(line.startswith("escalated at iteration 0") for line in summary.change_lines())
    kept = optimize_pose_graph(graph, default_options(precision=mode, escalate=False)).summary
    assert kept.precision_used is mode and not kept.escalations  # escalation off: the mode is kept


def test_the_reported_total_time_includes_the_setup() -> None:
    """Latency figures read ``timings.total_s``: it must cover building the problem and the
    linear solver (validation, pattern, preconditioner check), not only the iterations."""
    summary = optimize_pose_graph(_GRAPHS["household3d"](), default_options()).summary
    timings = summary.timings
    assert timings.setup_s > 0.0
    assert timings.total_s >= timings.setup_s + timings.linear_solve_s
