"""``mp-slam pgo``: one smoke test end to end, repairs/skips/initialization said once, and the
one-line error of bad input."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mp_slam_ros.cli.main import main
from mp_slam_ros.io.g2o import format_g2o, read_g2o, write_g2o
from mp_slam_ros.sim.pose_graphs import GraphNoise, grid_graph, sphere_graph


def test_pgo_optimizes_a_file_and_prints_a_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, target = tmp_path / "in.g2o", tmp_path / "out.g2o"
    graph = grid_graph(120, dim=3, seed=1, initial="perturbed").graph
    write_g2o(source, graph)
    code = main(["pgo", str(source), "-o", str(target), "--precision", "mixed", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    report = json.loads(captured.out)
    assert report["precision_requested"] == "mixed" and report["converged"]
    assert report["final_chi2"] < report["initial_chi2"]
    assert report["num_nodes"] == graph.num_nodes
    # 714 unknowns: solved directly in float64, so its residuals are too (said, and in the JSON)
    assert "iter   1  cost" in captured.err and "precision fp64" in captured.err
    assert "escalated at iteration 0: mixed -> fp64 (the linear solver is direct" in captured.err
    assert report["precision_used"] == "fp64"
    optimized = read_g2o(target)
    assert optimized.num_edges == graph.num_edges


def test_pgo_bad_input_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "bad.g2o"
    source.write_text("VERTEX_SE2 0 0 0 0\nEDGE_SE2 0 1 1 0 0 1 0 0 1 0 1\n")
    code = main(["pgo", str(source), "-o", str(tmp_path / "out.g2o"), "--solver", "cholesky"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [f"mp-slam pgo: error: {source}:2: field to_id: unknown vertex id 1"]


def _edges_only_file(tmp_path: Path) -> tuple[Path, int]:
    """A noisy sphere's edges (no VERTEX lines), one indefinite information matrix, landmarks."""
    graph = sphere_graph(400, seed=2, noise=GraphNoise(rotation_rad=0.02)).graph
    graph.information[5, 5, 5] = -3.0e4
    graph.information[5, 4, 5] = graph.information[5, 5, 4] = 0.0
    lines = [line for line in format_g2o(graph) if not line.startswith("VERTEX")]
    lines[2:2] = ["VERTEX_TRACKXYZ 9000 1 2 3\n", "PARAMS_SE3OFFSET 0 0 0 0 0 0 0 1\n", "VERTEX_TRACKXYZ 9001 1 2 3\n"]
    source = tmp_path / "edges.g2o"
    source.write_text("".join(lines))
    return source, 1 + lines.index(format_g2o(graph)[graph.num_nodes + 5])


def test_pgo_repairs_skips_and_initializes_and_says_so_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source, bad_line = _edges_only_file(tmp_path)
    reports = {}
    for init in ("odometry", "chordal"):
        code = main(["pgo", str(source), "-o", str(tmp_path / "out.g2o"), "--json", "-q", "--init", init,
                     "--solver", "cholesky"])
        captured = capsys.readouterr()
        assert code == 0
        reports[init] = json.loads(captured.out)
        warnings = captured.err.splitlines()
        assert len(warnings) == 2
        assert warnings[0].startswith(f"mp-slam pgo: warning: {source}: repaired 1 information matrix that was not")
        assert f"worst: line {bad_line}, edge 5 -> 6, smallest eigenvalue -3e+04" in warnings[0]
        assert warnings[1] == (f"mp-slam pgo: warning: {source}: skipped 3 unsupported element line(s): "
                               "PARAMS_SE3OFFSET x 1, VERTEX_TRACKXYZ x 2; --strict rejects them")
    report = reports["chordal"]
    assert report["vertices_in_file"] is False
    assert report["information_repairs"]["count"] == 1
    assert report["information_repairs"]["worst"]["line"] == bad_line
    assert report["information_repairs"]["worst"]["smallest_eigenvalue"] == pytest.approx(-3.0e4)
    assert report["skipped_elements"] == {"VERTEX_TRACKXYZ": 2, "PARAMS_SE3OFFSET": 1}
    assert report["initialization"]["method"] == "chordal" and report["initialization"]["time_s"] > 0.0
    assert reports["odometry"]["initialization"] == {"method": "odometry", "time_s": None}  # done by the reader
    assert report["initial_chi2"] < reports["odometry"]["initial_chi2"] / 100.0
    assert report["final_chi2"] == pytest.approx(reports["odometry"]["final_chi2"], rel=1e-6)


@pytest.mark.parametrize(
    ("flags", "message"),
    [(["--strict"], ":3: unsupported element 'VERTEX_TRACKXYZ'"),
     (["--init", "vertices"], "--init='vertices': the file has no VERTEX lines (use odometry or chordal)")],
)
def test_pgo_strict_and_impossible_init_exit_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    source, _ = _edges_only_file(tmp_path)
    code = main(["pgo", str(source), "-o", str(tmp_path / "out.g2o"), *flags])
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err[-1].startswith("mp-slam pgo: error: ") and err[-1].endswith(message)
    assert len(err) == (1 if "--strict" in flags else 3)  # the reader's warnings come first without --strict


def test_pgo_loss_on_the_loop_edges_resists_wrong_loops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Three wrong loops (2-3 m off) in a grid graph: least squares bends the map; ``--loss cauchy
    --loss-edges loops`` keeps it, and the JSON names the loss."""
    synthetic = grid_graph(120, dim=3, seed=1, initial="perturbed")
    graph, truth = synthetic.graph, synthetic.T_world_node_true
    wrong_from, wrong_to = np.array([3, 40, 77]), np.array([90, 110, 20])
    offset = np.eye(4)
    offset[:3, 3] = [2.0, 3.0, 0.0]
    graph = replace(
        graph, edge_from=np.r_[graph.edge_from, wrong_from], edge_to=np.r_[graph.edge_to, wrong_to],
        T_from_to=np.concatenate([graph.T_from_to, np.linalg.inv(truth[wrong_from]) @ truth[wrong_to] @ offset]),
        information=np.concatenate([graph.information, graph.information[:3]]), is_loop=None,
    )
    source = tmp_path / "in.g2o"
    write_g2o(source, graph)
    errors = {}
    for loss in ("none", "cauchy"):
        target = tmp_path / f"{loss}.g2o"
        assert main(["pgo", str(source), "-o", str(target), "--loss", loss, "--loss-edges", "loops", "--json", "-q"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["loss"] == ("none" if loss == "none" else "cauchy(3)") and report["loss_edges"] == "loops"
        errors[loss] = np.abs(read_g2o(target).T_world_node[:, :3, 3] - truth[:, :3, 3]).max()
    assert errors["none"] > 0.5 and errors["cauchy"] < 0.3 * errors["none"]
