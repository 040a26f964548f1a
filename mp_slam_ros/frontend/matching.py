"""Re-finding map landmarks in a keyframe: ORB descriptors matched near the landmarks' projections.

KLT loses a landmark for good once its track breaks (occlusion, blur, the view turning away and
back); matching the window's untracked landmarks against the keyframe's new keypoints within a
few pixels of where the current pose projects them turns those into observations again (longer
tracks, less drift) instead of new landmarks.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree


def hamming(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> NDArray[np.int64]:
    """Bit distances ``(N,)`` between binary descriptor rows ``a`` and ``b`` ``(N, D)``."""
    return np.unpackbits(np.bitwise_xor(a, b), axis=1).sum(axis=1).astype(np.int64)


def match_by_projection(
    uv_keypoints: NDArray[np.floating], descriptors_keypoints: NDArray[np.uint8],
    uv_landmarks: NDArray[np.floating], descriptors_landmarks: NDArray[np.uint8],
    radius_px: float, max_hamming: int,
) -> NDArray[np.int64]:
    """For each keypoint ``(M,)`` the index of the landmark it matches, or -1.

    Candidates lie within ``radius_px`` of the landmark's projection and within ``max_hamming``
    bits; pairs are taken best descriptor distance first, each keypoint and landmark at most once.
    """
    match = np.full(len(uv_keypoints), -1, np.int64)
    if len(uv_keypoints) == 0 or len(uv_landmarks) == 0 or radius_px <= 0:
        return match
    pairs = cKDTree(uv_keypoints).sparse_distance_matrix(cKDTree(uv_landmarks), radius_px, output_type="ndarray")
    if pairs.size == 0:
        return match
    keypoint, landmark = pairs["i"].astype(np.int64), pairs["j"].astype(np.int64)
    distance = hamming(descriptors_keypoints[keypoint], descriptors_landmarks[landmark])
    good = distance <= max_hamming
    keypoint, landmark, distance = keypoint[good], landmark[good], distance[good]
    order = np.lexsort((landmark, keypoint, distance))
    used_keypoint = np.zeros(len(uv_keypoints), bool)
    used_landmark = np.zeros(len(uv_landmarks), bool)
    for k, l in zip(keypoint[order], landmark[order]):
        if not (used_keypoint[k] or used_landmark[l]):
            used_keypoint[k] = used_landmark[l] = True
            match[k] = l
    return match


def match_by_descriptor(
    descriptors_keypoints: NDArray[np.uint8], descriptors_landmarks: NDArray[np.uint8], max_hamming: int, ratio: float,
) -> NDArray[np.int64]:
    """For each keypoint ``(M,)`` the index of the landmark with the nearest descriptor, or -1:
    within ``max_hamming`` bits and closer than ``ratio`` times the second nearest (Lowe's test);
    each landmark at most once (its best keypoint). Where no pose predicts the pixels."""
    match = np.full(len(descriptors_keypoints), -1, np.int64)
    if len(descriptors_keypoints) == 0 or len(descriptors_landmarks) < 2:
        return match
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(
        np.ascontiguousarray(descriptors_keypoints), np.ascontiguousarray(descriptors_landmarks), k=2,
    )
    best = np.array([(m[0].trainIdx, m[0].distance, m[1].distance) for m in pairs], np.float64).reshape(-1, 3)
    good = (best[:, 1] <= max_hamming) & (best[:, 1] < ratio * best[:, 2])
    landmark = best[:, 0].astype(np.int64)
    used = np.zeros(len(descriptors_landmarks), bool)
    for k in np.flatnonzero(good)[np.argsort(best[good, 1], kind="stable")]:
        if not used[landmark[k]]:
            used[landmark[k]] = True
            match[k] = landmark[k]
    return match
