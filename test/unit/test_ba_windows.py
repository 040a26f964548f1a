"""The sliding-window generator: deterministic in its seed, household-robot shaped."""

from __future__ import annotations

import numpy as np
import pytest

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.geometry.lie import se3_inverse
from mp_slam_ros.sim.ba_windows import WindowConfig, generate_window, generate_windows


def test_same_seed_same_window_other_seed_other_window() -> None:
    a, b, c = generate_window(12, 7), generate_window(12, 7), generate_window(12, 8)
    for name in ("T_world_cam", "points_world", "obs_uv", "obs_u_right", "obs_cam", "obs_point"):
        np.testing.assert_array_equal(getattr(a.problem, name), getattr(b.problem, name))
    assert a.problem.num_observations != c.problem.num_observations or not np.array_equal(a.problem.obs_uv, c.problem.obs_uv)
    assert [w.seed for w in generate_windows(3, 5, seed=4)] == [4, 5, 6]


def test_window_has_household_robot_shape() -> None:
    config = WindowConfig()
    window = generate_window(30, 3, config)
    problem = window.problem
    heights = window.T_world_cam_true[:, 2, 3]
    assert np.all((heights > 0.28) & (heights < 1.22))
    track_lengths = np.bincount(problem.obs_point)
    assert track_lengths.min() >= 2 and track_lengths.max() <= 20
    steps = np.linalg.norm(np.diff(window.T_world_cam_true[:, :3, 3], axis=0), axis=1)
    assert np.all(steps < 0.06)  # <= 0.5 m/s at 10 Hz
    assert problem.fixed_cams.sum() == config.num_fixed and problem.fixed_cams[: config.num_fixed].all()
    assert 0 < window.is_outlier.sum() < 0.1 * problem.num_observations
    T_cam_world = se3_inverse(window.T_world_cam_true)[problem.obs_cam]
    depth = np.einsum("nj,nj->n", T_cam_world[:, 2, :3], window.points_world_true[problem.obs_point]) + T_cam_world[:, 2, 3]
    assert np.all((depth > 0.2) & (depth < config.max_depth_m))
    inliers = ~window.is_outlier
    assert np.all(np.isfinite(problem.obs_u_right))  # RGB-D by default
    assert np.all((problem.obs_uv[inliers] > -5) & (problem.obs_uv[inliers] < [645, 485]))


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(ConfigError, match="track_length"):
        generate_window(10, 0, WindowConfig(track_length=(1, 5)))
    with pytest.raises(ConfigError, match="num_keyframes"):
        generate_window(2, 0)


def test_monocular_preset_has_no_depth_no_fixed_camera_and_plain_least_squares() -> None:
    window = generate_window(15, 2, WindowConfig.monocular(plain_least_squares=True))
    problem = window.problem
    assert np.all(np.isnan(problem.obs_u_right)) and not problem.fixed_cams.any()
    assert problem.loss.is_trivial and not window.is_outlier.any()
    robust = generate_window(15, 2, WindowConfig.monocular(gauge_free=False)).problem
    assert robust.fixed_cams.sum() == WindowConfig().num_fixed and not robust.loss.is_trivial
    with pytest.raises(ConfigError, match="num_fixed"):
        generate_window(10, 0, WindowConfig(num_fixed=-1))
    with pytest.raises(ConfigError, match="parallax_confirmations"):
        generate_window(10, 0, WindowConfig(parallax_confirmations=0))


def _confirmations(window, min_parallax_deg: float) -> np.ndarray:
    """Per landmark: observations whose true ray is >= min_parallax_deg from the detection's."""
    problem = window.problem
    rays = window.points_world_true[problem.obs_point] - window.T_world_cam_true[problem.obs_cam, :3, 3]
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    host = np.unique(problem.obs_point, return_index=True)[1]
    cos = np.einsum("ij,ij->i", rays, rays[host][problem.obs_point])
    return np.bincount(problem.obs_point, weights=cos <= np.cos(np.radians(min_parallax_deg)))


def test_monocular_depth_is_confirmed_twice_under_a_robust_loss() -> None:
    """With mismatches possible (Huber), no landmark's depth rests on one observation."""
    config = WindowConfig.monocular()
    robust = generate_window(30, 4, config)
    assert _confirmations(robust, config.min_parallax_deg).min() >= 2
    plain = generate_window(30, 4, WindowConfig.monocular(plain_least_squares=True))
    confirmations = _confirmations(plain, config.min_parallax_deg)
    assert confirmations.min() >= 1 and (confirmations == 1).any()
