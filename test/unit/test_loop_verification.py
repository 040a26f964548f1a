"""Geometric verification of loop candidates: matching over a keyframe neighbourhood, PnP on its
points, and the rejection of loops whose covariance leaves the pose uncertain."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from mp_slam_ros.backend.loop_verification import LoopVerificationConfig, match_descriptors, point_noise_px2, verify_pnp
from mp_slam_ros.geometry.lie import se3_exp, se3_inverse

sys.path.insert(0, str(Path(__file__).parent))
from test_loop_world import K, camera_on_circle, make_world  # noqa: E402


def test_grouped_matching_keeps_each_query_rows_closest_usable_match() -> None:
    rng = np.random.default_rng(0)
    query = rng.integers(0, 256, (20, 32), dtype=np.uint8)
    near, far = query.copy(), query.copy()
    near[:, 0] ^= 0b1111  # 4 bits from the query
    far[:, 1] ^= 0b11111  # 5 bits from the query
    others = rng.integers(0, 256, (20, 32), dtype=np.uint8)
    match = np.concatenate([far, others, near, others])  # two keyframes of 40 rows each
    pairs = match_descriptors(query, match, 0.8, 64, [40, 40])
    assert np.array_equal(pairs, np.stack([np.arange(20), 40 + np.arange(20)], axis=1))
    usable = np.ones(80, bool)
    usable[40:60] = False  # the close rows have no depth: the far ones are the matches
    pairs = match_descriptors(query, match, 0.8, 64, [40, 40], usable)
    assert np.array_equal(pairs, np.stack([np.arange(20), np.arange(20)], axis=1))
    # one group: the near and far copies are ambiguous and the ratio test drops them
    assert len(match_descriptors(query, match, 0.8, 64)) == 0


def _view(world, T_world_cam: np.ndarray, rows: np.ndarray):
    """Pixels, descriptors and camera-frame points of the world points ``rows`` seen from a pose."""
    p_cam = (world.points[rows] - T_world_cam[:3, 3]) @ T_world_cam[:3, :3]
    return (p_cam[:, :2] / p_cam[:, 2:3] * K[0, 0] + K[:2, 2]).astype(np.float32), world.descriptors[rows], p_cam.astype(np.float32)


def test_neighbourhood_points_verify_a_view_the_candidate_alone_cannot() -> None:
    world = make_world(4, [np.zeros(3)])
    T_query, T_match, T_neighbour = (camera_on_circle(np.radians(a), np.zeros(3)) for a in (10.0, 0.0, 20.0))
    visible = np.flatnonzero(_visible(world.points, T_query))[:120]
    config = LoopVerificationConfig()
    uv, descriptors, _ = _view(world, T_query, visible)
    # the candidate holds only 20 of the landmarks, its neighbour the other 100
    _, d_match, p_match = _view(world, T_match, visible[:20])
    _, d_neighbour, p_neighbour = _view(world, T_neighbour, visible[20:])
    alone = verify_pnp(uv, descriptors, p_match, d_match, K, config)
    assert not alone.accepted and "matches" in alone.reason
    T_match_neighbour = se3_inverse(T_match) @ T_neighbour
    points = np.concatenate([p_match, p_neighbour @ T_match_neighbour[:3, :3].T + T_match_neighbour[:3, 3]])
    result = verify_pnp(uv, descriptors, points.astype(np.float32), np.concatenate([d_match, d_neighbour]), K, config, [20, 100])
    assert result.accepted and result.inliers >= 100
    assert np.allclose(result.T_match_query, se3_inverse(T_match) @ T_query, atol=1e-3)


def test_a_loop_with_an_uncertain_pose_is_rejected() -> None:
    world = make_world(5, [np.zeros(3)])
    T_query = camera_on_circle(0.3, np.zeros(3))
    T_match = T_query @ se3_exp(np.array([[0.05, 0.0, 0.02, 0.0, 0.05, 0.0]]))[0]
    visible = np.flatnonzero(_visible(world.points, T_query))[:40]
    uv, descriptors, _ = _view(world, T_query, visible)
    _, d_match, p_match = _view(world, T_match, visible)
    config = LoopVerificationConfig(min_matches=20, min_inliers=20)
    assert verify_pnp(uv, descriptors, p_match, d_match, K, config).accepted
    strict = verify_pnp(uv, descriptors, p_match, d_match, K, replace(config, max_sigma_m=1e-4))
    assert not strict.accepted and strict.reason.startswith("uncertain pose: translation")


def _visible(points: np.ndarray, T_world_cam: np.ndarray) -> np.ndarray:
    p_cam = (points - T_world_cam[:3, 3]) @ T_world_cam[:3, :3]
    uv = p_cam[:, :2] / np.maximum(p_cam[:, 2:3], 1e-9) * K[0, 0] + K[:2, 2]
    return (p_cam[:, 2] > 0.3) & (uv[:, 0] > 5) & (uv[:, 0] < 635) & (uv[:, 1] > 5) & (uv[:, 1] < 475)


def _patch_or_spread(half_width_m: float, depth_m: float, n: int = 100) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A query's pixels and descriptors and the match's points of ``n`` landmarks in a cube
    ``2 half_width_m`` wide at ``depth_m``, seen from two poses 0.2 m apart."""
    rng = np.random.default_rng(3)
    points = np.column_stack([rng.uniform(-half_width_m, half_width_m, (n, 2)), depth_m + rng.uniform(-half_width_m, half_width_m, n)])
    T_match_query = se3_exp(np.array([[0.2, 0.0, 0.05, 0.0, 0.03, 0.0]]))[0]
    p_query = (points - T_match_query[:3, 3]) @ T_match_query[:3, :3]
    uv = (p_query[:, :2] / p_query[:, 2:3] * K[0, 0] + K[:2, 2] + rng.normal(0.0, 0.3, (n, 2))).astype(np.float32)
    descriptors = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    return uv, descriptors, points.astype(np.float32)


def test_a_degenerate_inlier_set_on_one_patch_is_rejected() -> None:
    """Many inliers on one small patch far away constrain the pose like the few independent
    measurements they are (their keypoint and depth errors are correlated): the same number of
    points spread over the view verifies, the patch does not."""
    config = LoopVerificationConfig()
    uv, descriptors, points = _patch_or_spread(1.5, 3.0)
    spread = verify_pnp(uv, descriptors, points, descriptors, K, config)
    assert spread.accepted and spread.inlier_cells >= 9, spread.reason
    uv, descriptors, points = _patch_or_spread(0.5, 4.0)
    patch = verify_pnp(uv, descriptors, points, descriptors, K, config)
    assert patch.inliers >= 90 and patch.inlier_cells <= 4
    assert not patch.accepted and patch.degenerate and patch.reason.startswith("degenerate inlier set")
    # counted as independent measurements (one inlier per cell), the patch would pass
    independent = verify_pnp(uv, descriptors, points, descriptors, K, replace(config, error_cell_deg=0.1))
    assert independent.accepted and independent.inlier_cells == independent.inliers


def test_a_loop_on_distant_points_carries_their_error() -> None:
    """The candidate's points are measured, not exact (``loop.depth_baseline_m``). A loop resting on
    points 8 m away verifies when they count as exact, and is rejected (translation sigma) when their
    error counts; points 3 m away verify."""
    config = LoopVerificationConfig()
    uv, descriptors, points = _patch_or_spread(3.0, 8.0)
    exact = verify_pnp(uv, descriptors, points, descriptors, K, replace(config, depth_baseline_m=0.0))
    assert exact.accepted, exact.reason
    measured = verify_pnp(uv, descriptors, points, descriptors, K, config)
    assert not measured.accepted and "translation sigma" in measured.reason, measured.reason
    assert np.linalg.eigvalsh(measured.covariance[:3, :3])[-1] > 1.5 * np.linalg.eigvalsh(exact.covariance[:3, :3])[-1]
    uv, descriptors, points = _patch_or_spread(1.5, 3.0)
    assert verify_pnp(uv, descriptors, points, descriptors, K, config).accepted


def test_a_point_error_grows_with_depth_squared_along_its_ray() -> None:
    """A query that sees the candidate's ray sideways (its u along the candidate's z) gets the
    point's depth error, ``z^2 sigma / (fx b)``, and the candidate keypoint's ``z sigma / fx``."""
    sideways = np.array([[[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]])  # query pixels per candidate-frame metre
    fx, sigma = K[0, 0], 1.0
    for z, baseline in ((2.0, 0.8), (8.0, 0.8), (8.0, 0.2)):
        noise = point_noise_px2(np.array([[0.0, 0.0, z]]), sideways, K, baseline, sigma)[0]
        depth, keypoint = z**2 * sigma / (fx * baseline), z * sigma / fx
        np.testing.assert_allclose(noise, np.diag([sigma**2 + depth**2 + keypoint**2, sigma**2 + keypoint**2]))
    np.testing.assert_array_equal(point_noise_px2(np.array([[0.0, 0.0, 8.0]]), sideways, K, 0.0, sigma)[0], np.eye(2))


def _patch_and_four_points(tip_m: float) -> tuple[np.ndarray, ...]:
    """A query's pixels and descriptors, the match's points and the true ``T_match_query``: 40
    landmarks on a patch at 2.5 m and 4 to its side, whose pixels come from a pose ``tip_m``
    (and ``tip_m / 2.5`` rad: the trade the patch hardly sees) off the true one."""
    rng = np.random.default_rng(1)
    patch = np.column_stack([rng.uniform(-0.5, 0.5, (40, 2)), 2.5 + rng.uniform(-0.02, 0.02, 40)])
    side = np.column_stack([rng.uniform(-2.2, -1.8, 4), rng.uniform(-1.5, -1.2, 4), rng.uniform(2.4, 2.6, 4)])
    T_match_query = se3_exp(np.array([[0.2, 0.0, 0.05, 0.0, 0.05, 0.0]]))[0]
    T_tipped = T_match_query @ se3_exp(np.array([[tip_m, 0.0, 0.0, 0.0, tip_m / 2.5, 0.0]]))[0]

    def pixels(points: np.ndarray, T: np.ndarray) -> np.ndarray:
        p_query = (points - T[:3, 3]) @ T[:3, :3]
        return p_query[:, :2] / p_query[:, 2:3] * K[0, 0] + K[:2, 2]

    uv = np.concatenate([pixels(patch, T_match_query), pixels(side, T_tipped)]) + rng.normal(0.0, 0.3, (44, 2))
    descriptors = rng.integers(0, 256, (44, 32), dtype=np.uint8)
    return uv.astype(np.float32), descriptors, np.concatenate([patch, side]).astype(np.float32), T_match_query


def test_a_pose_that_hinges_on_one_region_is_rejected() -> None:
    """A patch at one depth barely tells rotation from translation; 4 matches to its side decide
    it. When they are off (a wrong match, a repeated object), the fit follows them 0.1 m / 3 deg
    away with a covariance that looks certain; leaving their cell out moves the pose back far
    beyond that covariance: rejected. With the covariance gates loosened this check alone decides."""
    config = LoopVerificationConfig(min_matches=20, min_inliers=20, max_sigma_m=0.5, max_sigma_deg=10.0)
    uv, descriptors, points, T_true = _patch_and_four_points(0.0)
    assert verify_pnp(uv, descriptors, points, descriptors, K, config).accepted
    uv, descriptors, points, T_true = _patch_and_four_points(0.05)
    tipped = verify_pnp(uv, descriptors, points, descriptors, K, config)
    assert np.linalg.norm((se3_inverse(tipped.T_match_query) @ T_true)[:3, 3]) > 0.1
    assert not tipped.accepted and tipped.reason.startswith("pose hinges on one region"), tipped.reason


def test_a_guided_pass_recovers_matches_the_ratio_test_loses_to_repeated_texture() -> None:
    """100 landmarks seen by both views, 85 of them with a look-alike twin elsewhere in the
    candidate (repeated texture: the ratio test over the whole image drops them): the 15 unique
    matches seed a pose, matching by projection within ``loop.guided_radius_px`` finds the rest."""
    world = make_world(6, [np.zeros(3)])
    T_query, T_match = camera_on_circle(0.2, np.zeros(3)), camera_on_circle(0.0, np.zeros(3))
    visible = np.flatnonzero(_visible(world.points, T_query) & _visible(world.points, T_match))[:100]
    uv, descriptors, _ = _view(world, T_query, visible)
    _, d_match, p_match = _view(world, T_match, visible)
    twins = d_match[15:].copy()  # identical descriptors: the ratio test cannot choose
    far = np.full((len(twins), 3), np.nan, np.float32)  # the twins have no depth (as a far wall)
    points = np.concatenate([p_match, far])
    descriptors_match = np.concatenate([d_match, twins])
    config = LoopVerificationConfig(min_matches=30, min_inliers=25, guided_radius_px=0.0)
    plain = verify_pnp(uv, descriptors, points, descriptors_match, K, config)
    assert not plain.accepted and plain.reason == "15 matches with depth < 30", plain.reason
    guided = verify_pnp(uv, descriptors, points, descriptors_match, K, replace(config, guided_radius_px=6.0))
    assert guided.accepted and guided.inliers >= 95, guided.reason
    assert np.allclose(guided.T_match_query, se3_inverse(T_match) @ T_query, atol=1e-3)
    too_few = verify_pnp(uv, descriptors, points, descriptors_match, K, replace(config, guided_radius_px=6.0, guided_seed_inliers=16))
    assert not too_few.accepted
