"""KLT tracking of keypoints from the last keyframe, frame-to-map pose by PnP RANSAC, and the
platform's motion bounds.

:class:`FrameTracker` keeps the reference (keyframe) image and finds its pixels in each new
frame (starting from predicted pixels), with an optional forward-backward check.
:func:`solve_pnp` estimates ``T_odom_cam`` from landmarks ``(N, 3)`` in odom and their pixels,
refines it on the inliers and returns the pose covariance of the reprojection model.
:func:`motion_ratio` tells a physically impossible motion (a tracking failure) and
:func:`bounded_motion` holds a motion model's prediction to the same bounds; a wheeled robot's
motion model (no sideways or vertical motion of its base) shapes the prediction
(:func:`planar_motion`) and the refinement (:func:`planar_prior_information`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.frontend.alignment import align_patches
from mp_slam_ros.geometry.camera import matrix_intrinsics, project
from mp_slam_ros.geometry.lie import hat, se3_adjoint, se3_exp, se3_inverse, se3_log, so3_log
from mp_slam_ros.pipelines.vo_config import FrontendConfig, TrackingConfig

_KLT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 0.03)
#: Gauss-Newton iterations of the patch alignment after KLT
ALIGNMENT_ITERATIONS = 10
#: PnP needs at least this many correspondences
MIN_PNP_POINTS = 6
#: Gauss-Newton iterations of the motion-only refinement after RANSAC
REFINE_ITERATIONS = 5
#: chi-square (6 dof, 99.9%) of a pose's distance from the motion prediction under the motion
#: prior: a pose this close to the prediction is accepted from fewer than ``tracking.min_inliers``
#: (but at least ``MIN_PNP_POINTS``) inliers
PRIOR_GATE_CHI2 = 22.46


class FrameTracker:
    """KLT optical flow (pyramidal Lucas-Kanade) from a reference frame (the last keyframe).

    Tracking every frame from the keyframe's image instead of from the previous frame keeps the
    sub-pixel errors of consecutive flows from adding up along a track (frame-to-frame chaining
    drifted ~0.5 deg in 50 frames on a generated sequence); the search starts at a predicted pixel.
    """

    def __init__(self, config: FrontendConfig) -> None:
        self.config = config
        self._reference: NDArray[np.uint8] | None = None
        self._reference_float: NDArray[np.float32] | None = None

    def track(
        self, grey: NDArray[np.uint8], uv_reference: NDArray[np.floating], uv_guess: NDArray[np.floating] | None = None,
        warps: NDArray[np.float64] | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Pixels ``(N, 2)`` in ``grey`` of the reference frame's pixels ``uv_reference`` and a
        success mask ``(N,)``.

        Points fail when KLT loses them, they leave the image, or (``frontend.klt_backward_check``)
        tracking back misses the start by ``klt_max_fb_error_px``. With ``warps`` ``(N, 2, 2)``
        (:func:`~mp_slam_ros.frontend.alignment.affine_warps`) and ``frontend.patch_alignment``,
        KLT's pixels are refined by affine-warped patch alignment (kept where it does not converge).
        """
        previous = self._reference
        n = len(uv_reference)
        if previous is None or n == 0:
            return np.zeros((n, 2)), np.zeros(n, bool)
        start = np.ascontiguousarray(uv_reference, np.float32).reshape(-1, 1, 2)
        flags, guess = 0, None
        if uv_guess is not None:
            guess = np.ascontiguousarray(uv_guess, np.float32).reshape(-1, 1, 2)
            flags = cv2.OPTFLOW_USE_INITIAL_FLOW
        window, level = (self.config.klt_window_px, self.config.klt_window_px), self.config.klt_levels
        forward, status, _ = cv2.calcOpticalFlowPyrLK(
            previous, grey, start, guess, winSize=window, maxLevel=level, criteria=_KLT_CRITERIA, flags=flags,
        )
        uv = forward.reshape(-1, 2).astype(np.float64)
        height, width = grey.shape[:2]
        ok = (status.reshape(-1) == 1) & (uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= height - 1)
        if self.config.klt_backward_check:
            back, status_back, _ = cv2.calcOpticalFlowPyrLK(
                grey, previous, forward, start.copy(), winSize=window, maxLevel=level,
                criteria=_KLT_CRITERIA, flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
            )
            error = np.linalg.norm(back.reshape(-1, 2) - start.reshape(-1, 2), axis=1)
            ok &= (status_back.reshape(-1) == 1) & (error <= self.config.klt_max_fb_error_px)
        if warps is not None and self.config.patch_alignment and ok.any():
            if self._reference_float is None:
                self._reference_float = previous.astype(np.float32)
            refined, aligned = align_patches(
                self._reference_float, grey.astype(np.float32), uv_reference[ok], warps[ok], uv[ok],
                self.config.alignment_patch_px // 2, ALIGNMENT_ITERATIONS, self.config.alignment_max_shift_px,
            )
            uv[np.flatnonzero(ok)[aligned]] = refined[aligned]
        return uv, ok

    def restart(self, grey: NDArray[np.uint8]) -> None:
        """Make ``grey`` the reference frame of the following calls."""
        self._reference = grey
        self._reference_float = None


@dataclass
class PnPResult:
    """A PnP pose: ``T_odom_cam`` ``(4, 4)``, inlier mask ``(N,)``, covariance ``(6, 6)``.

    The covariance is of a right perturbation of ``T_odom_cam`` (camera-frame ``[rho, phi]``).
    """

    T_odom_cam: NDArray[np.float64]
    inliers: NDArray[np.bool_]
    covariance_cam: NDArray[np.float64]


def solve_pnp(
    points_odom: NDArray[np.floating], uv: NDArray[np.floating], K: NDArray[np.float64],
    T_odom_cam_guess: NDArray[np.float64], config: TrackingConfig,
    u_right: NDArray[np.floating] | None = None, fx_baseline: float = 0.0,
    platform_information: NDArray[np.float64] | None = None,
) -> PnPResult | None:
    """Camera pose from landmarks ``(N, 3)`` and pixels ``(N, 2)``: RANSAC, then a motion-only
    refinement on the inliers that also uses this frame's depth as right-image coordinates
    ``u_right`` ``(N,)`` (``u - fx_baseline / depth``, NaN without depth) when given.

    The refinement also keeps the pose near the prediction ``T_odom_cam_guess`` with the weak
    prior of :func:`motion_prior_information`. ``None`` when fewer than ``tracking.min_inliers``
    inliers support a pose, unless (with a motion prior) at least ``MIN_PNP_POINTS`` do and the
    pose agrees with the prediction (:data:`PRIOR_GATE_CHI2`): a view turning onto a plain
    surface keeps a handful of tracks for a few frames, and those still measure the motion.
    ``platform_information`` ``(6, 6)`` (:func:`planar_prior_information`) adds the platform's
    motion model around the guess to the refinement and the covariance (not to that gate).
    """
    prior = motion_prior_information(config)
    pose_prior = prior if platform_information is None else prior + platform_information
    fewest = fewest_inliers(config)
    if len(uv) < fewest:
        return None
    T_cam_odom = se3_inverse(T_odom_cam_guess)
    rvec, _ = cv2.Rodrigues(T_cam_odom[:3, :3])
    tvec = T_cam_odom[:3, 3].reshape(3, 1).copy()
    objects = np.ascontiguousarray(points_odom, np.float64)
    pixels = np.ascontiguousarray(uv, np.float64)
    ok, rvec, tvec, inlier_index = cv2.solvePnPRansac(
        objects, pixels, K, None, rvec, tvec, useExtrinsicGuess=True,
        iterationsCount=config.ransac_iterations, reprojectionError=config.ransac_reprojection_px,
        confidence=0.999, flags=cv2.SOLVEPNP_ITERATIVE,
    )
    if ok and inlier_index is not None and len(inlier_index) >= fewest:
        inliers = np.zeros(len(uv), bool)
        inliers[inlier_index.reshape(-1)] = True
        T_cam_odom = np.eye(4)
        T_cam_odom[:3, :3] = cv2.Rodrigues(rvec)[0]
        T_cam_odom[:3, 3] = tvec.reshape(3)
    elif fewest < config.min_inliers:
        inliers = np.ones(len(uv), bool)  # too few points for RANSAC: the robust refinement from the prediction decides
    else:
        return None
    intrinsics = matrix_intrinsics(K)
    right = np.full(len(uv), np.nan) if u_right is None else np.array(u_right, np.float64)
    # this frame's depth must agree with the landmark at the RANSAC pose: a stereo mismatch or a
    # depth from the other side of an edge would pull the pose away from the pixels' consensus
    residual, _ = _stereo_rows(objects, pixels, right, intrinsics, fx_baseline, T_cam_odom)
    right[np.abs(residual.reshape(-1, 3)[:, 2]) > config.ransac_reprojection_px] = np.nan
    T_cam_odom_guess = se3_inverse(T_odom_cam_guess)
    scale = config.ransac_reprojection_px
    for _ in range(REFINE_ITERATIONS):
        residual, J = _stereo_rows(objects[inliers], pixels[inliers], right[inliers], intrinsics, fx_baseline, T_cam_odom)
        rows = residual.reshape(-1, 3)
        norms = np.repeat(np.stack([np.linalg.norm(rows[:, :2], axis=1), np.abs(rows[:, 2])], axis=1), [2, 1], axis=1)
        weight = np.minimum(1.0, scale / np.maximum(norms, 1e-12)).reshape(-1) / config.pixel_sigma_px**2  # Huber: pixel pair, depth
        from_guess = se3_log(T_cam_odom @ se3_inverse(T_cam_odom_guess))[0]
        H = J.T @ (weight[:, None] * J) + pose_prior
        delta = -np.linalg.solve(H + 1e-9 * np.eye(6), J.T @ (weight * residual) + pose_prior @ from_guess)
        T_cam_odom = se3_exp(delta)[0] @ T_cam_odom
        if np.linalg.norm(delta) < 1e-10:
            break
    points_cam = objects @ T_cam_odom[:3, :3].T + T_cam_odom[:3, 3]
    error = np.linalg.norm(project(intrinsics, points_cam)[0] - pixels, axis=1)
    inliers = (points_cam[:, 2] > 0.0) & (error <= config.ransac_reprojection_px)
    from_guess = se3_log(T_cam_odom @ se3_inverse(T_cam_odom_guess))[0]
    near_prediction = float(from_guess @ prior @ from_guess) <= PRIOR_GATE_CHI2
    if inliers.sum() < (fewest if near_prediction else config.min_inliers):
        return None
    _, J = _stereo_rows(objects[inliers], pixels[inliers], right[inliers], intrinsics, fx_baseline, T_cam_odom)
    covariance = np.linalg.pinv(J.T @ J / config.pixel_sigma_px**2 + pose_prior)
    return PnPResult(se3_inverse(T_cam_odom), inliers, covariance)


def motion_ratio(T_prev_cur: NDArray[np.float64], elapsed_s: float, config: TrackingConfig, slack_m: float = 0.0) -> float:
    """How far the camera motion ``T_prev_cur`` ``(4, 4)`` over ``elapsed_s`` exceeds the
    platform's bounds (``tracking.max_speed_mps``, ``max_angular_rate_dps``; 0: unbounded): the
    larger of translation / (speed x time) and angle / (rate x time). At most 1: plausible.
    ``slack_m`` of the translation is not counted (how far the start pose itself may be off)."""
    ratio = 0.0
    elapsed_s = max(elapsed_s, 1e-9)
    if config.max_speed_mps > 0.0:
        distance = max(0.0, float(np.linalg.norm(T_prev_cur[:3, 3])) - slack_m)
        ratio = distance / (config.max_speed_mps * elapsed_s)
    if config.max_angular_rate_dps > 0.0:
        angle_deg = float(np.degrees(np.linalg.norm(so3_log(T_prev_cur[None, :3, :3]))))
        ratio = max(ratio, angle_deg / (config.max_angular_rate_dps * elapsed_s))
    return ratio


def bounded_motion(T_prev_cur: NDArray[np.float64], elapsed_s: float, config: TrackingConfig) -> NDArray[np.float64]:
    """``T_prev_cur`` ``(4, 4)``, its twist scaled down to the platform's bounds when beyond them
    (:func:`motion_ratio`): a motion model never predicts an impossible motion."""
    ratio = motion_ratio(T_prev_cur, elapsed_s, config)
    if ratio <= 1.0:
        return T_prev_cur
    return se3_exp(se3_log(T_prev_cur)[0] / ratio)[0]


def fewest_inliers(config: TrackingConfig) -> int:
    """Fewest inliers of a pose near the motion prediction: ``MIN_PNP_POINTS`` with a full motion
    prior (``tracking.prior_*`` > 0), else ``tracking.min_inliers``."""
    if config.prior_translation_m > 0.0 and config.prior_rotation_deg > 0.0:
        return MIN_PNP_POINTS
    return max(MIN_PNP_POINTS, config.min_inliers)


def motion_prior_information(config: TrackingConfig) -> NDArray[np.float64]:
    """Information ``(6, 6)`` of the motion prior: the predicted pose, ``[rho, phi]`` sigmas
    ``tracking.prior_translation_m`` / ``prior_rotation_deg`` (0: no prior on that part).

    Pixels alone barely tell a sideways shift from a pan when the tracked points lie at one
    depth (a wall in front of the camera); a weak prior keeps that direction at the prediction
    while the well-observed directions follow the pixels.
    """
    sigmas = [config.prior_translation_m] * 3 + [np.radians(config.prior_rotation_deg)] * 3
    return np.diag([1.0 / s**2 if s > 0 else 0.0 for s in sigmas])


def planar_prior_information(config: TrackingConfig, T_base_cam: NDArray[np.float64]) -> NDArray[np.float64]:
    """Information ``(6, 6)`` of a wheeled robot's motion model on a camera pose's deviation from
    its prediction (the ``[rho, phi]`` of ``T_cam_odom = exp(delta) T_cam_odom_guess`` that
    :func:`solve_pnp` refines): base_link moves neither sideways (``tracking.sideways_sigma_m``)
    nor up or down (``tracking.vertical_sigma_m``) between frames; a sigma of 0 leaves that axis
    free. The camera's ``delta`` moves base_link by ``-Ad(T_base_cam) delta`` (a right
    perturbation of ``T_odom_base``), whose translation is in base_link's axes (x forward, y left,
    z up)."""
    weights = np.zeros(6)
    weights[1:3] = [1.0 / sigma**2 if sigma > 0.0 else 0.0 for sigma in (config.sideways_sigma_m, config.vertical_sigma_m)]
    adjoint = se3_adjoint(T_base_cam)[0]
    return adjoint.T @ np.diag(weights) @ adjoint


def planar_motion(T_prev_cur: NDArray[np.float64], T_base_cam: NDArray[np.float64], config: TrackingConfig) -> NDArray[np.float64]:
    """Camera motion ``T_prev_cur`` ``(4, 4)`` with base_link's sideways (and, with
    ``tracking.vertical_sigma_m``, vertical) translation removed where
    :func:`planar_prior_information` holds it: the prediction that prior is centred on
    (``T_prev_cur`` itself, untouched, when neither sigma is set)."""
    if config.sideways_sigma_m <= 0.0 and config.vertical_sigma_m <= 0.0:
        return T_prev_cur
    motion_base = T_base_cam @ T_prev_cur @ se3_inverse(T_base_cam)
    if config.sideways_sigma_m > 0.0:
        motion_base[1, 3] = 0.0
    if config.vertical_sigma_m > 0.0:
        motion_base[2, 3] = 0.0
    return se3_inverse(T_base_cam) @ motion_base @ T_base_cam


def _stereo_rows(
    points: NDArray[np.float64], uv: NDArray[np.float64], u_right: NDArray[np.float64],
    intrinsics: NDArray[np.float64], fx_baseline: float, T_cam_odom: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Residuals ``(3N,)`` ``(u, v, u_right)`` (zero rows without depth) and their Jacobian
    ``(3N, 6)`` under a left perturbation ``exp(delta) T_cam_odom``, ``delta = [rho, phi]``."""
    points_cam = points @ T_cam_odom[:3, :3].T + T_cam_odom[:3, 3]
    projected, d_uv = project(intrinsics, points_cam, with_jacobian=True)
    d_point = np.concatenate([np.broadcast_to(np.eye(3), (len(points_cam), 3, 3)), -hat(points_cam)], axis=2)
    has_depth = np.isfinite(u_right)
    z = points_cam[:, 2]
    d_right = d_uv[:, 0, :].copy()
    d_right[:, 2] += fx_baseline / z**2
    d_right[~has_depth] = 0.0
    rows = np.concatenate([d_uv, d_right[:, None, :]], axis=1)  # (N, 3, 3)
    J = np.einsum("nij,njk->nik", rows, d_point).reshape(-1, 6)
    right_residual = np.where(has_depth, projected[:, 0] - fx_baseline / z - u_right, 0.0)
    residual = np.concatenate([projected - uv, right_residual[:, None]], axis=1).reshape(-1)
    return residual, J
