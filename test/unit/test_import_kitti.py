"""``mp-slam import kitti``: a tiny synthetic KITTI layout round-trips into a bag; errors are typed."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from mp_slam_ros.cli.main import main
from mp_slam_ros.errors import FileFormatError
from mp_slam_ros.eval.metrics import RpeSpec, evaluate
from mp_slam_ros.io.kitti import read_kitti
from mp_slam_ros.io.tum import read_tum
from mp_slam_ros.pipelines.vo_bag import BagFrames
from mp_slam_ros.pipelines.vo_config import SensorMode

P0 = "P0: 700 0 300 0 0 700 100 0 0 0 1 0"
P1 = "P1: 700 0 300 -378 0 700 100 0 0 0 1 0"
EXCERPT = Path(os.environ.get("MP_SLAM_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "data" / "kitti_stereo_excerpt"


def write_sequence(root: Path, frames: int = 3, dirs: tuple[str, str] = ("image_0", "image_1")) -> Path:
    rng = np.random.default_rng(0)
    for d in dirs:
        (root / d).mkdir(parents=True)
        for k in range(frames):
            cv2.imwrite(str(root / d / f"{k:06d}.png"), rng.integers(0, 255, (40, 60), dtype=np.uint8))
    (root / "calib.txt").write_text(f"{P0}\n{P1}\nP2: 1 0 0 0 0 1 0 0 0 0 1 0\n")
    (root / "poses.txt").write_text("".join(f"1 0 0 0 0 1 0 0 0 0 1 {0.5 * k}\n" for k in range(frames)))
    return root


def test_import_writes_stereo_topics_and_ground_truth(tmp_path: Path) -> None:
    src = write_sequence(tmp_path / "seq")
    assert main(["import", "kitti", str(src), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    with BagFrames(tmp_path / "out" / "bag") as bag:
        assert bag.mode is SensorMode.STEREO and bag.topics.image == "/left/image_rect"
        frames = list(bag)
        np.testing.assert_allclose(bag.T_base_cam[:3, :3] @ [0, 0, 1], [1, 0, 0], atol=1e-12)  # optical z = base x
    assert len(frames) == 3 and frames[0].camera.baseline_m == pytest.approx(0.54)
    assert frames[1].stamp_ns - frames[0].stamp_ns == 100_000_000
    truth = read_tum(tmp_path / "out" / "groundtruth.tum")
    np.testing.assert_allclose(truth.positions_m[2], [1.0, 0.0, 0.0], atol=1e-9)  # forward along base x


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda root: (root / "calib.txt").write_text(P0 + "\n"), "P0 and P1"),
        (lambda root: (root / "image_1" / "000002.png").unlink(), "left and 2 right"),
        (lambda root: (root / "poses.txt").write_text("1 0 0\n"), "poses for 3 images"),
        (lambda root: (root / "times.txt").write_text("0\n0.1\n0.1\n"), "increasing"),
    ],
)
def test_damaged_layouts_raise_file_errors(tmp_path: Path, damage, words: str) -> None:
    root = write_sequence(tmp_path / "seq")
    damage(root)
    with pytest.raises(FileFormatError, match=words):
        read_kitti(root)


@pytest.mark.skipif(not EXCERPT.is_dir(), reason="shared KITTI excerpt absent")
def test_kitti_excerpt_tracks_every_frame(tmp_path: Path) -> None:
    from mp_slam_ros.config import load_yaml
    from mp_slam_ros.pipelines.vo_config import VOConfig
    from mp_slam_ros.pipelines.vo_run import run_vo

    assert main(["import", "kitti", str(EXCERPT), "-o", str(tmp_path / "kitti"), "--no-progress"]) == 0
    preset = Path(__file__).resolve().parents[2] / "config" / "kitti_stereo.yaml"
    run = run_vo(tmp_path / "kitti" / "bag", load_yaml(preset, VOConfig))
    assert run.summary()["lost"] == 0
    evaluation = evaluate(read_tum(tmp_path / "kitti" / "groundtruth.tum"), run.trajectory(), "kitti", rpe=RpeSpec(10.0, "m"))
    assert evaluation.rpe_m.mean / 10.0 < 0.05  # drift below 5% (the benchmark reports the exact figure)


def write_tum_rgbd(root: Path, frames: int = 3) -> Path:
    """A tiny TUM RGB-D folder: colour, depth 0.01 s later (2 m everywhere), one spare depth image."""
    rng = np.random.default_rng(1)
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    rgb_lines, depth_lines, truth_lines = ["# colour"], ["# depth"], ["# ground truth"]
    for k in range(frames):
        t = 100.0 + 0.1 * k
        cv2.imwrite(str(root / "rgb" / f"{t:.6f}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
        cv2.imwrite(str(root / "depth" / f"{t + 0.01:.6f}.png"), np.full((48, 64), 10000, np.uint16))
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
        depth_lines.append(f"{t + 0.01:.6f} depth/{t + 0.01:.6f}.png")
        truth_lines.append(f"{t:.6f} 0 0 {0.5 * k} 0 0 0 1")
    cv2.imwrite(str(root / "depth" / "999.png"), np.full((48, 64), 10000, np.uint16))
    depth_lines.append("200.0 depth/999.png")
    for name, lines in (("rgb.txt", rgb_lines), ("depth.txt", depth_lines), ("groundtruth.txt", truth_lines)):
        (root / name).write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize("camera", ["freiburg3", "freiburg1"])
def test_import_tum_rgbd_pairs_colour_and_depth(tmp_path: Path, camera: str) -> None:
    src = write_tum_rgbd(tmp_path / f"rgbd_dataset_{camera}_desk")
    assert main(["import", "tum", str(src), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    with BagFrames(tmp_path / "out" / "bag") as bag:
        assert bag.mode is SensorMode.RGBD
        frames = list(bag)
    assert len(frames) == 3 and frames[0].image.shape == (48, 64, 3)
    assert frames[0].camera.fx == pytest.approx({"freiburg3": 535.4, "freiburg1": 517.3}[camera])
    assert not np.any(frames[0].camera.distortion_coeffs)  # undistorted on import
    assert np.nanmedian(frames[0].depth_m) == pytest.approx(2.0)
    truth = read_tum(tmp_path / "out" / "groundtruth.tum")
    np.testing.assert_allclose(truth.positions_m[2], [0.0, 0.0, 1.0], atol=1e-9)  # the mocap world frame is kept
    np.testing.assert_allclose(truth.matrices()[2][:3, 0], [0.0, 0.0, 1.0], atol=1e-9)  # base x = camera z


def test_import_tum_rgbd_errors(tmp_path: Path) -> None:
    from mp_slam_ros.io.tum_rgbd import read_tum_rgbd

    src = write_tum_rgbd(tmp_path / "unnamed")
    with pytest.raises(FileFormatError, match="unknown camera"):
        read_tum_rgbd(src)
    assert len(read_tum_rgbd(src, (500.0, 500.0, 32.0, 24.0)).rgb) == 3
    (src / "depth.txt").write_text("300.0 depth/999.png\n")
    with pytest.raises(FileFormatError, match="no colour and depth images"):
        read_tum_rgbd(src, (500.0, 500.0, 32.0, 24.0))
