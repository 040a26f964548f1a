"""``mp-slam pgo``: one smoke test end to end and the one-line error of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mp_slam_ros.cli.main import main
from mp_slam_ros.io.g2o import read_g2o, write_g2o
from mp_slam_ros.sim.pose_graphs import grid_graph


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
    assert "iter   1  cost" in captured.err and "precision mixed" in captured.err
    optimized = read_g2o(target)
    assert optimized.num_edges == graph.num_edges


def test_pgo_bad_input_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "bad.g2o"
    source.write_text("VERTEX_SE2 0 0 0 0\nEDGE_SE2 0 1 1 0 0 1 0 0 1 0 1\n")
    code = main(["pgo", str(source), "-o", str(tmp_path / "out.g2o"), "--solver", "cholesky"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err == [f"mp-slam pgo: error: {source}:2: field to_id: unknown vertex id 1"]
