"""``mp-slam graph`` -> ``mp-slam pgo --tum`` -> evaluation: the offline pose-graph workflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mp_slam_ros.cli.main import main
from mp_slam_ros.eval.metrics import evaluate
from mp_slam_ros.io.g2o import read_g2o
from mp_slam_ros.io.tum import read_tum, trajectory_of_nodes


@pytest.mark.parametrize("dim", [2, 3])
def test_generated_graph_optimizes_towards_its_ground_truth(tmp_path: Path, dim: int) -> None:
    graph_path, truth_path = tmp_path / "graph.g2o", tmp_path / "gt.tum"
    optimized_path, optimized_tum = tmp_path / "opt.g2o", tmp_path / "opt.tum"
    assert main(["graph", "household", "-n", "300", "--dim", str(dim), "--seed", "4",
                 "-o", str(graph_path), "--gt", str(truth_path)]) == 0
    assert main(["pgo", str(graph_path), "-o", str(optimized_path), "--tum", str(optimized_tum), "-q"]) == 0
    graph, truth = read_g2o(graph_path), read_tum(truth_path)
    assert graph.num_nodes == 300 and graph.dim == dim and graph.is_loop.any()
    np.testing.assert_array_equal(truth.timestamps_s, graph.node_ids)
    before = evaluate(truth, trajectory_of_nodes(graph.node_ids, graph.T_world_node), "odometry")
    after = evaluate(truth, read_tum(optimized_tum), "optimized")
    assert after.ate_m.rmse < 0.5 * before.ate_m.rmse


def test_se2_poses_lift_to_the_plane() -> None:
    theta = np.array([0.0, np.pi / 2])
    T = np.zeros((2, 3, 3))
    T[:, 0, 0], T[:, 0, 1], T[:, 1, 0], T[:, 1, 1] = np.cos(theta), -np.sin(theta), np.sin(theta), np.cos(theta)
    T[:, :2, 2] = [[1.0, 2.0], [3.0, 4.0]]
    T[:, 2, 2] = 1.0
    trajectory = trajectory_of_nodes(np.array([7, 9]), T)
    np.testing.assert_allclose(trajectory.positions_m, [[1.0, 2.0, 0.0], [3.0, 4.0, 0.0]])
    np.testing.assert_allclose(trajectory.quats_xyzw[1], [0.0, 0.0, np.sqrt(0.5), np.sqrt(0.5)], atol=1e-12)
    np.testing.assert_array_equal(trajectory.timestamps_s, [7.0, 9.0])


def test_graph_rejects_impossible_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", "sphere", "--dim", "2", "-o", str(tmp_path / "s.g2o")]) == 1
    assert capsys.readouterr().err.strip() == "mp-slam graph: error: --dim=2: the sphere world is 3-D only"


@pytest.mark.parametrize(("kind", "extra"), [("city", []), ("garage", ["--indefinite-fraction", "0.1"]),
                                             ("tiny", ["--dim", "2"])])
def test_edges_only_writes_the_same_edges_without_vertex_lines(tmp_path: Path, kind: str, extra: list[str]) -> None:
    full, edges = tmp_path / "full.g2o", tmp_path / "edges.g2o"
    assert main(["graph", kind, "-n", "300", "--seed", "2", "-o", str(full), *extra]) == 0
    assert main(["graph", kind, "-n", "300", "--seed", "2", "-o", str(edges), "--edges-only", *extra]) == 0
    full_lines, edge_lines = full.read_text().splitlines(), edges.read_text().splitlines()
    assert not any(line.startswith("VERTEX") for line in edge_lines)
    assert edge_lines == [line for line in full_lines if not line.startswith("VERTEX")]
    assert sum(line.startswith("VERTEX") for line in full_lines) == 300
    assert all(line.startswith("EDGE_SE") for line in edge_lines) and len(edge_lines) > 299


@pytest.mark.parametrize(("argv", "message"), [
    (["city", "--dim", "3"], "--dim=3: the city world is 2-D only"),
    (["household", "--indefinite-fraction", "0.1"], "--indefinite-fraction=0.1: only the garage world has it"),
    (["garage", "--indefinite-fraction", "2"], "--indefinite-fraction=2.0: must be in [0, 1]"),
    (["city", "--initial", "perturbed"], "--initial='perturbed': the city world starts from odometry only"),
])
def test_graph_rejects_options_the_world_does_not_have(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str,
) -> None:
    assert main(["graph", *argv, "-o", str(tmp_path / "g.g2o")]) == 1
    assert capsys.readouterr().err.strip() == f"mp-slam graph: error: {message}"
