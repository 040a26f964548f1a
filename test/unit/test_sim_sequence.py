"""Generated sequences: byte-identical per seed, every topic readable and consistent, CLI smoke test."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mp_slam_ros.cli.main import main
from mp_slam_ros.errors import ConfigError
from mp_slam_ros.io.bags import BagReader, image_array, stamp_ns
from mp_slam_ros.io.tum import read_tum
from mp_slam_ros.sim.config import CameraConfig, HouseConfig, SequenceConfig
from mp_slam_ros.sim.sequence import TOPICS, generate_sequence

SMALL = SequenceConfig(
    seed=4,
    duration_s=0.5,
    house=HouseConfig(texture_detail=0.1, n_rooms=2),
    camera=CameraConfig(image_scale=0.15, rate_hz=10.0, stereo_baseline_m=0.12, offset_m=(0.1, 0.05), image_noise_std=1.0),
)


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("seq") / "a"
    generate_sequence(SMALL, out)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(sequence: Path, tmp_path: Path) -> None:
    generate_sequence(SMALL, tmp_path / "b")
    first, second = _files(sequence), _files(tmp_path / "b")
    assert sorted(first) == ["bag/bag.mcap", "bag/metadata.yaml", "groundtruth.tum", "odometry.tum", "sequence.json"]
    for name in first:
        assert first[name] == second[name], name


def test_other_seed_differs(sequence: Path, tmp_path: Path) -> None:
    generate_sequence(replace(SMALL, seed=5), tmp_path / "c")
    assert _files(sequence)["bag/bag.mcap"] != _files(tmp_path / "c")["bag/bag.mcap"]


def test_every_topic_round_trips(sequence: Path) -> None:
    info = json.loads((sequence / "sequence.json").read_text())
    ground_truth = read_tum(sequence / "groundtruth.tum")
    n_frames = 5
    assert info["n_frames"] == n_frames == len(ground_truth)
    width, height = info["camera"]["width"], info["camera"]["height"]
    with BagReader(sequence / "bag") as bag:
        bag.require({topic: msgtype for topic, msgtype in TOPICS.values()})
        counts: dict[str, int] = {}
        for message, msg in bag.decoded():
            counts[message.topic] = counts.get(message.topic, 0) + 1
            if hasattr(msg, "header"):
                assert stamp_ns(msg.header) == message.stamp_ns
            if message.topic in (TOPICS["rgb"][0], TOPICS["right"][0]):
                assert msg.encoding == "rgb8" and image_array(msg).shape == (height, width, 3)
            elif message.topic == TOPICS["depth"][0]:
                depth = image_array(msg)
                assert msg.encoding == "16UC1" and depth.shape == (height, width)
                assert 0.3 < np.mean(depth > 0) and depth.max() <= 6000
            elif message.topic == TOPICS["right_info"][0]:
                assert msg.p[3] == pytest.approx(-msg.k[0] * 0.12)
            elif message.topic == TOPICS["ground_truth"][0]:
                k = counts[message.topic] - 1
                transform = msg.transforms[0]
                assert (transform.header.frame_id, transform.child_frame_id) == ("world", "base_link")
                t = transform.transform.translation
                np.testing.assert_allclose([t.x, t.y, t.z], ground_truth.positions_m[k], atol=1e-8)
                assert message.stamp_ns / 1e9 == pytest.approx(ground_truth.timestamps_s[k], abs=1e-6)
            elif message.topic == TOPICS["tf_static"][0]:
                T = np.eye(4)
                T[:3, :3] = Rotation.from_quat([getattr(msg.transforms[0].transform.rotation, a) for a in "xyzw"]).as_matrix()
                T[:3, 3] = [getattr(msg.transforms[0].transform.translation, a) for a in "xyz"]
                np.testing.assert_allclose(T, info["T_base_cam"], atol=1e-9)
                assert [tf.child_frame_id for tf in msg.transforms] == ["camera_optical_frame", "camera_right_optical_frame"]
    per_frame = ("rgb", "rgb_info", "depth", "depth_info", "right", "right_info", "ground_truth")
    assert {role: counts[TOPICS[role][0]] for role in per_frame} == {role: n_frames for role in per_frame}
    assert counts[TOPICS["odom"][0]] == 21  # 50 Hz over [0, 0.4] s
    assert counts[TOPICS["tf_static"][0]] == 1


def test_existing_output_is_refused(sequence: Path) -> None:
    with pytest.raises(ConfigError, match="exists and is not an empty directory"):
        generate_sequence(SMALL, sequence)


def test_cli_generates_and_rejects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["generate", "--seed", "1", "--duration", "0.3", "--rate-hz", "10", "--image-scale", "0.1", "--rooms", "2",
            "--texture-detail", "0.1", "--no-progress", "--depth-encoding", "32FC1"]
    assert main([*args, "-o", str(tmp_path / "ok")]) == 0
    assert "wrote" in capsys.readouterr().out
    with BagReader(tmp_path / "ok" / "bag") as bag:
        depth = next(image_array(msg) for _, msg in bag.decoded([TOPICS["depth"][0]]))
    assert depth.dtype == np.float32 and np.isnan(depth).any() and np.nanmax(depth) < 6.5
    assert main([*args, "-o", str(tmp_path / "bad"), "--camera-offset", "1.5", "0"]) == 1
    assert "camera.offset_m=(1.5, 0.0)" in capsys.readouterr().err
    assert main([*args[:4], "0", *args[5:], "-o", str(tmp_path / "zero")]) == 1
    assert "duration_s=0.0: must be > 0" in capsys.readouterr().err
