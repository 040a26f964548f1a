"""Public pose graphs that GTSAM's wheel ships (``gtsam/Data``): read as published, solved to
GTSAM's optimum. Data this project did not make; skipped where GTSAM is not installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mp_slam_ros.io.g2o import read_g2o, read_g2o_with_report
from mp_slam_ros.solvers.pgo import PoseGraphProblem, default_options, optimize_pose_graph

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
