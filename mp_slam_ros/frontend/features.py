"""ORB features spread over the image by a bucketing grid, and descriptors at given pixels.

Detection keeps the strongest FAST/Harris corners of every grid cell (``frontend.grid_cols`` x
``frontend.grid_rows``) so features cover the image instead of clustering on one textured
object, and skips pixels near already tracked features (``frontend.min_distance_px``) and near a
stronger new corner (``frontend.new_feature_spacing_px``: ORB finds one corner at several pyramid
levels and on neighbouring pixels; without it most of a 320x240 view's 500 new features had
another within 4 px, tracked as separate landmarks with correlated errors). A
texture-poor view (a plain wall) gets weaker corners, down to those of its contrast-equalised
image, rather than none.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numba
import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

from mp_slam_ros.pipelines.vo_config import FrontendConfig

#: ORB patch size (pixels)
ORB_PATCH_PX = 31
#: no keypoints this close to the image border (pixels, per pyramid level). ORB pads its pyramid
#: by the rotated patch radius (23 px) whatever this border, so descriptors near the edge read the
#: reflected border; the usual 31 px left 40% of a 320x240 image without features, and views of
#: a plain surface whose only texture is a strip at the edge lost tracking (generated seed 18)
BORDER_PX = 10
#: candidates detected per kept feature before bucketing
DETECT_OVERSAMPLING = 3
#: FAST threshold of the second detection pass on texture-poor images
MIN_FAST_THRESHOLD = 3
#: a view is texture-poor when its tracked and new corners are fewer than this share of
#: ``frontend.max_features``: only then are corners of the contrast-equalised image taken too
TEXTURE_POOR_SHARE = 0.25
#: contrast-limited histogram equalisation of that pass: clip limit and tiles (columns, rows)
CLAHE_CLIP_LIMIT = 2.0
CLAHE_TILES = (8, 6)


@dataclass
class Keypoints:
    """Detected keypoints: pixels ``(N, 2)`` float32 and their ORB orientation (deg) ``(N,)``."""

    uv: NDArray[np.float32]
    angle_deg: NDArray[np.float32]


@dataclass
class _Corners:
    """Detected corners: pixels ``(N, 2)``, FAST responses ``(N,)``, orientations (deg) ``(N,)``."""

    uv: NDArray[np.float32]
    response: NDArray[np.float32]
    angle_deg: NDArray[np.float32]


class FeatureDetector:
    """Grid-bucketed ORB detection and ORB description (OpenCV)."""

    def __init__(self, config: FrontendConfig) -> None:
        self.config = config
        self._orb = cv2.ORB_create(
            nfeatures=DETECT_OVERSAMPLING * config.max_features, scaleFactor=1.2, nlevels=config.pyramid_levels,
            edgeThreshold=BORDER_PX, patchSize=ORB_PATCH_PX, fastThreshold=config.fast_threshold,
        )
        self._clahe = cv2.createCLAHE(CLAHE_CLIP_LIMIT, CLAHE_TILES)

    def detect(self, grey: NDArray[np.uint8], budget: int, occupied_uv: NDArray[np.floating] | None = None) -> Keypoints:
        """Up to ``budget`` new keypoints, bucketed over the grid, away from ``occupied_uv`` ``(M, 2)``."""
        height, width = grey.shape
        if budget <= 0:
            return Keypoints(np.zeros((0, 2), np.float32), np.zeros(0, np.float32))
        mask = np.full((height, width), 255, np.uint8)
        radius = int(round(self.config.min_distance_px))
        if occupied_uv is not None and radius > 0:
            for u, v in np.asarray(occupied_uv).astype(np.int32):
                cv2.circle(mask, (int(u), int(v)), radius, 0, -1)
        found = self._corners(grey, mask)
        if len(found.uv) < budget // 2:
            num_tracked = 0 if occupied_uv is None else len(occupied_uv)
            found = self._detect_weak(grey, mask, num_tracked)
        keep = bucket(found.uv, found.response, (width, height), self.config.grid_cols, self.config.grid_rows, budget)
        return Keypoints(found.uv[keep], found.angle_deg[keep])

    def _corners(self, image: NDArray[np.uint8], mask: NDArray[np.uint8]) -> _Corners:
        """ORB corners of ``image`` in ``mask``, less those within ``frontend.new_feature_spacing_px``
        of a stronger one."""
        found = self._orb.detect(image, mask)
        uv = np.array([kp.pt for kp in found], np.float32).reshape(-1, 2)
        response = np.array([kp.response for kp in found], np.float32)
        angle_deg = np.array([kp.angle for kp in found], np.float32)
        keep = suppress_close(uv, response, self.config.new_feature_spacing_px)
        return _Corners(uv[keep], response[keep], angle_deg[keep])

    def _detect_weak(self, grey: NDArray[np.uint8], mask: NDArray[np.uint8], num_tracked: int) -> _Corners:
        """Corners of a view with little texture, rather than lose tracking: FAST at
        :data:`MIN_FAST_THRESHOLD` and, when the view is texture-poor (a plain wall: with the
        ``num_tracked`` features, fewer than :data:`TEXTURE_POOR_SHARE` of the maximum), those
        of the contrast-equalised image (CLAHE; described and tracked on the image itself).
        Views with enough texture elsewhere do not equalise: it only adds corners there that
        KLT and stereo matching localise worse (more drift)."""
        self._orb.setFastThreshold(min(MIN_FAST_THRESHOLD, self.config.fast_threshold))
        try:
            found = self._corners(grey, mask)
            if num_tracked + len(found.uv) < TEXTURE_POOR_SHARE * self.config.max_features:
                found = self._corners(self._clahe.apply(grey), mask)
        finally:
            self._orb.setFastThreshold(self.config.fast_threshold)
        return found

    def describe(
        self, grey: NDArray[np.uint8], uv: NDArray[np.floating], angle_deg: NDArray[np.floating]
    ) -> tuple[NDArray[np.uint8], NDArray[np.bool_]]:
        """ORB descriptors ``(N, 32)`` at pixels ``uv`` and the mask of keypoints that got one
        (OpenCV drops keypoints within the patch border; their rows are zero)."""
        keypoints = [
            cv2.KeyPoint(float(u), float(v), ORB_PATCH_PX, float(a), 0.0, 0, i)
            for i, ((u, v), a) in enumerate(zip(np.asarray(uv), np.asarray(angle_deg)))
        ]
        kept, descriptors = self._orb.compute(grey, keypoints)
        out = np.zeros((len(keypoints), 32), np.uint8)
        valid = np.zeros(len(keypoints), bool)
        if descriptors is not None and len(kept):
            index = np.array([kp.class_id for kp in kept], np.int64)
            out[index] = descriptors
            valid[index] = True
        return out, valid


def suppress_close(uv: NDArray[np.floating], response: NDArray[np.floating], radius_px: float) -> NDArray[np.int64]:
    """Indices (ascending) of the keypoints ``uv`` ``(N, 2)`` left when each, strongest
    ``response`` first, removes the weaker ones within ``radius_px`` (greedy non-maximum
    suppression; ties keep the lower index). ``radius_px`` 0: all."""
    if radius_px <= 0.0 or len(uv) < 2:
        return np.arange(len(uv))
    pairs = cKDTree(np.asarray(uv, np.float64)).query_pairs(radius_px, output_type="ndarray")
    both = np.concatenate([pairs, pairs[:, ::-1]])  # each pair from either end, grouped by its first
    both = both[np.argsort(both[:, 0], kind="stable")]
    starts = np.searchsorted(both[:, 0], np.arange(len(uv) + 1))
    order = np.argsort(-np.asarray(response), kind="stable")
    return np.flatnonzero(~_greedy_suppression(order, starts, both[:, 1].copy()))


def warm_up() -> None:
    """Suppress one close pair so the first keyframe does not pay the numba compile or cache load."""
    suppress_close(np.array([[0.0, 0.0], [0.5, 0.0]]), np.array([1.0, 0.5]), 1.0)


@numba.njit(cache=True)
def _greedy_suppression(order: NDArray[np.int64], starts: NDArray[np.int64], neighbours: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Removed flags: in ``order``, each kept point removes its neighbours (CSR: ``starts``, ``neighbours``)."""
    removed = np.zeros(len(starts) - 1, np.bool_)
    for i in order:
        if not removed[i]:
            for j in neighbours[starts[i]:starts[i + 1]]:
                removed[j] = True
    return removed


def bucket(
    uv: NDArray[np.floating], response: NDArray[np.floating], size_px: tuple[int, int],
    cols: int, rows: int, budget: int,
) -> NDArray[np.int64]:
    """Indices of at most ``budget`` keypoints: the strongest ``ceil(budget / cells)`` per grid
    cell, then (cells without texture leave budget over) the strongest of the others, or the
    strongest overall if the quotas overshoot. Deterministic (stable sorts)."""
    width, height = size_px
    cell_x = np.minimum((uv[:, 0] * cols / width).astype(np.int64), cols - 1)
    cell_y = np.minimum((uv[:, 1] * rows / height).astype(np.int64), rows - 1)
    cell = cell_y * cols + cell_x
    order = np.lexsort((-response, cell))  # by cell, strongest first
    sorted_cell = cell[order]
    first = np.searchsorted(sorted_cell, sorted_cell, side="left")
    rank = np.arange(order.size) - first
    quota = -(-budget // (cols * rows))
    chosen, rest = order[rank < quota], order[rank >= quota]
    if chosen.size > budget:
        chosen = chosen[np.argsort(-response[chosen], kind="stable")[:budget]]
    elif rest.size:
        fill = rest[np.argsort(-response[rest], kind="stable")[: budget - chosen.size]]
        chosen = np.concatenate([chosen, fill])
    return np.sort(chosen)
