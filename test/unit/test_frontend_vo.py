"""Front end on synthetic data: bucketing, ORB, depth/stereo association, PnP, keyframe policy."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mp_slam_ros.frontend.depth import depth_at, stereo_depth
from mp_slam_ros.frontend.features import BORDER_PX, FeatureDetector, bucket, suppress_close
from mp_slam_ros.frontend.keyframes import keyframe_reason
from mp_slam_ros.frontend.tracking import (
    MIN_PNP_POINTS, FrameTracker, PnPResult, bounded_motion, motion_ratio, planar_motion, planar_prior_information, solve_pnp,
)
from mp_slam_ros.geometry.lie import se3_exp, se3_inverse, se3_log
from mp_slam_ros.pipelines.vo_config import FrontendConfig, KeyframeConfig, TrackingConfig
from mp_slam_ros.sim.rig import R_BASE_OPTICAL

K = np.array([[300.0, 0.0, 159.5], [0.0, 300.0, 119.5], [0.0, 0.0, 1.0]])


def textured(seed: int = 0, shape: tuple[int, int] = (240, 320)) -> np.ndarray:
    """A blurred random-noise image (corners everywhere, smooth enough for KLT)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (shape[0] // 4, shape[1] // 4)).astype(np.float32)
    return cv2.GaussianBlur(cv2.resize(noise, shape[::-1], interpolation=cv2.INTER_CUBIC), (0, 0), 1.0).clip(0, 255).astype(np.uint8)


def test_bucket_spreads_over_cells_and_fills_the_budget() -> None:
    rng = np.random.default_rng(0)
    uv = np.concatenate([rng.uniform(0, 40, (300, 2)), rng.uniform(200, 320, (20, 2)) * [1, 0.75]])
    response = np.concatenate([np.full(300, 10.0), np.full(20, 1.0)])
    keep = bucket(uv, response, (320, 240), 4, 4, 64)
    assert keep.size == 64
    cell = (uv[:, 1] // 60).astype(int) * 4 + (uv[:, 0] // 80).astype(int)
    for c in np.unique(cell):  # every cell keeps its quota (4) or all it has, weak or not
        assert np.isin(np.flatnonzero(cell == c), keep).sum() >= min(4, np.sum(cell == c))
    assert np.array_equal(keep, bucket(uv, response, (320, 240), 4, 4, 64))


def test_suppress_close_keeps_the_strongest_of_each_cluster() -> None:
    uv = np.array([[10.0, 10.0], [11.0, 10.5], [12.5, 10.0], [30.0, 30.0], [30.0, 33.5]])
    response = np.array([1.0, 3.0, 2.0, 1.0, 1.0])
    # 1 beats its neighbours 0 and 2; of the tie 3/4 the lower index stays
    assert suppress_close(uv, response, 2.0).tolist() == [1, 3, 4]
    assert suppress_close(uv, response, 4.0).tolist() == [1, 3]
    assert suppress_close(uv, response, 0.0).tolist() == [0, 1, 2, 3, 4]


def test_new_features_keep_their_spacing() -> None:
    grey = textured(1)
    crowded = FeatureDetector(FrontendConfig(max_features=300)).detect(grey, 300)
    spaced = FeatureDetector(FrontendConfig(max_features=300, new_feature_spacing_px=4.0)).detect(grey, 300)
    nearest = [np.sort(np.linalg.norm(p.uv[:, None] - p.uv[None], axis=2), axis=1)[:, 1] for p in (crowded, spaced)]
    assert np.min(nearest[1]) > 4.0 and np.min(nearest[0]) < 4.0  # ORB alone finds corners again at other levels
    assert len(spaced.uv) > 100


def test_detect_avoids_occupied_pixels_and_describes() -> None:
    grey = textured()
    detector = FeatureDetector(FrontendConfig(max_features=200))
    occupied = np.array([[160.0, 120.0]])
    points = detector.detect(grey, 200, occupied)
    assert 50 < len(points.uv) <= 200
    assert np.min(np.linalg.norm(points.uv - occupied, axis=1)) >= FrontendConfig().min_distance_px - 1
    descriptors, valid = detector.describe(grey, np.vstack([points.uv, [[1.0, 1.0]]]), np.append(points.angle_deg, 0.0))
    assert descriptors.shape == (len(points.uv) + 1, 32) and valid[:-1].all() and not valid[-1]


def test_depth_at_and_range_limits() -> None:
    depth = np.full((240, 320), 2.0, np.float32)
    depth[:, :10] = np.nan
    depth[:, 300:] = 50.0
    got = depth_at(depth, np.array([[100.0, 50.0], [3.0, 4.0], [310.0, 10.0]]), FrontendConfig())
    assert got[0] == 2.0 and np.isnan(got[1]) and np.isnan(got[2])


def test_stereo_depth_from_a_shifted_image() -> None:
    left = textured(1)
    disparity = 6
    right = np.roll(left, -disparity, axis=1)
    uv = np.array([[100.0, 80.0], [200.0, 150.0], [150.0, 60.0]])
    depth = stereo_depth(left, right, uv, 300.0 * 0.1, FrontendConfig())
    np.testing.assert_allclose(depth, 300.0 * 0.1 / disparity, rtol=0.02)


def test_klt_follows_a_shift() -> None:
    tracker = FrameTracker(FrontendConfig())
    first = textured(2)
    tracker.restart(first)
    uv = np.array([[100.0, 80.0], [200.0, 150.0]])
    moved, ok = tracker.track(np.roll(first, 3, axis=1), uv)
    assert ok.all()
    np.testing.assert_allclose(moved, uv + [3.0, 0.0], atol=0.1)
    moved, ok = tracker.track(np.roll(first, 6, axis=1), uv, uv + 5.0)  # still from the reference
    assert ok.all()
    np.testing.assert_allclose(moved, uv + [6.0, 0.0], atol=0.1)


def test_pnp_recovers_the_pose_despite_outliers() -> None:
    rng = np.random.default_rng(3)
    points_odom = rng.uniform([-2, -1.5, 2], [2, 1.5, 6], (150, 3))
    T_odom_cam = se3_exp(np.array([0.1, -0.05, 0.2, 0.02, -0.03, 0.01]))[0]
    T_cam_odom = se3_inverse(T_odom_cam)
    points_cam = points_odom @ T_cam_odom[:3, :3].T + T_cam_odom[:3, 3]
    uv = points_cam[:, :2] / points_cam[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
    uv += rng.normal(0.0, 0.3, uv.shape)
    uv[:20] += 30.0  # outliers
    no_prior = TrackingConfig(prior_translation_m=0.0, prior_rotation_deg=0.0)
    result = solve_pnp(points_odom, uv, K, np.eye(4), no_prior)  # from a far guess
    assert result is not None
    assert not result.inliers[:20].any() and result.inliers[20:].mean() > 0.95
    assert np.linalg.norm(se3_log(se3_inverse(T_odom_cam) @ result.T_odom_cam)) < 5e-3
    near = T_odom_cam @ se3_exp(np.array([0.005, 0.0, 0.0, 0.0, 0.002, 0.0]))[0]  # a tracking prediction
    with_prior = solve_pnp(points_odom, uv, K, near, TrackingConfig())
    assert np.linalg.norm(se3_log(se3_inverse(T_odom_cam) @ with_prior.T_odom_cam)) < 5e-3
    covariance = result.covariance_cam
    assert np.allclose(covariance, covariance.T) and np.all(np.linalg.eigvalsh(covariance) > 0)
    assert solve_pnp(points_odom[:5], uv[:5], K, np.eye(4), TrackingConfig()) is None


def _view(T_odom_cam: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Landmarks ``(n, 3)`` in front of ``T_odom_cam``, their pixels and camera-frame depths."""
    rng = np.random.default_rng(seed)
    points_cam = rng.uniform([-1.0, -0.8, 1.5], [1.0, 0.8, 4.0], (n, 3))
    points_odom = points_cam @ T_odom_cam[:3, :3].T + T_odom_cam[:3, 3]
    uv = points_cam[:, :2] / points_cam[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
    return points_odom, uv, points_cam[:, 2]


def test_pnp_accepts_a_few_inliers_only_near_the_motion_prediction() -> None:
    T_odom_cam = se3_exp(np.array([0.1, -0.05, 0.2, 0.02, -0.03, 0.01]))[0]
    points_odom, uv, _ = _view(T_odom_cam, 8, 4)  # fewer than tracking.min_inliers (10)
    near = T_odom_cam @ se3_exp(np.array([0.004, 0.0, -0.003, 0.0, 0.003, 0.0]))[0]
    result = solve_pnp(points_odom, uv, K, near, TrackingConfig())
    assert result is not None and result.inliers.all()
    assert np.linalg.norm(se3_log(se3_inverse(T_odom_cam) @ result.T_odom_cam)) < 5e-3
    far = T_odom_cam @ se3_exp(np.array([0.15, 0.0, 0.0, 0.0, 0.1, 0.0]))[0]  # 15 sigma of the prior
    assert solve_pnp(points_odom, uv, K, far, TrackingConfig()) is None
    no_prior = TrackingConfig(prior_translation_m=0.0, prior_rotation_deg=0.0)
    assert solve_pnp(points_odom, uv, K, near, no_prior) is None  # without a prior: min_inliers holds
    few = MIN_PNP_POINTS - 1
    assert solve_pnp(points_odom[:few], uv[:few], K, near, TrackingConfig()) is None


def test_motion_bounds_tell_and_clamp_impossible_motion() -> None:
    config = TrackingConfig(max_speed_mps=1.0, max_angular_rate_dps=90.0)
    step = se3_exp(np.array([0.0, 0.0, 0.0, 0.0, 0.0, np.radians(1.5)]))[0]
    step[:3, 3] = [0.02, 0.0, 0.0]  # 2 cm and 1.5 deg
    assert motion_ratio(step, 1 / 30, config) == pytest.approx(0.6, rel=1e-6)  # 0.6 m/s, 45 deg/s
    assert motion_ratio(step, 0.01, config) == pytest.approx(2.0, rel=1e-6)  # 2 m/s
    shift = np.eye(4)
    shift[:3, 3] = [0.02, 0.0, 0.0]
    assert motion_ratio(shift, 0.01, config, slack_m=0.01) == pytest.approx(1.0, rel=1e-6)  # 1 of the 2 cm not counted
    assert motion_ratio(shift, 0.01, config, slack_m=0.05) == 0.0  # within the slack
    turn = se3_exp(np.array([0.0, 0.0, 0.0, 0.0, np.radians(6.0), 0.0]))[0]
    assert motion_ratio(turn, 1 / 30, config) == pytest.approx(2.0, rel=1e-6)  # 180 deg/s
    assert motion_ratio(turn, 1 / 30, TrackingConfig(max_speed_mps=0.0, max_angular_rate_dps=0.0)) == 0.0  # unbounded
    assert bounded_motion(step, 1 / 30, config) is step  # plausible: unchanged
    clamped = bounded_motion(step, 0.01, config)
    assert motion_ratio(clamped, 0.01, config) == pytest.approx(1.0, rel=1e-3)  # the twist scales, the translation nearly
    np.testing.assert_allclose(se3_log(clamped)[0], se3_log(step)[0] / 2.0, atol=1e-12)  # same direction, half


def test_pnp_ignores_depths_that_disagree_with_the_pixels() -> None:
    T_odom_cam = se3_exp(np.array([0.05, 0.0, 0.1, 0.0, 0.02, 0.0]))[0]
    points_odom, uv, depth = _view(T_odom_cam, 60, 5)
    depth[:20] *= 1.3  # stereo mismatches: a third of the depths 30% off
    fx_baseline = K[0, 0] * 0.4
    result = solve_pnp(points_odom, uv, K, T_odom_cam, TrackingConfig(), uv[:, 0] - fx_baseline / depth, fx_baseline)
    assert result is not None and result.inliers.all()
    assert np.linalg.norm(se3_log(se3_inverse(T_odom_cam) @ result.T_odom_cam)) < 1e-3


def test_features_come_close_to_the_image_border() -> None:
    grey = np.full((240, 320), 128, np.uint8)
    grey[:, :24] = textured(1)[:, :24]  # texture only in a strip at the left edge (a plain wall in view)
    points = FeatureDetector(FrontendConfig()).detect(grey, 100)
    assert len(points.uv) >= 10 and points.uv[:, 0].min() >= BORDER_PX


def test_keyframe_policy_reasons() -> None:
    cfg = KeyframeConfig()
    T = np.eye(4)
    assert keyframe_reason(cfg, 300, 300, 0.1, T, T) is None
    assert keyframe_reason(cfg, cfg.min_tracked - 1, 300, 0.1, T, T) == "few tracked"
    assert keyframe_reason(cfg, 200, 300, 0.1, T, T) == "tracked ratio"
    moved = se3_exp(np.array([0.3, 0, 0, 0, 0, 0]))[0]
    assert keyframe_reason(cfg, 300, 300, 0.1, T, moved) == "translation"
    turned = se3_exp(np.array([0, 0, 0, 0, 0.3, 0]))[0]
    assert keyframe_reason(cfg, 300, 300, 0.1, T, turned) == "rotation"
    assert keyframe_reason(cfg, 300, 300, 2.0, T, T) == "time"


@pytest.mark.parametrize("shape", [(240, 320)])
def test_textureless_image_has_no_features(shape: tuple[int, int]) -> None:
    detector = FeatureDetector(FrontendConfig())
    assert len(detector.detect(np.full(shape, 128, np.uint8), 100).uv) == 0


def test_match_by_projection_is_one_to_one_and_respects_radius_and_descriptors() -> None:
    from mp_slam_ros.frontend.matching import hamming, match_by_projection

    rng = np.random.default_rng(4)
    descriptors = rng.integers(0, 256, (4, 32), dtype=np.uint8)
    landmarks_uv = np.array([[10.0, 10.0], [50.0, 50.0], [90.0, 90.0], [12.0, 10.0]])
    keypoints_uv = np.array([[11.0, 10.0], [52.0, 50.0], [150.0, 150.0]])
    keypoint_desc = descriptors[[3, 1, 2]].copy()
    keypoint_desc[1, :4] ^= 0xFF  # 32 bits off: still within 50
    match = match_by_projection(keypoints_uv, keypoint_desc, landmarks_uv, descriptors, 4.0, 50)
    assert match.tolist() == [3, 1, -1]  # the closer-in-descriptor landmark 3 wins over 0; 2 is too far
    assert hamming(keypoint_desc[1:2], descriptors[1:2])[0] == 32
    assert (match_by_projection(keypoints_uv, keypoint_desc, landmarks_uv, descriptors, 4.0, 10) == [3, -1, -1]).all()


def test_low_contrast_texture_still_yields_features() -> None:
    """A faint texture (+-2 grey levels, a plain painted wall) gets features from the
    contrast-equalised second pass; FAST at the configured threshold finds none on it."""
    faint = (128 + (textured(5).astype(np.float32) - 128) * 2 / 128).astype(np.uint8)
    assert len(cv2.FastFeatureDetector_create(FrontendConfig().fast_threshold).detect(faint)) == 0
    points = FeatureDetector(FrontendConfig()).detect(faint, 200)
    assert len(points.uv) >= 100
    assert len(np.unique((points.uv // [80, 60]).astype(int), axis=0)) >= 12  # spread over the image


def test_match_by_descriptor_keeps_distinct_nearest_neighbours() -> None:
    from mp_slam_ros.frontend.matching import match_by_descriptor

    rng = np.random.default_rng(5)
    landmarks = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    keypoints = landmarks[[7, 3, 7]].copy()
    keypoints[0, :2] ^= 0x0F  # 8 bits off landmark 7: keypoint 2 (exact) takes it, keypoint 0 gets none
    keypoints = np.vstack([keypoints, rng.integers(0, 256, (1, 32), dtype=np.uint8)])  # matches nothing within 50 bits
    assert match_by_descriptor(keypoints, landmarks, 50, 0.8).tolist() == [-1, 3, 7, -1]
    twins = np.vstack([landmarks, landmarks[3:4]])  # an ambiguous landmark fails the ratio test
    assert match_by_descriptor(keypoints, twins, 50, 0.8).tolist() == [-1, -1, 7, -1]


def _camera_on_a_robot() -> np.ndarray:
    """``T_base_cam`` of a forward-looking optical camera 0.1 m ahead of and 0.6 m above base_link."""
    T_base_cam = np.eye(4)
    T_base_cam[:3, :3] = R_BASE_OPTICAL
    T_base_cam[:3, 3] = [0.1, 0.0, 0.6]
    return T_base_cam


def test_planar_prior_weighs_only_base_links_sideways_and_vertical_motion() -> None:
    T_base_cam = _camera_on_a_robot()
    config = TrackingConfig(sideways_sigma_m=0.001, vertical_sigma_m=0.002)
    information = planar_prior_information(config, T_base_cam)
    T_odom_base = se3_exp(np.array([1.0, 2.0, 0.0, 0.0, 0.0, 0.7]))[0]
    T_cam_odom = se3_inverse(T_odom_base @ T_base_cam)
    # base motions (base_link axes) -> the camera deviation delta that solve_pnp refines
    for motion_base, expected in [
        ([0.0005, 0.0, 0.0, 0.0, 0.0, 0.0], 0.0),  # forward: free
        ([0.0, 0.0, 0.0, 0.0, 0.0, 0.02], 0.0),  # a turn about base_link: free (the camera swings sideways)
        ([0.0, 0.0005, 0.0, 0.0, 0.0, 0.0], 0.25),  # half a sigma sideways
        ([0.0, 0.0, 0.001, 0.0, 0.0, 0.0], 0.25),  # half a sigma up
    ]:
        T_cam_odom_moved = se3_inverse(T_odom_base @ se3_exp(np.array(motion_base))[0] @ T_base_cam)
        delta = se3_log(T_cam_odom_moved @ se3_inverse(T_cam_odom))[0]
        assert float(delta @ information @ delta) == pytest.approx(expected, abs=1e-6)
    vertical_free = planar_prior_information(TrackingConfig(sideways_sigma_m=0.001), T_base_cam)
    assert np.linalg.matrix_rank(vertical_free) == 1 and not planar_prior_information(TrackingConfig(), T_base_cam).any()


def test_planar_motion_drops_sideways_and_vertical_base_motion() -> None:
    T_base_cam = _camera_on_a_robot()
    motion_base = se3_exp(np.array([0.012, 0.003, 0.002, 0.0, 0.0, 0.01]))[0]
    motion_cam = se3_inverse(T_base_cam) @ motion_base @ T_base_cam
    sideways_only = planar_motion(motion_cam, T_base_cam, TrackingConfig(sideways_sigma_m=0.001))
    both = planar_motion(motion_cam, T_base_cam, TrackingConfig(sideways_sigma_m=0.001, vertical_sigma_m=0.001))

    def base(motion: np.ndarray) -> np.ndarray:
        return T_base_cam @ motion @ se3_inverse(T_base_cam)

    assert np.allclose(base(sideways_only)[:3, 3], [motion_base[0, 3], 0.0, motion_base[2, 3]])
    assert np.allclose(base(both)[:3, 3], [motion_base[0, 3], 0.0, 0.0])
    assert np.allclose(base(both)[:3, :3], motion_base[:3, :3])  # the turn is kept
    assert planar_motion(motion_cam, T_base_cam, TrackingConfig()) is motion_cam  # off: untouched


def test_planar_prior_resolves_a_turn_from_a_sideways_shift() -> None:
    """A view of a wall: pixels barely tell a small turn from a sideways shift. The robot turned
    without moving sideways; with the motion model the pose follows, without it noise picks a mix."""
    T_base_cam = _camera_on_a_robot()  # base_link starts at the origin of odom
    turn = se3_exp(np.array([0.01, 0.0, 0.0, 0.0, 0.0, np.radians(0.4)]))[0]  # base: 1 cm forward, 0.4 deg left
    T_odom_cam = turn @ T_base_cam
    rng = np.random.default_rng(7)
    wall = np.column_stack([np.full(25, 4.0), rng.uniform(-0.6, 0.6, 25), rng.uniform(0.3, 0.9, 25)])  # base frame, 4 m ahead
    T_cam_odom = se3_inverse(T_odom_cam)
    points_cam = wall @ T_cam_odom[:3, :3].T + T_cam_odom[:3, 3]
    uv = points_cam[:, :2] / points_cam[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2] + rng.normal(0.0, 0.7, (25, 2))
    guess = se3_exp(np.array([0.01, 0.0, 0.0, 0.0, 0.0, 0.0]))[0] @ T_base_cam  # constant velocity: straight on
    config = TrackingConfig(sideways_sigma_m=0.0005, vertical_sigma_m=0.0005)

    def base_error(result: PnPResult | None) -> np.ndarray:
        assert result is not None
        return se3_log(se3_inverse(turn) @ result.T_odom_cam @ se3_inverse(T_base_cam))[0]

    free = base_error(solve_pnp(wall, uv, K, guess, config))
    held = base_error(solve_pnp(wall, uv, K, guess, config, platform_information=planar_prior_information(config, T_base_cam)))
    assert abs(held[1]) < 0.2e-3 < 1e-3 < abs(free[1])  # sideways (m): 0.04 vs 2.3 mm
    assert abs(held[5]) < abs(free[5]) / 3.0  # heading (rad): 0.003 vs 0.033 deg
