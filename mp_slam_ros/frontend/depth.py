"""Depth of keypoints: from an aligned depth image (RGB-D) or a rectified right image (stereo).

Both return depth in metres ``(N,)`` float64 with NaN where there is none (invalid pixel, out of
``[min_depth_m, max_depth_m]``, no stereo match).
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.frontend.alignment import align_patches
from mp_slam_ros.pipelines.vo_config import FrontendConfig

#: KLT termination for the stereo search along rows
_STEREO_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 0.01)
#: Gauss-Newton iterations of the stereo match's refinement along its row
STEREO_ALIGNMENT_ITERATIONS = 10


def depth_at(depth_m: NDArray[np.floating], uv: NDArray[np.floating], config: FrontendConfig) -> NDArray[np.float64]:
    """Depth image ``(H, W)`` metres (NaN/0 invalid) at the nearest pixel of each ``uv`` ``(N, 2)``.

    Corners often sit on depth edges, where the nearest pixel may belong to the background or
    the foreground: a keypoint whose 3x3 neighbourhood spans more than
    ``frontend.depth_edge_ratio`` of its depth (or has a hole) gets none.
    """
    height, width = depth_m.shape
    col = np.clip(np.rint(uv[:, 0]).astype(np.int64), 0, width - 1)
    row = np.clip(np.rint(uv[:, 1]).astype(np.int64), 0, height - 1)
    depth = depth_m[row, col].astype(np.float64)
    if config.depth_edge_ratio > 0.0 and len(uv):
        offsets = np.array([-1, 0, 1])
        rows = np.clip(row[:, None, None] + offsets[None, :, None], 0, height - 1)
        cols = np.clip(col[:, None, None] + offsets[None, None, :], 0, width - 1)
        patch = depth_m[rows, cols].reshape(len(uv), -1).astype(np.float64)
        spread = patch.max(axis=1) - patch.min(axis=1)  # NaN when the patch has a hole
        depth = np.where(spread <= config.depth_edge_ratio * depth, depth, np.nan)
    return _in_range(depth, config)


def stereo_depth(
    left: NDArray[np.uint8], right: NDArray[np.uint8], uv: NDArray[np.floating], fx_baseline: float,
    config: FrontendConfig,
) -> NDArray[np.float64]:
    """Depth of left keypoints ``uv`` ``(N, 2)`` by KLT into the rectified right image.

    A match must stay on its row (``frontend.stereo_max_row_error_px``), have positive disparity
    and track back onto the left keypoint within ``frontend.klt_max_fb_error_px``;
    ``depth = fx * baseline / disparity``. With ``frontend.patch_alignment`` the match is refined
    along the keypoint's row by patch alignment (:func:`~mp_slam_ros.frontend.alignment.align_patches`).
    """
    if len(uv) == 0:
        return np.zeros(0)
    window = (config.klt_window_px, config.klt_window_px)
    points = np.ascontiguousarray(uv, np.float32).reshape(-1, 1, 2)
    matched, status, _ = cv2.calcOpticalFlowPyrLK(
        left, right, points, None, winSize=window, maxLevel=config.klt_levels, criteria=_STEREO_CRITERIA
    )
    back, status_back, _ = cv2.calcOpticalFlowPyrLK(
        right, left, matched, None, winSize=window, maxLevel=config.klt_levels, criteria=_STEREO_CRITERIA
    )
    matched, back = matched.reshape(-1, 2), back.reshape(-1, 2)
    disparity = uv[:, 0] - matched[:, 0]
    ok = (
        (status.reshape(-1) == 1) & (status_back.reshape(-1) == 1)
        & (np.abs(matched[:, 1] - uv[:, 1]) <= config.stereo_max_row_error_px)
        & (np.linalg.norm(back - uv, axis=1) <= config.klt_max_fb_error_px)
        & (disparity > 0.0)
    )
    if config.patch_alignment and ok.any():
        start = np.stack([matched[ok, 0], uv[ok, 1]], axis=1)
        refined, aligned = align_patches(
            left.astype(np.float32), right.astype(np.float32), uv[ok], np.broadcast_to(np.eye(2), (int(ok.sum()), 2, 2)),
            start, config.alignment_patch_px // 2, STEREO_ALIGNMENT_ITERATIONS, config.alignment_max_shift_px, horizontal_only=True,
        )
        disparity[np.flatnonzero(ok)[aligned]] = uv[ok][aligned, 0] - refined[aligned, 0]
        ok &= disparity > 0.0
    depth = np.full(len(uv), np.nan)
    depth[ok] = fx_baseline / disparity[ok]
    return _in_range(depth, config)


def _in_range(depth: NDArray[np.float64], config: FrontendConfig) -> NDArray[np.float64]:
    valid = np.isfinite(depth) & (depth >= config.min_depth_m) & (depth <= config.max_depth_m)
    return np.where(valid, depth, np.nan)
