"""g2o I/O: round trips, interoperability with GTSAM's reader, typed errors for bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mp_slam_ros.backend.initialization import chordal_initialization
from mp_slam_ros.backend.pose_graph import INFORMATION_RELATIVE_FLOOR, PoseGraph, repair_information
from mp_slam_ros.errors import FileFormatError, ProblemError
from mp_slam_ros.geometry import lie
from mp_slam_ros.io.g2o import format_g2o, read_g2o, read_g2o_with_report, write_g2o
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


_NOT_PD_6 = "1 0 0 0 0 0 1 0 0 0 0 1 0 0 0 1 0 0 1 0 -1"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (_VERTICES_3D + _EDGE_3D.replace(" 1 0 0 0 0 0 1 1", " nan 0 0 0 0 0 1 1"), 3, "field x='nan' is not finite"),
        (_VERTICES_3D + "EDGE_SE3:QUAT 0 1 1 0 0\n", 3, "EDGE_SE3:QUAT needs 30 fields, got 5"),
        (_VERTICES_3D + "vertex_xyz 2 0 0 0\n", 3, "unsupported element 'vertex_xyz'"),
        (_VERTICES_3D + "3.5 2 0 0 0\n", 3, "unsupported element '3.5'"),
        (_VERTICES_3D + _EDGE_3D.replace(_IDENTITY_INFO_6, "0 " * 21), 3,
         "(smallest eigenvalue 0, largest 0)"),
        (_VERTICES_3D + _EDGE_3D.replace("0 1 1 0 0", "0 7 1 0 0", 1), 3, "field to_id: unknown vertex id 7"),
        (_VERTICES_3D + "VERTEX_SE3:QUAT 1 2 0 0 0 0 0 1\n", 3, "duplicate vertex id 1"),
        (_VERTICES_3D + "VERTEX_SE2 2 0 0 0\n", 3, "VERTEX_SE2 in a 3-D file (line 2 is 3-D)"),
        ("VERTEX_SE3:QUAT 0 0 0 0 0 0 0 0\n", 1, "quaternion (qx qy qz qw) has norm 0"),
        ("VERTEX_SE3:QUAT x 0 0 0 0 0 0 1\n", 1, "field id='x' is not an integer id"),
        ("VERTEX_SE3:QUAT 1e30 0 0 0 0 0 0 1\n", 1, "field id='1e30' is not an integer id"),
        (f"VERTEX_SE3:QUAT {2**70} 0 0 0 0 0 0 1\n", 1, f"field id='{2**70}' is out of range"),
        ("VERTEX_SE3:QUAT -4 0 0 0 0 0 0 1\n", 1, "field id='-4' is out of range (ids are 0 .. 2**63-1)"),
        (_VERTICES_3D + "FIX 9\n", 3, "FIX names unknown vertex id 9"),
        ("EDGE_SE2 0 1 1 0 0 1 0 0 1 0 1\nFIX 9\n", 2, "FIX names unknown node (no edge names it) id 9"),
        (_VERTICES_3D + _EDGE_3D.replace("0 1 1 0 0", "1 1 1 0 0", 1), 3, "edge connects vertex 1 to itself"),
    ],
    ids=["nan", "field-count", "not-a-tag", "number-tag", "zero-info", "unknown-vertex", "duplicate-id",
         "mixed-dims", "zero-quaternion", "non-integer-id", "float-id", "huge-id", "negative-id", "fix-unknown",
         "fix-unknown-edges-only", "self-edge"],
)
@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
def test_malformed_lines_raise_typed_errors(tmp_path: Path, text: str, line: int, message: str, strict: bool) -> None:
    path = _write(tmp_path, "# comment line is skipped\n" + text)
    with pytest.raises(FileFormatError) as caught:
        read_g2o(path, strict=strict)
    assert caught.value.path == str(path)
    assert caught.value.line == line + 1
    assert message in caught.value.reason
    assert str(caught.value).startswith(f"{path}:{line + 1}: ")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (_VERTICES_3D + "VERTEX_XYZ 2 0 0 0\n", 3, "unsupported element 'VERTEX_XYZ'"),
        (_VERTICES_3D + _EDGE_3D.replace(_IDENTITY_INFO_6, _NOT_PD_6), 3,
         "information matrix is not positive definite (smallest eigenvalue -1"),
        ("VERTEX_SE2 0 0 0 0\nVERTEX_SE2 1 1 0 0\nEDGE_SE2 0 1 1 0 0 1 0 0 1 0 0\n", 3,
         "information matrix is not positive definite"),
    ],
    ids=["unknown-tag", "non-pd-info", "se2-singular-info"],
)
def test_strict_rejects_what_is_otherwise_skipped_or_repaired(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(FileFormatError) as caught:
        read_g2o(path, strict=True)
    assert caught.value.line == line and message in caught.value.reason
    read_g2o(path)  # accepted by default


def test_indefinite_and_singular_information_is_repaired_and_reported(tmp_path: Path) -> None:
    indefinite = _EDGE_3D.replace(_IDENTITY_INFO_6, _NOT_PD_6.replace("-1", "-5"))
    nearly_singular = _EDGE_3D.replace("0 1 1 0 0", "1 0 -1 0 0", 1).replace(_IDENTITY_INFO_6, _IDENTITY_INFO_6[:-1] + "1e-12")
    graph, report = read_g2o_with_report(_write(tmp_path, _VERTICES_3D + _EDGE_3D + indefinite + nearly_singular))
    assert [(edge.line, edge.from_id, edge.to_id) for edge in report.repaired_edges] == [(4, 0, 1), (5, 1, 0)]
    assert report.repaired_edges[0].smallest_eigenvalue == pytest.approx(-5.0)
    assert report.repaired_edges[0].largest_eigenvalue == pytest.approx(1.0)
    assert report.worst_repair == report.repaired_edges[0]
    np.testing.assert_array_equal(graph.information[0], np.eye(6))  # untouched
    expected = np.eye(6)
    expected[5, 5] = INFORMATION_RELATIVE_FLOOR  # clipped at the floor relative to the largest (1)
    np.testing.assert_allclose(graph.information[1], expected, atol=1e-15)
    np.testing.assert_allclose(graph.information[2], expected, atol=1e-15)
    PoseGraphProblem(graph)  # the repaired matrices pass the solver's validation
    summary = report.to_dict()
    assert summary["information_repairs"]["count"] == 2
    assert summary["information_repairs"]["worst"] == {
        "line": 4, "from_id": 0, "to_id": 1, "smallest_eigenvalue": pytest.approx(-5.0),
        "largest_eigenvalue": pytest.approx(1.0),
    }


def test_repair_information_is_the_nearest_matrix_with_the_floor() -> None:
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    eigenvalues = np.array([-3.0, 0.0, 1e-12, 1.0, 10.0, 100.0])
    information = np.stack([Q @ np.diag(eigenvalues) @ Q.T, np.eye(6), np.zeros((6, 6))])
    repair = repair_information(information, relative_floor=1e-3)
    np.testing.assert_array_equal(repair.repaired, [True, False, False])
    np.testing.assert_array_equal(repair.unrepairable, [False, False, True])
    clipped = np.maximum(eigenvalues, 0.1)
    np.testing.assert_allclose(repair.information[0], Q @ np.diag(clipped) @ Q.T, atol=1e-12)
    np.testing.assert_allclose(np.linalg.eigvalsh(repair.information[0]), np.sort(clipped), atol=1e-12)
    np.testing.assert_array_equal(repair.information[0], repair.information[0].T)
    np.testing.assert_array_equal(repair.information[1:], information[1:])
    np.testing.assert_allclose(repair.smallest_eigenvalue[:2], [-3.0, 1.0])


def test_unsupported_g2o_elements_are_skipped_and_counted(tmp_path: Path) -> None:
    landmarks = "VERTEX_XY 100 1 2\nEDGE_SE2_XY 0 100 1 2 1 0 1\nEDGE_SE2_XY 1 100 0 2 1 0 1\nPARAMS_SE2OFFSET 0 0 0 0\n"
    text = "VERTEX_SE2 0 0 0 0\n" + landmarks + "VERTEX_SE2 1 1 0 0\nEDGE_SE2 0 1 1 0 0 1 0 0 1 0 1\n"
    graph, report = read_g2o_with_report(_write(tmp_path, text))
    assert report.skipped == {"VERTEX_XY": 1, "EDGE_SE2_XY": 2, "PARAMS_SE2OFFSET": 1}
    assert report.repaired_edges == () and report.has_vertices
    np.testing.assert_array_equal(graph.node_ids, [0, 1])
    assert graph.num_edges == 1
    with pytest.raises(FileFormatError, match=r"no vertices or edges .* found; skipped EDGE_SE2_XY x 2, "):
        read_g2o(_write(tmp_path, landmarks))


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="no vertices or edges"):
        read_g2o(_write(tmp_path, "# nothing\n\n"))
    with pytest.raises(FileFormatError, match="no vertices or edges"):
        read_g2o(_write(tmp_path, ""))
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


# ---- files without vertex lines (the common form of the public 2-D data sets) ----------------------

_SQUARE_2D = (  # a 1 m square driven counter-clockwise, ids 10..40, edges out of order, CRLF and tabs
    "# edges only\r\n"
    "EDGE_SE2 20 30\t1 0 1.5707963267948966\t400 0 0 400 0 10000\r\n"
    "EDGE_SE2 10 20 1 0 1.5707963267948966 400 0 0 400 0 10000\r\n"
    "EDGE_SE2 30 40 1 0 1.5707963267948966 400 0 0 400 0 10000\r\n"
    "EDGE_SE2 40 10 1 0 1.5707963267948966 400 0 0 400 0 10000\r\n"
)


def test_edges_only_2d_square_is_initialized_from_odometry(tmp_path: Path) -> None:
    path = tmp_path / "square.g2o"
    path.write_bytes(b"\xef\xbb\xbf" + _SQUARE_2D.encode())  # with a UTF-8 byte-order mark
    graph, report = read_g2o_with_report(path)
    assert not report.has_vertices and report.skipped == {} and report.repaired_edges == ()
    np.testing.assert_array_equal(graph.node_ids, [10, 20, 30, 40])
    assert graph.anchor_index() == 0  # the lowest id
    expected = [[0, 0, 0], [1, 0, np.pi / 2], [1, 1, np.pi], [0, 1, -np.pi / 2]]
    np.testing.assert_allclose(graph.T_world_node, lie.se2_from_xytheta(np.array(expected)), atol=1e-12)
    assert PoseGraphProblem(graph).chi2(graph.T_world_node) == pytest.approx(0.0, abs=1e-18)


def _cube_lines() -> tuple[str, np.ndarray]:
    """Edges of a walk around the 8 corners of a 2 m cube (yaw turning 45 degrees a step) and
    the true poses; written with SciPy's quaternions, not with our writer."""
    corners = 2.0 * np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [1, 1, 1], [1, 0, 1], [0, 0, 1]])
    T = np.tile(np.eye(4), (8, 1, 1))
    T[:, :3, :3] = Rotation.from_euler("z", 45.0 * np.arange(8)[:, None], degrees=True).as_matrix()
    T[:, :3, 3] = corners
    pairs = [(k, k + 1) for k in range(7)] + [(7, 0), (0, 3), (4, 7), (1, 6), (2, 5)]
    info = " ".join(["100 0 0 0 0 0"] + ["100 0 0 0 0", "100 0 0 0", "900 0 0", "900 0", "900"])
    lines = []
    for i, j in pairs:
        T_i_j = np.linalg.inv(T[i]) @ T[j]
        quat = Rotation.from_matrix(T_i_j[:3, :3]).as_quat()
        values = " ".join(repr(float(v)) for v in [*T_i_j[:3, 3], *quat])
        lines.append(f"EDGE_SE3:QUAT {i} {j} {values} {info}\n")
    return "".join(lines), T


@pytest.mark.parametrize("init", ["odometry", "chordal"])
def test_edges_only_3d_cube_recovers_the_poses(tmp_path: Path, init: str) -> None:
    text, T_true = _cube_lines()
    graph = read_g2o(_write(tmp_path, text))
    assert graph.num_nodes == 8 and graph.num_edges == 12
    poses = graph.T_world_node if init == "odometry" else chordal_initialization(graph)
    np.testing.assert_allclose(poses, T_true, atol=1e-12)  # node 0 is the identity in both


def test_edges_only_disconnected_graph_roots_each_component(tmp_path: Path) -> None:
    text = _SQUARE_2D + "EDGE_SE2 7 8 2 0 0 1 0 0 1 0 1\n"
    graph = read_g2o(_write(tmp_path, text))
    np.testing.assert_array_equal(graph.node_ids, [7, 8, 10, 20, 30, 40])
    np.testing.assert_allclose(graph.T_world_node[1], lie.se2_from_xytheta(np.array([[2.0, 0.0, 0.0]]))[0])
    np.testing.assert_allclose(graph.T_world_node[2], np.eye(3))  # the lowest id of the square
    with pytest.raises(ProblemError, match="disconnected"):
        PoseGraphProblem(graph)


@pytest.mark.parametrize("dim", [3, 2])
def test_edges_only_file_reads_as_gtsam_reads_it(dim: int, tmp_path: Path) -> None:
    """Our writer's output minus its VERTEX lines: GTSAM's readG2o and we see the same graph."""
    gtsam = pytest.importorskip("gtsam")
    graph = _graphs()[0 if dim == 3 else 1]
    graph.fixed_ids = np.zeros(0, dtype=np.int64)
    path = tmp_path / "edges.g2o"
    path.write_text("".join(line for line in format_g2o(graph) if not line.startswith("VERTEX")))
    ours = read_g2o(path)
    factors, _ = gtsam.readG2o(str(path), dim == 3)
    assert factors.size() == ours.num_edges == graph.num_edges
    assert sorted({key for e in range(factors.size()) for key in factors.at(e).keys()}) == ours.node_ids.tolist()
    to_gtsam = np.r_[3:6, 0:3] if dim == 3 else np.arange(3)  # GTSAM's Pose3 tangent: rotation first
    for e in range(factors.size()):
        factor = factors.at(e)
        assert factor.keys() == [ours.edge_from[e], ours.edge_to[e]]
        np.testing.assert_allclose(factor.measured().matrix(), ours.T_from_to[e], atol=1e-12)
        R = factor.noiseModel().R()
        np.testing.assert_allclose(R.T @ R, ours.information[e][np.ix_(to_gtsam, to_gtsam)], rtol=1e-9)
    values = gtsam.Values()  # the written file's (perturbed) poses: a nonzero chi2
    for node, T in zip(graph.node_ids.tolist(), graph.T_world_node):
        values.insert(node, gtsam.Pose3(T) if dim == 3 else gtsam.Pose2(T[0, 2], T[1, 2], np.arctan2(T[1, 0], T[0, 0])))
    chi2 = PoseGraphProblem(ours).chi2(graph.T_world_node)
    assert chi2 > 1.0
    np.testing.assert_allclose(2.0 * factors.error(values), chi2, rtol=1e-6)


def test_toro_2d_lines_read_in_the_order_that_makes_their_information_definite(tmp_path: Path) -> None:
    # The same graph twice: information diag(10, 20, 30) with an xy and a y-theta correlation,
    # written in TORO's order (I11 I12 I22 I33 I13 I23) and in g2o's (I11 I12 I13 I22 I23 I33).
    information = np.array([[10.0, 1.0, 0.0], [1.0, 20.0, 2.0], [0.0, 2.0, 30.0]])
    toro = "10 1 20 30 0 2"
    g2o = "10 1 0 20 2 30"
    for order, values in (("TORO", toro), ("g2o", g2o)):
        text = "VERTEX2 0 0 0 0\nVERTEX2 1 1 0 0.1\nVERTEX2 2 2 0 0.2\n"
        text += f"EDGE2 0 1 1 0 0.1 {values}\nEDGE2 1 2 1 0 0.1 {values}\nEQUIV 2 0\n"
        graph, report = read_g2o_with_report(_write(tmp_path, text))
        assert report.edge2_information_order.startswith(order)
        assert report.skipped == {"EQUIV": 1} and report.repaired_edges == ()
        np.testing.assert_allclose(graph.information, [information, information])
        np.testing.assert_allclose(graph.T_world_node[2], lie.se2_from_xytheta(np.array([[2.0, 0.0, 0.2]]))[0])


def test_toro_3d_lines_use_roll_pitch_yaw(tmp_path: Path) -> None:
    roll, pitch, yaw = 0.1, -0.2, 0.3
    R = Rotation.from_euler("ZYX", [yaw, pitch, roll]).as_matrix()  # Rz(yaw) Ry(pitch) Rx(roll)
    upper = np.triu(np.diag([1.0, 2, 3, 4, 5, 6]) + 0.5 * np.eye(6, k=1))[np.triu_indices(6)]
    info = " ".join(f"{v:g}" for v in upper)
    text = f"VERTEX3 0 0 0 0 0 0 0\nVERTEX3 1 1 2 3 {roll} {pitch} {yaw}\nEDGE3 0 1 1 2 3 {roll} {pitch} {yaw} {info}\n"
    graph, report = read_g2o_with_report(_write(tmp_path, text))
    assert graph.dim == 3 and report.edge2_information_order is None
    np.testing.assert_allclose(graph.T_world_node[1, :3, :3], R, atol=1e-12)
    np.testing.assert_allclose(graph.T_from_to[0, :3, 3], [1, 2, 3])
    np.testing.assert_allclose(graph.T_from_to[0, :3, :3], R, atol=1e-12)
    np.testing.assert_allclose(np.diag(graph.information[0]), [1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(graph.information[0][0, 1], 0.5)
    with pytest.raises(FileFormatError, match=r":1: EDGE3 needs 29 fields, got 8"):
        read_g2o(_write(tmp_path, "EDGE3 0 1 1 2 3 0 0 0\n"))
