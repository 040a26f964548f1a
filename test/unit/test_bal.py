"""BAL files: exact round trip, conventions against BAL's own projection formula, typed errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mp_slam_ros.errors import FileFormatError
from mp_slam_ros.io.bal import BALProblem, bal_to_problem, problem_to_bal, read_bal, solution_to_bal, write_bal
from mp_slam_ros.sim.ba_windows import WindowConfig, generate_window
from mp_slam_ros.solvers.ba import BundleAdjustment, ba_solver_options, bundle_adjust
from mp_slam_ros.solvers.robust import RobustLoss


def _bal_project(camera: np.ndarray, point: np.ndarray) -> np.ndarray:
    """The BAL documentation's projection, written independently of the package."""
    P = Rotation.from_rotvec(camera[:3]).apply(point) + camera[3:6]
    p = -P[:2] / P[2]
    r2 = p @ p
    return camera[6] * (1.0 + camera[7] * r2 + camera[8] * r2 * r2) * p


def _synthetic_bal(seed: int = 0, noise_px: float = 0.0) -> BALProblem:
    rng = np.random.default_rng(seed)
    num_cams, num_points = 4, 30
    cams = np.zeros((num_cams, 9))
    cams[:, :3] = 0.05 * rng.standard_normal((num_cams, 3))
    cams[:, 3:6] = [0.0, 0.0, -6.0] + 0.3 * rng.standard_normal((num_cams, 3))  # scene in front (-z)
    cams[:, 6] = rng.uniform(400, 600, num_cams)
    cams[:, 7] = rng.uniform(-0.05, 0.05, num_cams)
    cams[:, 8] = rng.uniform(-0.01, 0.01, num_cams)
    points = rng.uniform(-1, 1, (num_points, 3))
    obs_cam, obs_point = np.meshgrid(np.arange(num_cams), np.arange(num_points), indexing="ij")
    obs_cam, obs_point = obs_cam.ravel(), obs_point.ravel()
    xy = np.array([_bal_project(cams[c], points[p]) for c, p in zip(obs_cam, obs_point)])
    return BALProblem(cams, points, obs_cam, obs_point, xy + noise_px * rng.standard_normal(xy.shape))


def test_write_read_round_trip_is_exact(tmp_path: Path) -> None:
    bal = _synthetic_bal(noise_px=0.5)
    write_bal(tmp_path / "p.txt", bal)
    back = read_bal(tmp_path / "p.txt")
    for name in ("camera_params", "points", "obs_cam", "obs_point", "obs_xy"):
        np.testing.assert_array_equal(getattr(back, name), getattr(bal, name))


def test_conversion_matches_bal_projection_and_inverts() -> None:
    bal = _synthetic_bal()
    problem = bal_to_problem(bal)
    ba = BundleAdjustment(problem)
    assert ba.cost(problem.initial_state(), np.float64) < 1e-18  # noise-free: zero residuals
    again = solution_to_bal(bal, problem.initial_state())
    np.testing.assert_allclose(again.camera_params, bal.camera_params, atol=1e-12)
    np.testing.assert_array_equal(again.points, bal.points)


def test_solving_a_bal_problem_and_writing_it(tmp_path: Path) -> None:
    bal = _synthetic_bal(seed=1, noise_px=0.5)
    perturbed = BALProblem(bal.camera_params + 0.01, bal.points + 0.02, bal.obs_cam, bal.obs_point, bal.obs_xy)
    fixed = np.array([True, True, False, False])
    result = bundle_adjust(bal_to_problem(perturbed, fixed_cams=fixed), ba_solver_options("fp64"), solver="schur")
    assert result.summary.final_cost < 0.5 * 0.5**2 * 2 * len(bal.obs_cam)  # the noise floor
    out = solution_to_bal(perturbed, result.state)
    np.testing.assert_allclose(out.camera_params[fixed], perturbed.camera_params[fixed], atol=1e-12)
    write_bal(tmp_path / "s.txt", out)
    assert read_bal(tmp_path / "s.txt").camera_params.shape == (4, 9)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.txt"
    path.write_text(text)
    return path


VALID_TAIL = "\n".join(["0"] * 9 + ["1", "2", "3"]) + "\n"


@pytest.mark.parametrize(
    "text, line, reason",
    [
        ("", 1, "header needs 3 counts"),
        ("1 1\n", 1, "header needs 3 counts"),
        ("1 -1 1\n", 1, "num_points=-1 is negative"),
        ("1 1 x\n", 1, "not an integer"),
        ("1 1 2\n0 0 1.0 2.0\n0 0 1.0\n" + VALID_TAIL, 3, "observation needs 4 values"),
        ("1 1 2\n0 0 1.0\n2.0 0 0 1.0 2.0\n" + VALID_TAIL, 2, r"observation needs 4 values \(camera point x y\), got 3"),
        ("1 1 1\n0 0 nan 2.0\n" + VALID_TAIL, 2, "non-finite"),
        ("1 1 1\n0 1 1.0 2.0\n" + VALID_TAIL, 2, "missing point"),
        ("1 1 1\n2 0 1.0 2.0\n" + VALID_TAIL, 2, "missing camera"),
        ("1 1 1\n0.5 0 1.0 2.0\n" + VALID_TAIL, 2, "not an integer"),
        ("1 1 1\n0 0 1.0 2.0\n" + "0\n" * 10, 12, "file ends after 10 of 12"),
        ("1 1 1\n0 0 1.0 2.0\n" + VALID_TAIL + "7\n", 15, "unexpected values"),
        ("1 1 1\n0 0 1.0 2.0\n" + VALID_TAIL.replace("2\n", "inf\n"), 13, "not finite"),
        ("1 1 1\n0 0 1.0 2.0\n" + VALID_TAIL.replace("1\n", "one\n"), 12, "not a number"),
        ("1 1 2\n0 0 1.0 2.0\n", 3, "file ends after 1 of 2 observations"),
        ("1 1 1\n\n0 0 1.0\n\n" + VALID_TAIL, 3, "observation needs 4 values"),  # lines counted with the blank ones
        ("1 1 1\n\n0 0 1.0 2.0\n\n" + VALID_TAIL.replace("2\n", "inf\n"), 15, "not finite"),
    ],
)
def test_malformed_files_raise_typed_errors(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(FileFormatError, match=reason) as error:
        read_bal(path)
    assert error.value.line == line
    assert error.value.path == str(path)


def test_blank_lines_are_skipped_anywhere(tmp_path: Path) -> None:
    bal = _synthetic_bal()
    path = tmp_path / "p.txt"
    write_bal(path, bal)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], "", *lines[1:4], "   ", *lines[4:], ""]) + "\n\n")
    read = read_bal(path)
    np.testing.assert_array_equal(read.camera_params, bal.camera_params)
    np.testing.assert_array_equal(read.obs_xy, bal.obs_xy)


def test_a_problem_without_observations_is_read(tmp_path: Path) -> None:
    bal = read_bal(_write(tmp_path, "1 1 0\n" + VALID_TAIL))
    assert bal.obs_xy.shape == (0, 2) and bal.camera_params.shape == (1, 9)


def test_missing_file_is_a_file_format_error(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="cannot read"):
        read_bal(tmp_path / "nope.txt")


def test_exported_window_keeps_its_cost() -> None:
    window = generate_window(8, 0, WindowConfig(loss=RobustLoss(), rgbd=False))
    problem = window.problem
    exported = bal_to_problem(problem_to_bal(problem), sigma_px=1.0 / problem.obs_weight[0])
    cost = BundleAdjustment(problem).cost(problem.initial_state(), np.float64)
    assert BundleAdjustment(exported).cost(exported.initial_state(), np.float64) == pytest.approx(cost, rel=1e-9)
