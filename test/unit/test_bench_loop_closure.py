"""The per-mode summary, offline options and kept runs of bench/bench_loop_closure.py on
synthetic rows and keyframes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mp_slam_ros.cli.slam import SlamConfig, SlamRun, final_refinement
from mp_slam_ros.pipelines.loop_closure import CandidateResult, LoopClosure, LoopResult
from mp_slam_ros.pipelines.vo_run import VORun

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
sys.path.insert(0, str(Path(__file__).parent))

import bench_loop_closure  # noqa: E402
from bench_loop_closure import offline_config, summarize  # noqa: E402
from test_loop_world import circle_run, config as world_config, drifting_odometry, make_world  # noqa: E402


def _row(mode: str, vo: float, mixed: float, fp64: float, wrong: int, revisits: int, closed: int) -> dict:
    loops = {"accepted": 10, "wrong": wrong, "true_revisits": revisits, "revisits_closed": closed}
    return {"mode": mode, "ate_vo": {"rmse": vo}, "ate_mixed": {"rmse": mixed}, "ate_fp64": {"rmse": fp64}, "loops": loops}


def test_summarize_takes_the_worst_sequence_per_mode() -> None:
    rows = [
        _row("rgbd", 0.50, 0.02, 0.02, 0, 10, 9),
        _row("rgbd", 0.20, 0.05, 0.04, 1, 30, 21),
        _row("stereo", 0.40, 0.04, 0.04, 0, 0, 0),
    ]
    summary = summarize(rows)
    rgbd = summary["rgbd"]
    assert rgbd["sequences"] == 2
    assert rgbd["ate_mixed_max_m"] == pytest.approx(0.05)
    assert rgbd["ate_ratio_to_vo_max"] == pytest.approx(0.25)
    assert rgbd["mixed_over_fp64_max"] == pytest.approx(1.25)
    assert (rgbd["wrong_loops"], rgbd["accepted_loops"]) == (1, 20)
    assert rgbd["recall"] == pytest.approx(30 / 40)
    assert summary["stereo"]["recall"] is None  # no true revisits: no recall


def test_offline_config_sets_the_mode_and_synchronous_solves() -> None:
    config = offline_config("stereo")
    assert config.vo.mode.value == "stereo"
    assert config.vo.ba.synchronous and config.loop_closure.pgo.synchronous


def test_a_kept_run_replays_its_keyframes_through_the_loop_closure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--runs`` keeps the odometry and keyframes of a run; ``--replay`` puts those keyframes
    through a new loop closure (no VO): the same loops as the run's own."""
    world = make_world(1, [np.zeros(3)])
    truth, stamps, ids = circle_run(world, np.zeros(3), laps=1.3)
    keyframes = [world.keyframe(i, s, T, O) for i, s, T, O in zip(ids, stamps, truth, drifting_odometry(truth, world.rng))]
    config = SlamConfig(loop_closure=world_config(**{"loop.error_cell_deg": 1.0, "pgo.synchronous": True}))

    def fake_run_slam(bag: Path, config: SlamConfig, wheel_topic: str | None = None) -> SlamRun:
        assert wheel_topic == "/odom"
        loop_closure = LoopClosure(config.loop_closure)
        for keyframe in keyframes:
            loop_closure.add_keyframe(keyframe)
        global_ba = final_refinement(loop_closure)  # as run_slam
        return SlamRun(VORun(mode="rgbd"), loop_closure, list(range(len(keyframes))), keyframes, np.eye(4), global_ba)

    monkeypatch.setattr(bench_loop_closure, "run_slam", fake_run_slam)
    seq = tmp_path / "house-s1"
    ran, no_results = bench_loop_closure.slam_run(seq, config, tmp_path / "runs", replay_runs=False, wheel_topic="/odom")
    assert (tmp_path / "runs" / "house-s1-rgbd.pkl").exists() and no_results is None
    monkeypatch.setattr(bench_loop_closure, "run_slam", None)  # a replay runs no VO
    replayed, results = bench_loop_closure.slam_run(seq, config, tmp_path / "runs", replay_runs=True)
    assert results is not None and len(results) == len(keyframes)
    assert ran.loop_closure.counts["accepted"] > 0
    assert replayed.loop_closure.counts == ran.loop_closure.counts and ran.loop_closure.counts["global_ba"] == 1
    assert np.allclose(replayed.loop_closure.poses()[2], ran.loop_closure.poses()[2])
    assert replayed.global_ba is not None and np.allclose(replayed.global_ba.T_map_cam_before, ran.global_ba.T_map_cam_before)


def test_missed_revisits_are_bucketed_by_what_became_of_them() -> None:
    P = np.array([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0], [5.1, 0.0, 0.0]])
    Z = np.tile([0.0, 0.0, 1.0], (5, 1))

    def result(node: int, candidates: list[CandidateResult]) -> LoopResult:
        return LoopResult(node, node, node, np.eye(4), candidates)

    far = CandidateResult(1, 1, 0.5, False, False, "12 matches with depth < 30", 0)
    rejected = CandidateResult(0, 0, 0.5, False, False, "uncertain pose: translation sigma 0.061 m > 0.05 (30 inliers in 3 cells)", 30)
    verified = CandidateResult(1, 1, 0.5, True, False, "verified", 40)
    results = [result(0, []), result(1, []), result(2, []), result(3, [far, rejected]), result(4, [verified])]
    buckets = bench_loop_closure.missed_revisits(results, [2, 3, 4], P, Z)
    assert buckets == {"no candidate": 1, "uncertain pose: translation sigma N m > N": 1, "verified, rejected by consistency": 1}
    assert bench_loop_closure.missed_revisits(results[:2] + [result(2, [far])], [2], P, Z) == {"no candidate at the place": 1}


def test_the_report_counts_the_runs_against_the_issue_targets() -> None:
    from lc_report import counts, run_name, table_row  # noqa: PLC0415

    def row(sequence: str, vo: float, lc: float) -> dict:
        stats = {"rmse": lc, "max": 2 * lc, "p99": lc, "p90": lc, "mean": lc}
        loops = {"accepted": 10, "wrong": 0, "true_revisits": 4, "revisits_closed": 3, "recall": 0.75}
        return {"sequence": sequence, "mode": "rgbd", "ate_vo": {**stats, "rmse": vo}, "ate_mixed": stats,
                "ate_fp64": stats, "loops": loops, "converged": True}

    rows = [row("house-s5-180s-x1-stereo", 0.06, 0.027), row("twin-s3-180s-x1-stereo", 0.9, 0.1)]
    assert run_name(rows[0]) == "house s5 RGB-D"
    assert "| 6.0 | - | **2.70** | 0.45 |" in table_row(rows[0])  # no PGO-alone ATE in this report
    assert "| 6.0 | 3.00 | **2.70** |" in table_row({**rows[0], "ate_pgo": {"rmse": 0.03}})
    assert counts(rows).startswith("ATE <= 3 cm in 1 of 2; <= 0.2 of the VO alone in 1 of 2; 0 wrong of 20")
    assert "recall 0.75 (6 of 8)" in counts(rows)
