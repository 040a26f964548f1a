"""``mp-slam ba`` smoke test: solve a BAL file, write the solution, JSON summary, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mp_slam_ros.cli.main import main
from mp_slam_ros.io.bal import problem_to_bal, read_bal, write_bal
from mp_slam_ros.sim.ba_windows import generate_window


@pytest.fixture(scope="module")
def bal_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ba") / "window.txt"
    write_bal(path, problem_to_bal(generate_window(10, 0).problem))
    return path


@pytest.mark.parametrize("solver", ["cgnr", "schur"])
def test_solves_writes_bal_and_prints_json(bal_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], solver: str) -> None:
    out = tmp_path / "solution.txt"
    code = main(["ba", str(bal_file), "-o", str(out), "--precision", "mixed", "--solver", solver,
                 "--sigma-px", "0.7", "--fix-cameras", "0,1", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    summary = json.loads(captured.out)
    assert summary["final_cost"] < summary["initial_cost"]
    assert summary["solver"] == solver and summary["precision_requested"] == "mixed"
    assert "  1 + cost" in captured.err  # per-iteration progress on stderr
    solution, original = read_bal(out), read_bal(bal_file)
    np.testing.assert_allclose(solution.camera_params[:2], original.camera_params[:2], atol=1e-12)
    np.testing.assert_array_equal(solution.obs_xy, original.obs_xy)
    assert not np.allclose(solution.points, original.points)


def test_bad_input_exits_1_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("2 1 1\n0 5 1.0 2.0\n")
    process = subprocess.run([sys.executable, "-m", "mp_slam_ros.cli.main", "ba", str(bad)],
                             capture_output=True, text=True, check=False)
    assert process.returncode == 1
    assert process.stderr.strip().count("\n") == 0
    assert "bad.txt:2" in process.stderr and "missing point" in process.stderr
