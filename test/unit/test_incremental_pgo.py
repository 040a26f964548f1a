"""IncrementalPoseGraph: chained estimates, snapshot solves, re-chaining of nodes added meanwhile."""

from __future__ import annotations

import numpy as np

from mp_slam_ros.backend.incremental_pgo import IncrementalPoseGraph, Loop, PGOConfig, solve_snapshot
from mp_slam_ros.geometry.lie import se3_exp, se3_inverse
from mp_slam_ros.precision import Precision


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


def test_no_loops_no_solve() -> None:
    graph = IncrementalPoseGraph()
    graph.add_node(np.eye(4))
    graph.add_node(None, 0, np.eye(4), np.eye(6))
    assert solve_snapshot(graph.snapshot(), PGOConfig()) == (None, None)
