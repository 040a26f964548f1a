"""The sliding window: landmark lifetime, the window BA problem, solutions applied back by id."""

from __future__ import annotations

import numpy as np
import pytest

from mp_slam_ros.geometry.camera import PinholeCamera
from mp_slam_ros.pipelines.vo_config import BAConfig
from mp_slam_ros.pipelines.window import SlidingWindow, WindowKeyframe, solve_window
from mp_slam_ros.precision import Precision
from mp_slam_ros.solvers.ba import LinearSolverKind
from mp_slam_ros.solvers.summary import Termination

CAMERA = PinholeCamera(300.0, 300.0, 160.0, 120.0, width=320, height=240, baseline_m=0.4)


def window_with(keyframes: int, size: int = 50, noise_px: float = 0.3) -> tuple[SlidingWindow, np.ndarray]:
    """Keyframes 0.1 m apart along x observing 40 shared landmarks (odom = world)."""
    rng = np.random.default_rng(0)
    window = SlidingWindow(size)
    points = rng.uniform([-1.0, -0.8, 2.0], [1.0, 0.8, 4.0], (40, 3))
    ids = window.add_landmarks(points + rng.normal(0.0, 0.02, points.shape), np.zeros((40, 32), np.uint8))
    for k in range(keyframes):
        T = np.eye(4)
        T[0, 3] = 0.1 * k
        points_cam = points - T[:3, 3]
        uv = CAMERA.project(points_cam) + rng.normal(0.0, noise_px, (40, 2))
        u_right = CAMERA.right_coordinate(uv[:, 0], points_cam[:, 2])
        window.add_keyframe(WindowKeyframe(k, k, T, ids, uv, u_right, (0, 40) if k == 0 else (40, 40)))
    return window, points


def perturbed_window(keyframes: int) -> SlidingWindow:
    """:func:`window_with` whose keyframes after the first are 2 cm off in y (tracking poses to refine)."""
    window, _ = window_with(keyframes)
    for kf in window.keyframes[1:]:
        kf.T_odom_cam = kf.T_odom_cam.copy()
        kf.T_odom_cam[1, 3] += 0.02
    return window


def test_oldest_keyframes_drop_and_unobserved_landmarks_die() -> None:
    window, _ = window_with(3, size=2)
    assert [kf.keyframe_id for kf in window.keyframes] == [1, 2]
    assert window.alive(np.arange(40)).all()  # still seen by the remaining keyframes
    extra = window.add_landmarks(np.zeros((1, 3)), np.zeros((1, 32), np.uint8))
    window.keyframes[0].landmark_ids = np.append(window.keyframes[0].landmark_ids, extra)
    window.add_keyframe(WindowKeyframe(3, 3, np.eye(4), np.arange(40), np.zeros((40, 2)), np.full(40, np.nan), (41, 41)))
    assert not window.alive(extra)[0]


def test_problem_fixes_the_oldest_keyframes_and_solution_applies_by_id() -> None:
    window, points = window_with(4)
    for kf in window.keyframes[1:]:
        kf.T_odom_cam = kf.T_odom_cam.copy()
        kf.T_odom_cam[1, 3] += 0.02  # perturbed tracking poses
    job = window.problem(CAMERA, BAConfig(fixed_keyframes=1))
    assert job.problem.fixed_cams.tolist() == [True, False, False, False]
    assert job.problem.num_points == 40 and job.problem.num_observations == 160
    solution = solve_window(job, BAConfig())
    window.apply(solution)
    for k, kf in enumerate(window.keyframes):
        assert abs(kf.T_odom_cam[1, 3]) < 0.01 and abs(kf.T_odom_cam[0, 3] - 0.1 * k) < 0.01
    assert np.median(np.linalg.norm(window.positions(np.arange(40)) - points, axis=1)) < 0.02
    stale = SlidingWindow(50, generation=window.generation + 1)
    stale.apply(solution)  # a solution of an older map changes nothing
    assert not stale.keyframes


def test_few_keyframes_make_no_problem() -> None:
    window, _ = window_with(1)
    assert window.problem(CAMERA, BAConfig()) is None


def test_landmark_arrays_hold_only_the_windows_landmarks() -> None:
    """Landmarks leave the arrays with the last keyframe observing them: a long run stays flat."""
    window = SlidingWindow(5)
    rng = np.random.default_rng(1)
    stored = []
    for k in range(300):
        ids = window.add_landmarks(rng.normal(size=(40, 3)), np.full((40, 32), k % 256, np.uint8))
        window.add_keyframe(WindowKeyframe(k, k, np.eye(4), ids, np.zeros((40, 2)), np.full(40, np.nan), (int(ids[0]), int(ids[-1]) + 1)))
        stored.append(window.num_stored)
    assert window.num_landmarks == 300 * 40
    assert max(stored) == 5 * 40 and stored[-1] == 5 * 40
    live = window.observed_ids()
    assert live.tolist() == list(range(295 * 40, 300 * 40))
    assert window.alive(live).all() and not window.alive(np.array([0, 294 * 40 + 39])).any()
    assert (window.descriptors(live[:40])[:, 0] == 295 % 256).all()
    with pytest.raises(KeyError, match="not in the window"):
        window.positions(np.array([0]))


@pytest.mark.parametrize("escalate", [True, False])
def test_ba_escalate_decides_whether_a_failing_fp16_solve_goes_up_a_rung(escalate: bool) -> None:
    window = perturbed_window(6)
    config = BAConfig(precision=Precision.FP16, solver=LinearSolverKind.ITERATIVE_SCHUR, escalate=escalate)
    summary = solve_window(window.problem(CAMERA, config), config).summary
    assert bool(summary.escalations) is escalate
    assert (summary.precision_used is Precision.FP16) is not escalate


def test_a_solve_time_budget_ends_the_window_solve_early_and_says_so() -> None:
    window = perturbed_window(6)
    config = BAConfig(max_solve_time_ms=1e-6)  # any iteration passes it
    summary = solve_window(window.problem(CAMERA, config), config).summary
    assert summary.termination is Termination.TIME_LIMIT and summary.num_iterations == 1
    assert summary.final_cost < summary.initial_cost
    assert solve_window(window.problem(CAMERA, BAConfig()), BAConfig()).summary.converged


def test_a_landmark_budget_keeps_the_most_observed_landmarks() -> None:
    window, _ = window_with(4)
    for kf in window.keyframes[2:]:  # landmarks 30-39 seen by the first two keyframes only
        kf.landmark_ids, kf.uv, kf.u_right = kf.landmark_ids[:30], kf.uv[:30], kf.u_right[:30]
    assert window.problem(CAMERA, BAConfig()).problem.num_points == 40
    job = window.problem(CAMERA, BAConfig(max_landmarks=35))
    assert job.problem.num_points == 35
    assert job.landmark_ids.tolist() == list(range(35))  # the 30 seen four times, then the oldest
    assert window.problem(CAMERA, BAConfig(max_landmarks=30)).landmark_ids.tolist() == list(range(30))
