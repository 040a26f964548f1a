"""Public pose graphs and BAL files that GTSAM's wheel ships (``gtsam/Data``): read as published,
solved to the optimum. Data this project did not make; skipped where GTSAM is not installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mp_slam_ros.io.bal import bal_to_problem, read_bal
from mp_slam_ros.io.g2o import read_g2o, read_g2o_with_report
from mp_slam_ros.solvers.ba import BundleAdjustment, ba_solver_options, bundle_adjust
from mp_slam_ros.solvers.pgo import PoseGraphProblem, default_options, optimize_pose_graph
from mp_slam_ros.solvers.robust import RobustLoss

gtsam = pytest.importorskip("gtsam")
DATA = Path(gtsam.__file__).parent / "Data"


def _file(name: str) -> Path:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"{name} is not in this GTSAM's Data folder")
    return path


def test_olsons_w10000_reads_in_toro_order_with_its_equiv_lines_skipped() -> None:
    graph, report = read_g2o_with_report(_file("w10000.graph"))
    assert (graph.num_nodes, graph.num_edges, graph.dim) == (10000, 64311, 2)
    assert report.edge2_information_order.startswith("TORO") and report.skipped == {"EQUIV": 5875}
    assert report.repaired_edges == ()
    np.testing.assert_allclose(graph.information[0], np.eye(3))


def test_isam_sphere2500_ground_truth_is_consistent_under_the_roll_pitch_yaw_convention() -> None:
    # Noise-free relative poses only close every loop under the right angle convention:
    # chi2 ~0 at the poses composed from the edges (swapping roll and yaw gives 1.5e7).
    graph = read_g2o(_file("sphere2500_groundtruth.txt"))
    assert (graph.num_nodes, graph.num_edges) == (2500, 4949)
    assert PoseGraphProblem(graph).chi2(graph.T_world_node) < 1e-3


@pytest.mark.parametrize("name", ["w100_30.g2o", "pose3example-grid.txt"])
def test_small_public_graphs_reach_gtsams_optimum_in_every_mode(name: str) -> None:
    graph = read_g2o(_file(name))
    reference = optimize_pose_graph(graph, default_options(), solver="cholesky").final_chi2
    for precision in ("fp64", "fp32", "mixed"):
        result = optimize_pose_graph(graph, default_options(precision=precision))
        assert result.summary.converged and result.final_chi2 <= reference * (1 + 1e-6) + 1e-9


def test_the_dubrovnik_bal_excerpt_reaches_the_schur_optimum_with_cgnr_mixed() -> None:
    # 3 cameras, 7 points, 19 observations, with a blank line after the header (read as Ceres does).
    problem = bal_to_problem(read_bal(_file("dubrovnik-3-7-pre.txt")), loss=RobustLoss())
    tight = dict(function_tolerance=1e-10, max_iterations=200)
    costs = {}
    for solver, precision in (("schur", "fp64"), ("cgnr", "mixed")):
        result = bundle_adjust(problem, ba_solver_options(precision, **tight), solver=solver)
        costs[solver] = BundleAdjustment(problem).cost(result.state, np.dtype(np.float64))
    assert costs["schur"] < 3.0 < 2764.0  # from 2764 at the published start
    assert costs["cgnr"] <= costs["schur"] * 1.001
