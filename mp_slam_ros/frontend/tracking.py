"""Frame-to-frame KLT tracking of keypoints and frame-to-map pose by PnP RANSAC.

:class:`FrameTracker` keeps the previous frame and moves pixels into the next
frame (optionally starting from predicted pixels), with a forward-backward check.
:func:`solve_pnp` estimates ``T_odom_cam`` from landmarks ``(N, 3)`` in odom and their pixels,
refines it on the inliers and returns the pose covariance of the reprojection model.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.geometry.camera import project
from mp_slam_ros.geometry.lie import hat, se3_inverse
from mp_slam_ros.pipelines.vo_config import FrontendConfig, TrackingConfig

_KLT_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)
#: PnP needs at least this many correspondences
MIN_PNP_POINTS = 6


class FrameTracker:
    """KLT optical flow (pyramidal Lucas-Kanade) from the previous frame to the current one."""

    def __init__(self, config: FrontendConfig) -> None:
        self.config = config
        self._previous: NDArray[np.uint8] | None = None

    def track(
        self, grey: NDArray[np.uint8], uv_prev: NDArray[np.floating], uv_guess: NDArray[np.floating] | None = None,
    ) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Pixels ``(N, 2)`` of ``uv_prev`` in ``grey`` and a success mask ``(N,)``.

        Makes ``grey`` the previous frame for the next call. Points fail when KLT loses them,
        they leave the image, or tracking back misses the start by ``klt_max_fb_error_px``.
        """
        previous, self._previous = self._previous, grey
        n = len(uv_prev)
        if previous is None or n == 0:
            return np.zeros((n, 2)), np.zeros(n, bool)
        start = np.ascontiguousarray(uv_prev, np.float32).reshape(-1, 1, 2)
        flags, guess = 0, None
        if uv_guess is not None:
            guess = np.ascontiguousarray(uv_guess, np.float32).reshape(-1, 1, 2)
            flags = cv2.OPTFLOW_USE_INITIAL_FLOW
        window, level = (self.config.klt_window_px, self.config.klt_window_px), self.config.klt_levels
        forward, status, _ = cv2.calcOpticalFlowPyrLK(
            previous, grey, start, guess, winSize=window, maxLevel=level, criteria=_KLT_CRITERIA, flags=flags,
        )
        back, status_back, _ = cv2.calcOpticalFlowPyrLK(
            grey, previous, forward, start.copy(), winSize=window, maxLevel=level,
            criteria=_KLT_CRITERIA, flags=cv2.OPTFLOW_USE_INITIAL_FLOW,
        )
        uv = forward.reshape(-1, 2).astype(np.float64)
        height, width = grey.shape[:2]
        ok = (
            (status.reshape(-1) == 1) & (status_back.reshape(-1) == 1)
            & (np.linalg.norm(back.reshape(-1, 2) - start.reshape(-1, 2), axis=1) <= self.config.klt_max_fb_error_px)
            & (uv[:, 0] >= 0) & (uv[:, 0] <= width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= height - 1)
        )
        return uv, ok

    def restart(self, grey: NDArray[np.uint8]) -> None:
        """Make ``grey`` the previous frame without tracking anything."""
        self._previous = grey


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
) -> PnPResult | None:
    """Camera pose from landmarks ``(N, 3)`` and pixels ``(N, 2)`` (RANSAC, then LM on inliers).

    ``None`` when fewer than ``tracking.min_inliers`` inliers support a pose.
    """
    if len(uv) < max(MIN_PNP_POINTS, config.min_inliers):
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
    if not ok or inlier_index is None or len(inlier_index) < config.min_inliers:
        return None
    inliers = np.zeros(len(uv), bool)
    inliers[inlier_index.reshape(-1)] = True
    rvec, tvec = cv2.solvePnPRefineLM(objects[inliers], pixels[inliers], K, None, rvec, tvec)
    T_cam_odom = np.eye(4)
    T_cam_odom[:3, :3] = cv2.Rodrigues(rvec)[0]
    T_cam_odom[:3, 3] = tvec.reshape(3)
    # re-label inliers at the refined pose
    points_cam = objects @ T_cam_odom[:3, :3].T + T_cam_odom[:3, 3]
    intrinsics = np.array([K[0, 0], K[1, 1], K[0, 2], K[1, 2], 0.0, 0.0])
    projected, jac = project(intrinsics, points_cam, with_jacobian=True)
    error = np.linalg.norm(projected - pixels, axis=1)
    inliers = (points_cam[:, 2] > 0.0) & (error <= config.ransac_reprojection_px)
    if inliers.sum() < config.min_inliers:
        return None
    covariance = pose_covariance(points_cam[inliers], jac[inliers], config.pixel_sigma_px)
    return PnPResult(se3_inverse(T_cam_odom), inliers, covariance)


def pose_covariance(
    points_cam: NDArray[np.float64], d_uv_d_point: NDArray[np.float64], sigma_px: float
) -> NDArray[np.float64]:
    """``sigma^2 (J^T J)^-1`` ``(6, 6)`` of the reprojection of ``points_cam`` ``(N, 3)`` under a
    camera-frame perturbation ``[rho, phi]`` (``d p / d xi = [I, -[p]x]``)."""
    d_point = np.concatenate([np.broadcast_to(np.eye(3), (len(points_cam), 3, 3)), -hat(points_cam)], axis=2)
    J = np.einsum("nij,njk->nik", d_uv_d_point, d_point).reshape(-1, 6)
    information = J.T @ J / sigma_px**2
    return np.linalg.pinv(information)
