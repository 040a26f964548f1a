"""evo-based evaluation: known perturbations give known errors; CLI table, JSON and plots."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mp_slam_ros.cli.main import main
from mp_slam_ros.errors import FileFormatError, ProblemError
from mp_slam_ros.eval.metrics import ErrorStats, RpeSpec, evaluate
from mp_slam_ros.io.tum import TumTrajectory, write_tum


def _loop_trajectory(n: int = 600) -> TumTrajectory:
    """A 3D loop (ellipse with height and attitude changes), 30 Hz."""
    t = np.arange(n) / 30.0
    phase = 2 * np.pi * t / t[-1]
    positions = np.column_stack([3 * np.cos(phase), 2 * np.sin(phase), 0.3 * np.sin(3 * phase)])
    rotations = Rotation.from_euler("zyx", np.column_stack([phase + np.pi / 2, 0.1 * np.sin(2 * phase), 0.05 * np.cos(phase)]))
    return TumTrajectory(1_700_000_000.0 + t, positions, rotations.as_quat())


def _transformed(trajectory: TumTrajectory, T: np.ndarray) -> TumTrajectory:
    return TumTrajectory.from_matrices(trajectory.timestamps_s, T @ trajectory.matrices())


def test_rigidly_moved_estimate_has_zero_error() -> None:
    gt = _loop_trajectory()
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("xyz", [10, -20, 70], degrees=True).as_matrix()
    T[:3, 3] = [5.0, -3.0, 1.0]
    result = evaluate(gt, _transformed(gt, T), "moved")
    assert result.ate_m.max < 1e-9 and result.rpe_m.max < 1e-9 and result.rpe_deg.max < 1e-6
    np.testing.assert_allclose(result.T_ref_est, np.linalg.inv(T), atol=1e-9)


def test_known_position_offset_gives_known_ate() -> None:
    """Alternating +-d offsets along each pose's normal to the loop cannot be aligned away."""
    gt = _loop_trajectory()
    d = 0.05
    signs = np.where(np.arange(len(gt)) % 2 == 0, 1.0, -1.0)
    moved = TumTrajectory(gt.timestamps_s, gt.positions_m + d * signs[:, None] * np.array([0.0, 0.0, 1.0]), gt.quats_xyzw)
    result = evaluate(gt, moved, "offset")
    for stat in ("max", "p99", "p90", "mean", "rmse"):
        assert getattr(result.ate_m, stat) == pytest.approx(d, rel=1e-3)


def test_gaussian_noise_gives_its_rms() -> None:
    gt = _loop_trajectory(3000)
    sigma = 0.02
    noise = np.random.default_rng(0).normal(0.0, sigma, (len(gt), 3))
    result = evaluate(gt, TumTrajectory(gt.timestamps_s, gt.positions_m + noise, gt.quats_xyzw), "noisy")
    assert result.ate_m.rmse == pytest.approx(sigma * np.sqrt(3), rel=0.03)
    assert result.ate_m.n == 3000


def test_scale_drift_gives_known_rpe() -> None:
    """Gentle arc (radius 50 m, 0.1 m steps), estimate stretched by 2 %: RPE over 1 m is 0.02 m."""
    n, radius = 200, 50.0
    t = 1_700_000_000.0 + np.arange(n) * 0.1
    angle = np.arange(n) * 0.1 / radius
    positions = np.column_stack([radius * np.sin(angle), radius * (1 - np.cos(angle)), np.zeros(n)])
    quats = Rotation.from_euler("z", angle[:, None]).as_quat()
    gt = TumTrajectory(t, positions, quats)
    stretched = TumTrajectory(t, positions * 1.02, quats)
    result = evaluate(gt, stretched, "scaled", rpe=RpeSpec(1.0, "m"))
    assert result.rpe_m.mean == pytest.approx(0.02, rel=0.1)
    assert result.rpe_deg.max < 1e-9
    frames = evaluate(gt, stretched, "scaled", rpe=RpeSpec(1, "frames"))
    assert frames.rpe_m.max == pytest.approx(0.002, rel=1e-4)
    sim3 = evaluate(gt, stretched, "scaled", correct_scale=True)
    assert sim3.ate_m.max < 1e-9 and sim3.scale == pytest.approx(1 / 1.02)


def test_timestamps_are_associated() -> None:
    gt = _loop_trajectory()
    every_other = TumTrajectory(gt.timestamps_s[::2] + 0.004, gt.positions_m[::2], gt.quats_xyzw[::2])
    result = evaluate(gt, every_other, "half", max_time_diff_s=0.01)
    assert result.ate_m.n == 300 and result.ate_m.max < 1e-9


def test_no_matching_timestamps() -> None:
    gt = _loop_trajectory()
    late = TumTrajectory(gt.timestamps_s + 1000.0, gt.positions_m, gt.quats_xyzw)
    with pytest.raises(ProblemError, match="late: no poses match the ground truth within 0.01 s"):
        evaluate(gt, late, "late")


def test_stats_of_known_errors() -> None:
    stats = ErrorStats.of(np.arange(1, 101, dtype=float))
    assert (stats.n, stats.max, stats.mean) == (100, 100.0, 50.5)
    assert stats.p90 == pytest.approx(90.1) and stats.p99 == pytest.approx(99.01)
    assert stats.rmse == pytest.approx(np.sqrt(np.mean(np.arange(1, 101) ** 2)))


def test_cli_table_json_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = _loop_trajectory()
    write_tum(tmp_path / "gt.tum", gt)
    rng = np.random.default_rng(1)
    for k in range(3):
        noisy = TumTrajectory(gt.timestamps_s, gt.positions_m + rng.normal(0, 0.01 * (k + 1), (len(gt), 3)), gt.quats_xyzw)
        write_tum(tmp_path / f"run{k}.tum", noisy)
    out = tmp_path / "out"
    code = main(["eval", "--gt", str(tmp_path / "gt.tum"), "--est", str(tmp_path / "run0.tum"), str(tmp_path / "run1.tum"),
                 "--est", str(tmp_path / "run2.tum"), "-o", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    for word in ("run0.tum", "run2.tum", "ATE (m)", "RPE rot (deg)", "max", "p99", "p90", "mean", "rmse"):
        assert word in printed
    results = json.loads((out / "results.json").read_text())
    rmse = [e["ate_m"]["rmse"] for e in results["estimates"]]
    assert rmse == sorted(rmse) and rmse[0] == pytest.approx(0.01 * np.sqrt(3), rel=0.15)
    for png in ("trajectories_top_view.png", "ate_over_time.png", "ate_cdf.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "gt.tum").write_text("1 0 0 0 0 0 0 1\n2 0 0 zero 0 0 0 1\n")
    assert main(["eval", "--gt", str(tmp_path / "gt.tum"), "--est", str(tmp_path / "gt.tum"), "--no-plots"]) == 1
    assert "gt.tum:2: field tz='zero' is not a number" in capsys.readouterr().err
    with pytest.raises(FileFormatError):
        from mp_slam_ros.io.tum import read_tum

        read_tum(tmp_path / "gt.tum")
