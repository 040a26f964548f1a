"""``mp-slam places``: natural order, JSON loops on a real (KITTI) revisit, errors exit 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mp_slam_ros.cli.main import main
from mp_slam_ros.cli.places import natural_key

KITTI = Path(__file__).resolve().parents[3] / "shared" / "data" / "kitti_stereo_excerpt"
needs_kitti = pytest.mark.skipif(not (KITTI / "image_l").is_dir(), reason="KITTI excerpt (../shared/data) absent")


def test_natural_sort() -> None:
    names = ["10.png", "2.png", "frame1.png", "1.png", "frame10.png", "frame2.png"]
    assert sorted(names, key=natural_key) == ["1.png", "2.png", "10.png", "frame1.png", "frame2.png", "frame10.png"]


@needs_kitti
def test_revisit_found_and_straight_drive_has_no_loops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Left images 0..29 of a straight drive, then right images 3..6 (the same places seen again
    from 0.54 m to the side): every loop is a query from the revisit matching its place."""
    for i in range(30):
        shutil.copy(KITTI / "image_l" / f"{i:06d}.png", tmp_path / f"{i}.png")
    for j in range(4):
        shutil.copy(KITTI / "image_r" / f"{j + 3:06d}.png", tmp_path / f"{30 + j}.png")
    assert main(["places", str(tmp_path), "--json"]) == 0
    loops = json.loads(capsys.readouterr().out)["loops"]
    assert {loop["query"] for loop in loops} == {"30.png", "31.png", "32.png", "33.png"}
    for loop in loops:
        query, match = int(loop["query"][:-4]), int(loop["match"][:-4])
        assert abs(match - (query - 27)) <= 3 and loop["inliers"] >= 50
    assert main(["places", str(KITTI / "image_l"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["loops"] == []


def test_errors_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["places", str(tmp_path)]) == 1
    assert "no images" in capsys.readouterr().err
    (tmp_path / "1.png").write_bytes(b"not a png")
    assert main(["places", str(tmp_path)]) == 1
    assert "not a readable image" in capsys.readouterr().err
