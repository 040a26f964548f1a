"""TUM trajectory files: round trip and errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mp_slam_ros.errors import FileFormatError
from mp_slam_ros.io.tum import TumTrajectory, read_tum, write_tum


def _trajectory(n: int = 50) -> TumTrajectory:
    rng = np.random.default_rng(0)
    return TumTrajectory(
        1_700_000_000.0 + np.arange(n) / 30.0,
        rng.normal(size=(n, 3)),
        Rotation.random(n, random_state=1).as_quat(),
    )


def test_round_trip(tmp_path: Path) -> None:
    trajectory = _trajectory()
    write_tum(tmp_path / "t.tum", trajectory, comment="test")
    back = read_tum(tmp_path / "t.tum")
    np.testing.assert_allclose(back.timestamps_s, trajectory.timestamps_s, atol=1e-6)
    np.testing.assert_allclose(back.positions_m, trajectory.positions_m, atol=1e-9)
    np.testing.assert_allclose(back.matrices(), trajectory.matrices(), atol=1e-8)


def test_matrices_round_trip() -> None:
    trajectory = _trajectory(5)
    again = TumTrajectory.from_matrices(trajectory.timestamps_s, trajectory.matrices())
    np.testing.assert_allclose(again.matrices(), trajectory.matrices(), atol=1e-12)


def test_evo_reads_our_files(tmp_path: Path) -> None:
    from evo.tools import file_interface

    trajectory = _trajectory()
    write_tum(tmp_path / "t.tum", trajectory)
    evo_traj = file_interface.read_tum_trajectory_file(str(tmp_path / "t.tum"))
    np.testing.assert_allclose(evo_traj.positions_xyz, trajectory.positions_m, atol=1e-9)
    np.testing.assert_allclose(evo_traj.orientations_quat_wxyz[:, [1, 2, 3, 0]], trajectory.quats_xyzw, atol=1e-9)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1 0 0 0 0 0 0 1\n2 0 0 0 0 0 1\n", r"t\.tum:2: expected 8 fields"),
        ("# header\n1 0 0 x 0 0 0 1\n", r"t\.tum:2: field tz='x' is not a number"),
        ("1 0 0 0 0 0 0 1\n1 0 0 0 0 0 0 1\n", r"t\.tum:2: field timestamp=1 is not after"),
        ("1 0 0 0 0 0 0 2\n", r"t\.tum:1: quaternion .* norm 2\.0"),
        ("1 0 0 nan 0 0 0 1\n", r"t\.tum:1: field tz='nan' is not finite"),
        ("# only a comment\n", r"t\.tum: no poses"),
    ],
)
def test_bad_files_name_line_and_field(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "t.tum").write_text(text)
    with pytest.raises(FileFormatError, match=match):
        read_tum(tmp_path / "t.tum")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="cannot read"):
        read_tum(tmp_path / "absent.tum")
