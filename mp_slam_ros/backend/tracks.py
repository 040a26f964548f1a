"""Feature tracks from pairwise matches, at most one keypoint per keyframe (ROS-free).

Pairwise matches chain into tracks (one landmark each). A chain that reaches two keypoints of one
keyframe holds a wrong match somewhere; dropping such a component whole loses the longest tracks,
which are the ones that tie distant keyframes together (on a generated 180-s house, 31% of the
matched keypoints sat in such components, mean length 36 observations). Instead the matches are
joined best first (smallest descriptor distance), and a match that would bring a second keypoint of
a keyframe into a track is refused: the track keeps its better matches and the refused keypoint
starts or joins another track.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]


def join_tracks(feature_keyframe: IntArray, rows: IntArray, cols: IntArray, cost: NDArray[np.integer]) -> IntArray:
    """Track label ``(F,)`` of every feature (keyframe index ``feature_keyframe`` ``(F,)``) from the
    matches ``rows[m] ~ cols[m]`` ``(M,)`` taken in ascending ``cost`` ``(M,)`` (ties: in the given
    order). Labels are the track's representative feature; an unmatched feature is its own track."""
    feature_keyframe = np.ascontiguousarray(feature_keyframe, np.int64)
    num_keyframes = int(feature_keyframe.max()) + 1 if feature_keyframe.size else 0
    order = np.argsort(np.asarray(cost), kind="stable").astype(np.int64)
    return _greedy_join(feature_keyframe, np.asarray(rows, np.int64), np.asarray(cols, np.int64), order, num_keyframes)


@numba.njit(cache=True)
def _root(parent: IntArray, i: int) -> int:
    """Union-find root of ``i`` with path halving."""
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


@numba.njit(cache=True)
def _greedy_join(feature_keyframe: IntArray, rows: IntArray, cols: IntArray, order: IntArray, num_keyframes: int) -> IntArray:
    """Union-find over the matches in ``order``; a union whose two tracks share a keyframe is refused.
    Each track keeps its members as a linked list (``head``, ``following``, ``tail``) so the check
    walks both tracks once."""
    n = feature_keyframe.size
    parent = np.arange(n)
    head = np.arange(n)
    tail = np.arange(n)
    following = np.full(n, -1, np.int64)
    size = np.ones(n, np.int64)
    stamp = np.full(num_keyframes, -1, np.int64)
    for m in order:
        a, b = _root(parent, rows[m]), _root(parent, cols[m])
        if a == b:
            continue
        if size[a] > size[b]:
            a, b = b, a
        member = head[a]
        while member >= 0:
            stamp[feature_keyframe[member]] = m
            member = following[member]
        member, clash = head[b], False
        while member >= 0 and not clash:
            clash = stamp[feature_keyframe[member]] == m
            member = following[member]
        if clash:
            continue
        parent[a] = b
        following[tail[b]] = head[a]
        tail[b] = tail[a]
        size[b] += size[a]
    label = np.empty(n, np.int64)
    for i in range(n):
        label[i] = _root(parent, i)
    return label
