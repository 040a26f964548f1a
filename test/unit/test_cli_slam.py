"""``mp-slam slam`` on a short generated sequence: TUM, g2o and JSON summary; bad options exit 1."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mp_slam_ros.cli import slam
from mp_slam_ros.cli.main import main
from mp_slam_ros.config import with_updates
from mp_slam_ros.errors import ConfigError
from mp_slam_ros.geometry.lie import se3_exp
from mp_slam_ros.io.g2o import read_g2o
from mp_slam_ros.io.tum import read_tum
from mp_slam_ros.pipelines import vo_run
from mp_slam_ros.pipelines.vo import Frame, TrackResult, TrackingStatus, VisualOdometry
from mp_slam_ros.sim.config import SequenceConfig
from mp_slam_ros.sim.sequence import generate_sequence


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s, 320x240 RGB-D household sequence."""
    base = SequenceConfig()
    cfg = replace(base, seed=5, duration_s=4.0, camera=replace(base.camera, image_scale=0.5))
    out = tmp_path_factory.mktemp("slam") / "seq"
    generate_sequence(cfg, out)
    return out


def test_slam_writes_trajectory_graph_and_summary(sequence: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tum, graph = tmp_path / "slam.tum", tmp_path / "slam.g2o"
    argv = ["slam", str(sequence / "bag"), "--tum", str(tum), "--graph", str(graph), "--json", "--no-progress",
            "--set", "loop_closure.loop.min_age_s=1.5", "--precision", "fp64", "--wheel-odom", "/odom"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["keyframes"] == summary["vo"]["keyframes"] > 0
    assert set(summary["loops"]) == {"proposed", "verified", "accepted", "rejected_verification", "rejected_consistency"}
    assert summary["pgo"]["precision"] == "fp64"
    assert len(read_tum(tum)) == summary["vo"]["frames"] - summary["vo"]["lost"]
    assert read_g2o(graph).num_nodes == summary["keyframes"]
    ba = summary["global_ba"]  # after the last keyframe: the graph written holds its poses
    assert ba["keyframes_refined"] >= 2 and ba["keyframes_fixed"] >= 1 and ba["observations"] > 0 and ba["converged"]


def test_slam_without_the_global_ba(sequence: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["slam", str(sequence / "bag"), "--tum", str(tmp_path / "slam.tum"), "--json", "--no-progress",
            "--set", "loop_closure.global_ba.enabled=false"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["global_ba"] is None


def test_slam_bad_option_is_one_line_and_exit_1(sequence: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slam", str(sequence / "bag"), "--tum", str(tmp_path / "x.tum"), "--set", "loop_closure.pgo.solver=qr"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "loop_closure.pgo.solver" in error
    assert main(["slam", str(sequence / "bag"), "--tum", str(tmp_path / "x.tum"), "--wheel-odom", "/wheel", "--no-progress"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "/wheel" in error


def test_slam_reads_a_preset_of_both_nodes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preset = Path(__file__).resolve().parents[2] / "config" / "household_rgbd.yaml"
    parser = argparse.ArgumentParser()
    slam.add_arguments(parser)
    args = parser.parse_args([str(tmp_path / "bag"), "--tum", str(tmp_path / "x.tum"), "--params", str(preset)])
    config = slam.config_from_args(args)
    assert config.vo.tracking.sideways_sigma_m == 0.0005  # vo_node's block, a value off the default
    notes = capsys.readouterr().err
    assert "vo_node's own parameters do not apply" in notes and "publish_tf" in notes
    assert "loop_closure_node's own parameters do not apply" in notes and "tf_rate_hz" in notes
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text("/**/loop_closure_node:\n  ros__parameters:\n    tf_rate_hz: 30.0\n    loop:\n      min_age_s: 7.0\n")
    config = slam.config_from_args(parser.parse_args([str(tmp_path / "bag"), "--tum", "x.tum", "--params", str(nodes)]))
    assert config.loop_closure.loop.min_age_s == 7.0  # loop_closure_node's block
    assert config.vo.tracking.sideways_sigma_m == 0.0  # no vo_node block: the defaults
    typo = tmp_path / "typo.yaml"
    typo.write_text("vo:\n  tracking:\n    sideways_sigma: 0.001\n")
    with pytest.raises(ConfigError, match="vo.tracking.sideways_sigma"):
        slam.config_from_args(parser.parse_args([str(tmp_path / "bag"), "--tum", "x.tum", "--params", str(typo)]))
    misspelt = tmp_path / "misspelt.yaml"  # a node's own parameter misspelt: an error, as the node gives
    misspelt.write_text("loop_closure_node:\n  ros__parameters:\n    tf_rate: 30.0\n")
    with pytest.raises(ConfigError, match="tf_rate.*unknown parameter of loop_closure_node.*misspelt.yaml"):
        slam.config_from_args(parser.parse_args([str(tmp_path / "bag"), "--tum", "x.tum", "--params", str(misspelt)]))


class _LostOnceVO(VisualOdometry):
    """The VO with one frame after the first keyframe reported LOST (as when tracking resumes
    on the kept map); every keyframe it publishes is recorded."""

    published: list = []

    def track(self, frame: Frame) -> TrackResult:
        result = super().track(frame)
        if result.keyframe is not None:
            self.published.append(result.keyframe)
        elif len(self.published) == 1 and not getattr(self, "_lost", False):
            self._lost, result.status = True, TrackingStatus.LOST
        return result


def test_slam_gives_the_loop_closure_the_keyframes_as_published(sequence: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As the node: a LOST stretch the VO relocalises from leaves the next keyframe (and its
    tracked covariance) as the VO published it; only a new map's keyframe, with the VO's lost
    covariance, gets a loose edge (test_loop_closure)."""
    monkeypatch.setattr(vo_run, "VisualOdometry", _LostOnceVO)  # run_slam drives run_vo
    monkeypatch.setattr(_LostOnceVO, "published", [])
    config = with_updates(slam.SlamConfig(), {"vo.ba.synchronous": True, "loop_closure.pgo.synchronous": True})
    run = slam.run_slam(sequence / "bag", config)
    assert TrackingStatus.LOST in run.vo.statuses and len(run.keyframes) >= 3
    assert len(run.keyframes) == len(_LostOnceVO.published)
    assert all(a is b for a, b in zip(run.keyframes, _LostOnceVO.published))


def test_frame_corrections_interpolate_between_keyframes_of_one_session() -> None:
    """A frame halfway between two keyframes takes half of the change of correction (on SE(3));
    frames after a session's last keyframe keep its correction; frames before any keyframe none."""
    corrections = np.stack([np.eye(4), se3_exp(np.array([0.2, 0.0, 0.0, 0.0, 0.0, 0.4])).reshape(4, 4), np.eye(4)])
    stamps = np.array([1.0, 2.0, 3.0])
    sessions = np.array([0, 0, 1])
    nodes = np.array([-1, 0, 0, 1, 1, 2])
    frame_stamps = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.5])
    T = slam.frame_corrections(corrections, stamps, sessions, nodes, frame_stamps)
    half = se3_exp(np.array([0.1, 0.0, 0.0, 0.0, 0.0, 0.2])).reshape(4, 4)
    for got, want in zip(T, [np.eye(4), np.eye(4), half, corrections[1], corrections[1], np.eye(4)]):
        np.testing.assert_allclose(got, want, atol=1e-12)
