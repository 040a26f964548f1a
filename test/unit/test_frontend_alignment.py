"""Affine-warped patch alignment (frontend/alignment.py): the warps a pose implies, sub-pixel
refinement under a known affine map, rows held in stereo, and the tracker's use of it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.frontend.alignment import affine_warps, align_patches
from mp_slam_ros.frontend.tracking import FrameTracker
from mp_slam_ros.geometry.camera import PinholeCamera
from mp_slam_ros.geometry.lie import se3_exp
from mp_slam_ros.pipelines.vo_config import FrontendConfig

CAMERA = PinholeCamera(300.0, 300.0, 160.0, 120.0)
CENTRE = np.array([160.0, 120.0])


def textured(seed: int = 0) -> np.ndarray:
    """A blurred random-noise image, float32 (240, 320)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (60, 80)).astype(np.float32)
    return cv2.GaussianBlur(cv2.resize(noise, (320, 240), interpolation=cv2.INTER_CUBIC), (0, 0), 1.0)


def warped(image: np.ndarray, A: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` under ``x -> A (x - centre) + centre + shift`` and that map as a 2x3 matrix."""
    M = np.hstack([A, (CENTRE + shift - A @ CENTRE)[:, None]])
    return cv2.warpAffine(image, M, (320, 240), flags=cv2.INTER_CUBIC), M


def test_affine_warps_of_simple_motions() -> None:
    uv = np.array([[160.0, 120.0], [100.0, 80.0]])
    depth = 2.0
    points = np.hstack([(uv - CENTRE) / 300.0 * depth, np.full((2, 1), depth)])
    np.testing.assert_allclose(affine_warps(points, uv, np.eye(4), CAMERA), np.broadcast_to(np.eye(2), (2, 2, 2)), atol=1e-12)
    closer = np.eye(4)
    closer[2, 3] = -0.5  # the camera 0.5 m nearer the fronto-parallel surface: the view scales by 2 / 1.5
    np.testing.assert_allclose(affine_warps(points, uv, closer, CAMERA)[0], np.eye(2) * depth / 1.5, rtol=1e-9)
    roll = se3_exp(np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.1]))[0]  # about the optical axis: the patch turns
    rotation = np.array([[np.cos(0.1), -np.sin(0.1)], [np.sin(0.1), np.cos(0.1)]])
    np.testing.assert_allclose(affine_warps(points, uv, roll, CAMERA)[0], rotation, atol=1e-9)
    behind = points.copy()
    behind[1, 2] = -1.0
    np.testing.assert_array_equal(affine_warps(behind, uv, closer, CAMERA)[1], np.eye(2))


def test_alignment_under_the_true_warp_is_sub_pixel_and_beats_a_square_window() -> None:
    rng = np.random.default_rng(1)
    reference = textured(1)
    A, shift = np.array([[1.15, 0.05], [-0.03, 1.1]]), np.array([3.3, -2.7])
    image, M = warped(reference, A, shift)
    uv_ref = rng.uniform([70.0, 60.0], [250.0, 180.0], (40, 2))
    truth = uv_ref @ M[:, :2].T + M[:, 2]
    start = truth + rng.normal(0.0, 0.5, truth.shape)
    warps = np.broadcast_to(A, (40, 2, 2))
    uv, ok = align_patches(reference, image + 7.0, uv_ref, warps, start, 4, 10, 3.0)  # brightness offset too
    assert ok.sum() >= 38
    assert np.median(np.linalg.norm(uv[ok] - truth[ok], axis=1)) < 0.05
    square, ok_square = align_patches(reference, image, uv_ref, np.broadcast_to(np.eye(2), (40, 2, 2)), start, 4, 10, 3.0)
    assert np.median(np.linalg.norm(square[ok_square] - truth[ok_square], axis=1)) > 0.1
    np.testing.assert_array_equal(uv[~ok], start[~ok])  # not converged: the start is kept


def test_alignment_keeps_its_start_off_the_image_and_beyond_the_shift_bound() -> None:
    reference = textured(2)
    image, _ = warped(reference, np.eye(2), np.array([1.5, 0.0]))
    uv_ref = np.array([[1.0, 1.0], [150.0, 100.0]])
    start = np.array([[2.0, 1.0], [150.0, 100.0]])
    uv, ok = align_patches(reference, image, uv_ref, np.broadcast_to(np.eye(2), (2, 2, 2)), start, 4, 10, 1.0)
    assert not ok.any()
    np.testing.assert_array_equal(uv, start)


def test_horizontal_only_alignment_keeps_the_row() -> None:
    left = textured(3)
    right, _ = warped(left, np.eye(2), np.array([-6.3, 0.4]))
    uv = np.array([[100.0, 80.0], [200.0, 150.0]])
    start = uv + [-6.0, 0.0]
    refined, ok = align_patches(left, right, uv, np.broadcast_to(np.eye(2), (2, 2, 2)), start, 4, 10, 2.0, horizontal_only=True)
    assert ok.all()
    np.testing.assert_array_equal(refined[:, 1], uv[:, 1])
    np.testing.assert_allclose(refined[:, 0], uv[:, 0] - 6.3, atol=0.3)


def test_tracker_refines_klt_under_a_zoom() -> None:
    rng = np.random.default_rng(4)
    reference = textured(4)
    A = np.eye(2) * 1.25
    image, M = warped(reference, A, np.array([2.0, 1.0]))
    uv_ref = rng.uniform([80.0, 70.0], [240.0, 170.0], (30, 2))
    truth = uv_ref @ M[:, :2].T + M[:, 2]
    errors = {}
    for alignment in (False, True):
        tracker = FrameTracker(FrontendConfig(patch_alignment=alignment))
        tracker.restart(reference.clip(0, 255).astype(np.uint8))
        uv, ok = tracker.track(image.clip(0, 255).astype(np.uint8), uv_ref, truth + 0.3, np.broadcast_to(A, (30, 2, 2)))
        errors[alignment] = np.median(np.linalg.norm(uv[ok] - truth[ok], axis=1))
    assert errors[True] < 0.1 < errors[False]


def test_patch_side_must_be_odd() -> None:
    with pytest.raises(ConfigError, match="alignment_patch_px"):
        FrontendConfig(alignment_patch_px=8).validate()
