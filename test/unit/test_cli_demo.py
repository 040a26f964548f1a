"""The ROS-free parts of ``mp-slam demo``: the trajectory after loop closure from the nodes'
outputs, the ATE table, the sequence cache key and the cache's reuse."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mp_slam_ros.cli import demo
from mp_slam_ros.cli.demo import QUICK_SEQUENCE, ate_table, cached_sequence, trajectory_with_corrections
from mp_slam_ros.eval.metrics import ErrorStats
from mp_slam_ros.geometry.lie import se3_exp


def test_each_frame_takes_the_correction_of_its_latest_keyframe() -> None:
    rng = np.random.default_rng(3)
    T_odom_base = se3_exp(rng.normal(scale=0.5, size=(6, 6)))
    stamps = np.arange(6) * 100
    keyframe_stamps = np.array([100, 300])
    T_odom_cam = se3_exp(rng.normal(scale=0.5, size=(2, 6)))
    T_map_odom = se3_exp(rng.normal(scale=0.5, size=(2, 6)))  # the correction each keyframe carries
    T_map_cam = T_map_odom @ T_odom_cam
    trajectory = trajectory_with_corrections(stamps, T_odom_base, keyframe_stamps, T_odom_cam, T_map_cam)
    expected = [np.eye(4), T_map_odom[0], T_map_odom[0], T_map_odom[1], T_map_odom[1], T_map_odom[1]]
    for k in range(6):
        assert np.allclose(trajectory.positions_m[k], (expected[k] @ T_odom_base[k])[:3, 3], atol=1e-9)
    assert np.allclose(trajectory.timestamps_s, stamps * 1e-9)


def test_without_keyframes_the_trajectory_is_the_odometry() -> None:
    T_odom_base = se3_exp(np.random.default_rng(1).normal(size=(3, 6)))
    trajectory = trajectory_with_corrections(np.arange(3), T_odom_base, np.zeros(0), np.zeros((0, 4, 4)), np.zeros((0, 4, 4)))
    assert np.allclose(trajectory.positions_m, T_odom_base[:, :3, 3])


def test_ate_table_prints_centimetres_per_row() -> None:
    stats = ErrorStats(n=10, max=0.2, p99=0.19, p90=0.1, mean=0.05, rmse=0.06)
    table = ate_table([("mixed", "VO alone", stats)]).splitlines()
    assert table[1].split() == ["precision", "trajectory", "poses", "max", "p99", "p90", "mean"]
    assert table[3].split() == ["mixed", "VO", "alone", "10", "20.00", "19.00", "10.00", "5.00"]


def test_cache_key_follows_the_settings_and_a_cached_sequence_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert QUICK_SEQUENCE.key() == replace(QUICK_SEQUENCE).key()
    assert QUICK_SEQUENCE.key() != replace(QUICK_SEQUENCE, seed=QUICK_SEQUENCE.seed + 1).key()
    generated: list[Path] = []

    def fake_generate(config: object, out_dir: Path, progress: object) -> None:
        generated.append(Path(out_dir))
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / "sequence.json").write_text("{}")

    monkeypatch.setattr(demo, "generate_sequence", fake_generate)
    first = cached_sequence(QUICK_SEQUENCE, tmp_path)
    assert cached_sequence(QUICK_SEQUENCE, tmp_path) == first == tmp_path / QUICK_SEQUENCE.key()
    assert len(generated) == 1 and generated[0].name.endswith(".partial")
