"""g2o I/O: round trips, interoperability with GTSAM's reader, typed errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.errors import FileFormatError, ProblemError
from mp_slam_ros.io.g2o import read_g2o, write_g2o
from mp_slam_ros.sim.pose_graphs import GraphNoise, grid_graph, household_graph
from mp_slam_ros.solvers.pgo import PoseGraphProblem

_IDENTITY_INFO_6 = "1 0 0 0 0 0 1 0 0 0 0 1 0 0 0 1 0 0 1 0 1"
_VERTICES_3D = "VERTEX_SE3:QUAT 0 0 0 0 0 0 0 1\nVERTEX_SE3:QUAT 1 1 0 0 0 0 0 1\n"
_EDGE_3D = f"EDGE_SE3:QUAT 0 1 1 0 0 0 0 0 1 {_IDENTITY_INFO_6}\n"


def _graphs() -> list[PoseGraph]:
    noise = GraphNoise(correlated=True)
    three_d = household_graph(60, dim=3, seed=3, noise=noise, initial="perturbed").graph
    three_d.fixed_ids = np.array([5])
    return [three_d, grid_graph(60, dim=2, seed=4, noise=noise, initial="perturbed").graph]


def _assert_same_graph(a: PoseGraph, b: PoseGraph) -> None:
    np.testing.assert_array_equal(a.node_ids, b.node_ids)
    np.testing.assert_array_equal(a.edge_from, b.edge_from)
    np.testing.assert_array_equal(a.edge_to, b.edge_to)
    np.testing.assert_array_equal(a.fixed_ids, b.fixed_ids)
    np.testing.assert_allclose(a.T_world_node, b.T_world_node, atol=1e-12)
    np.testing.assert_allclose(a.T_from_to, b.T_from_to, atol=1e-12)
    np.testing.assert_allclose(a.information, b.information, rtol=1e-15)


@pytest.mark.parametrize("graph", _graphs(), ids=["se3", "se2"])
def test_round_trip_keeps_ids_poses_information_and_fixed(graph: PoseGraph, tmp_path: Path) -> None:
    path = tmp_path / "graph.g2o"
    write_g2o(path, graph)
    _assert_same_graph(read_g2o(path), graph)


@pytest.mark.parametrize("graph", _graphs(), ids=["se3", "se2"])
def test_output_loads_in_gtsam(graph: PoseGraph, tmp_path: Path) -> None:
    gtsam = pytest.importorskip("gtsam")
    path = tmp_path / "graph.g2o"
    write_g2o(path, graph)
    factors, values = gtsam.readG2o(str(path), graph.dim == 3)
    assert values.size() == graph.num_nodes
    assert factors.size() == graph.num_edges
    node = int(graph.node_ids[7])
    pose = values.atPose3(node).matrix() if graph.dim == 3 else values.atPose2(node).matrix()
    np.testing.assert_allclose(pose, graph.T_world_node[7], atol=1e-9)
    # Same chi2 for GTSAM and us on the same estimate (GTSAM orders rotation first).
    error = 2.0 * factors.error(values)
    np.testing.assert_allclose(error, PoseGraphProblem(graph).chi2(graph.T_world_node), rtol=1e-6)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.g2o"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (_VERTICES_3D + _EDGE_3D.replace(" 1 0 0 0 0 0 1 1", " nan 0 0 0 0 0 1 1"), 3, "field x='nan' is not finite"),
        (_VERTICES_3D + "EDGE_SE3:QUAT 0 1 1 0 0\n", 3, "EDGE_SE3:QUAT needs 30 fields, got 5"),
        (_VERTICES_3D + "VERTEX_XYZ 2 0 0 0\n", 3, "unsupported element 'VERTEX_XYZ'"),
        (_VERTICES_3D + _EDGE_3D.replace(_IDENTITY_INFO_6, "1 0 0 0 0 0 1 0 0 0 0 1 0 0 0 1 0 0 1 0 -1"), 3,
         "information matrix is not positive definite"),
        (_VERTICES_3D + _EDGE_3D.replace("0 1 1 0 0", "0 7 1 0 0", 1), 3, "field to_id: unknown vertex id 7"),
        (_VERTICES_3D + "VERTEX_SE3:QUAT 1 2 0 0 0 0 0 1\n", 3, "duplicate vertex id 1"),
        (_VERTICES_3D + "VERTEX_SE2 2 0 0 0\n", 3, "VERTEX_SE2 in a 3-D file (line 2 is 3-D)"),
        ("VERTEX_SE3:QUAT 0 0 0 0 0 0 0 0\n", 1, "quaternion (qx qy qz qw) has norm 0"),
        ("VERTEX_SE3:QUAT x 0 0 0 0 0 0 1\n", 1, "field id='x' is not an integer id"),
        (_VERTICES_3D + "FIX 9\n", 3, "FIX names unknown vertex id 9"),
        (_VERTICES_3D + _EDGE_3D.replace("0 1 1 0 0", "1 1 1 0 0", 1), 3, "edge connects vertex 1 to itself"),
        ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 0 1 1 0 0 1 0 0 1 0 0\n", 3,
         "information matrix is not positive definite"),
    ],
    ids=["nan", "field-count", "unknown-tag", "non-pd-info", "unknown-vertex", "duplicate-id", "mixed-dims",
         "zero-quaternion", "non-integer-id", "fix-unknown", "self-edge", "se2-singular-info"],
)
def test_malformed_lines_raise_typed_errors(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = _write(tmp_path, "# comment line is skipped\n" + text)
    with pytest.raises(FileFormatError) as caught:
        read_g2o(path)
    assert caught.value.path == str(path)
    assert caught.value.line == line + 1
    assert message in caught.value.reason
    assert str(caught.value).startswith(f"{path}:{line + 1}: ")


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="no vertices"):
        read_g2o(_write(tmp_path, "# nothing\n\n"))
    with pytest.raises(FileFormatError, match="cannot read"):
        read_g2o(tmp_path / "missing.g2o")


def test_edges_may_precede_vertices_and_comments_are_skipped(tmp_path: Path) -> None:
    graph = read_g2o(_write(tmp_path, _EDGE_3D + "# a comment\n" + _VERTICES_3D.replace("\n", "  # trailing\n", 1)))
    assert graph.num_nodes == 2 and graph.num_edges == 1
    np.testing.assert_allclose(graph.T_from_to[0][:3, 3], [1.0, 0.0, 0.0])


def test_disconnected_graph_is_read_but_not_optimized(tmp_path: Path) -> None:
    text = _VERTICES_3D + "VERTEX_SE3:QUAT 2 5 0 0 0 0 0 1\n" + _EDGE_3D
    graph = read_g2o(_write(tmp_path, text))
    assert graph.num_nodes == 3
    with pytest.raises(ProblemError, match="disconnected .* node 2 is not connected"):
        PoseGraphProblem(graph)
