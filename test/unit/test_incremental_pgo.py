"""IncrementalPoseGraph: chained estimates, snapshot solves, re-chaining of nodes added meanwhile,
the preconditioner choice and ordering kept across the solves of a growing graph."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mp_slam_ros.backend.incremental_pgo import IncrementalPoseGraph, Loop, PGOConfig, solve_snapshot
from mp_slam_ros.geometry.lie import se3_exp, se3_inverse
from mp_slam_ros.precision import Precision
from mp_slam_ros.sim.pose_graphs import household_graph
from mp_slam_ros.solvers.pgo import PoseGraphResult
from mp_slam_ros.solvers.robust import LossKind


def test_loop_solve_and_rechain() -> None:
    rng = np.random.default_rng(0)
    step = se3_exp(np.array([[0.5, 0.0, 0.0, 0.0, 0.0, 2 * np.pi / 20]]))[0]
    truth = [np.eye(4)]
    for _ in range(21):
        truth.append(truth[-1] @ step)
    graph = IncrementalPoseGraph()
    graph.add_node(np.eye(4))
    information = np.diag([1e4] * 3 + [1e5] * 3)
    for k in range(1, 21):
        noisy = step @ se3_exp(rng.normal(0, 0.01, (1, 6)))[0]
        graph.add_node(None, k - 1, noisy, information)
    drifted = np.linalg.norm(graph.T_map_node[20, :3, 3] - truth[20][:3, 3])
    graph.set_loops([Loop(0, 20, se3_inverse(truth[0]) @ truth[20], information * 10)])
    snapshot = graph.snapshot()
    graph.add_node(None, 20, step, information)  # appended while the solve runs
    result, summary = solve_snapshot(snapshot, PGOConfig(precision=Precision.MIXED))
    assert summary is not None and summary.converged
    graph.apply(snapshot, result.graph.T_world_node)
    assert np.linalg.norm(graph.T_map_node[20, :3, 3] - truth[20][:3, 3]) < 0.2 * drifted
    assert np.allclose(graph.T_map_node[21], graph.T_map_node[20] @ step)
    fp64, _ = solve_snapshot(snapshot, PGOConfig(precision=Precision.FP64, solver="cholesky"))
    assert abs(result.final_chi2 - fp64.final_chi2) <= 0.05 * fp64.final_chi2 + 1e-9


def test_the_robust_stage_leaves_a_vo_glitch_in_its_own_edge() -> None:
    """Two laps of a 40-pose ring (80 poses) whose odometry has one glitch (10 cm, 3 deg: a VO
    failure its covariance does not admit), loops from lap 2 to lap 1 every 5 poses. Least squares spreads the glitch over the ring; the
    Cauchy stage, started from that optimum (the loops start tens of sigmas off), leaves it in its
    own edge. The summary's iterations cover both stages, numbered on. Warm-started at the robust
    optimum, the next solve is the robust one alone."""
    rng = np.random.default_rng(4)
    step = se3_exp(np.array([[0.3, 0.0, 0.0, 0.0, 0.0, 2 * np.pi / 40]]))[0]
    truth = [np.eye(4)]
    for _ in range(79):
        truth.append(truth[-1] @ step)
    glitch = se3_exp(np.array([[0.1, 0.0, 0.0, 0.0, 0.0, np.radians(3.0)]]))[0]
    graph = IncrementalPoseGraph()
    graph.add_node(np.eye(4))
    information = np.diag([1e5] * 3 + [1e6] * 3)  # ~3 mm, ~0.06 deg
    for k in range(1, 80):
        noise = se3_exp(rng.normal(0, [0.002] * 3 + [0.0005] * 3, (1, 6)))[0]
        graph.add_node(None, k - 1, step @ noise @ (glitch if k == 55 else np.eye(4)), information)
    graph.set_loops([Loop(k, k + 40, se3_inverse(truth[k]) @ truth[k + 40], information) for k in range(0, 40, 5)])
    snapshot = graph.snapshot()
    results = {loss: solve_snapshot(snapshot, PGOConfig(precision=Precision.MIXED, loss=loss)) for loss in LossKind}
    error_m = {loss: np.linalg.norm(result.graph.T_world_node[:, :3, 3] - np.array(truth)[:, :3, 3], axis=1).max()
               for loss, (result, _) in results.items()}
    assert error_m[LossKind.CAUCHY] < 0.5 * error_m[LossKind.NONE]
    plain, robust = results[LossKind.NONE][1], results[LossKind.CAUCHY][1]
    assert plain is not None and robust is not None and robust.converged
    assert len(robust.iterations) > len(plain.iterations) and robust.message.startswith("least squares: converged")
    assert [r.iteration for r in robust.iterations] == list(range(1, len(robust.iterations) + 1))
    graph.apply(snapshot, results[LossKind.CAUCHY][0].graph.T_world_node)  # warm: the robust solve alone
    _, again = solve_snapshot(graph.snapshot(), PGOConfig(precision=Precision.MIXED))
    assert again is not None and again.converged and "least squares" not in again.message


def test_no_loops_no_solve() -> None:
    graph = IncrementalPoseGraph()
    graph.add_node(np.eye(4))
    graph.add_node(None, 0, np.eye(4), np.eye(6))
    assert solve_snapshot(graph.snapshot(), PGOConfig()) == (None, None)


def _growing_household(num_poses: int, first: int) -> tuple[IncrementalPoseGraph, list[Loop], list[tuple]]:
    """A household graph's first ``first`` poses in an IncrementalPoseGraph, the rest to append."""
    graph = household_graph(num_poses, dim=3, seed=3, initial="perturbed").graph  # warm: no race on the first solve
    odometry = np.flatnonzero(~graph.is_loop)
    odometry = odometry[np.argsort(graph.edge_to[odometry])]
    loops = [Loop(int(graph.edge_from[e]), int(graph.edge_to[e]), graph.T_from_to[e], graph.information[e])
             for e in np.flatnonzero(graph.is_loop)]
    pgo = IncrementalPoseGraph()
    pgo.add_node(graph.T_world_node[0])
    edges = [(int(graph.edge_from[e]), graph.T_from_to[e], graph.information[e]) for e in odometry]
    for a, T, information in edges[: first - 1]:
        pgo.add_node(None, a, T, information)
    return pgo, loops, edges[first - 1:]


def _solve(pgo: IncrementalPoseGraph, loops: list[Loop], config: PGOConfig, cache: bool = True) -> PoseGraphResult:
    pgo.set_loops([loop for loop in loops if max(loop.match, loop.query) < pgo.num_nodes])
    snapshot = pgo.snapshot()
    if not cache:
        snapshot = replace(snapshot, cache=None)
    result, _ = solve_snapshot(snapshot, config)
    assert result is not None
    return result


def test_a_growing_graph_keeps_its_preconditioner_ordering_and_reaches_the_same_optimum() -> None:
    pgo, loops, rest = _growing_household(3000, 2600)  # above direct_max_parameters: the recipe runs
    config = PGOConfig(precision=Precision.MIXED, loss=LossKind.NONE)  # one LM solve per snapshot
    # From dead reckoning the first solve may race to the direct solver (CPU timing decides: the
    # cache then keeps nothing); solved again from its optimum, CG converges before any race.
    pgo.apply(pgo.snapshot(), _solve(pgo, loops, config).graph.T_world_node)
    cache = pgo.preconditioner_cache
    cache.invalidate()  # whatever the first solve kept: the warm one builds anew
    builds, reuses = cache.builds, cache.reuses
    warm = _solve(pgo, loops, config)
    assert (cache.builds, cache.reuses) == (builds + 1, reuses)
    assert warm.summary.linear_solver_changes == []
    pgo.apply(pgo.snapshot(), warm.graph.T_world_node)
    for a, T, information in rest[:40]:  # 40 more poses, with their loops
        pgo.add_node(None, a, T, information)
    kept = _solve(pgo, loops, config)
    fresh = _solve(pgo, loops, config, cache=False)
    assert (cache.builds, cache.reuses) == (builds + 1, reuses + 1) and cache.kept_columns == 6 * 2599
    change = kept.summary.linear_solver_changes[0]
    assert change.action == "kept" and "15594 unknowns" in change.reason and "240 appended" in change.reason
    assert kept.summary.converged and fresh.summary.converged
    assert kept.final_chi2 == pytest.approx(fresh.final_chi2, rel=1e-6)


def test_the_ordering_is_recomputed_after_enough_growth_or_other_fixed_nodes() -> None:
    pgo, loops, rest = _growing_household(3600, 2600)
    config = PGOConfig(precision=Precision.FP64, loss=LossKind.NONE)
    pgo.apply(pgo.snapshot(), _solve(pgo, loops, config).graph.T_world_node)  # (may race: see above)
    pgo.apply(pgo.snapshot(), _solve(pgo, loops, config).graph.T_world_node)  # builds and keeps
    cache = pgo.preconditioner_cache
    builds, reuses = cache.builds, cache.reuses
    for a, T, information in rest[:900]:  # a third more poses: beyond max_growth (a quarter)
        pgo.add_node(None, a, T, information)
    _solve(pgo, loops, config)
    assert (cache.builds, cache.reuses) == (builds + 1, reuses)
    pgo.fixed = [0, 1]
    _solve(pgo, loops, config)
    assert (cache.builds, cache.reuses) == (builds + 2, reuses)
