"""Feature tracks from pairwise matches (backend.tracks): best match first, never two keypoints of
one keyframe in a track."""

from __future__ import annotations

import numpy as np

from mp_slam_ros.backend.tracks import join_tracks


def _tracks(label: np.ndarray) -> list[list[int]]:
    """Features grouped by label, each group sorted, groups sorted."""
    return sorted(sorted(np.flatnonzero(label == value).tolist()) for value in np.unique(label))


def test_a_chain_of_matches_over_keyframes_is_one_track() -> None:
    label = join_tracks(np.array([0, 1, 2, 3]), np.array([0, 1, 2]), np.array([1, 2, 3]), np.array([5, 5, 5]))
    assert _tracks(label) == [[0, 1, 2, 3]]


def test_the_better_of_two_conflicting_matches_wins() -> None:
    keyframe = np.array([0, 0, 1])  # features 0 and 1 both in keyframe 0, both matched to feature 2
    rows, cols = np.array([0, 1]), np.array([2, 2])
    assert _tracks(join_tracks(keyframe, rows, cols, np.array([5, 10]))) == [[0, 2], [1]]
    assert _tracks(join_tracks(keyframe, rows, cols, np.array([10, 5]))) == [[0], [1, 2]]


def test_two_tracks_that_share_a_keyframe_are_not_joined() -> None:
    keyframe = np.array([0, 1, 0, 2])  # tracks {0, 1} and {2, 3} both hold a keypoint of keyframe 0
    rows, cols = np.array([0, 2, 1]), np.array([1, 3, 3])
    assert _tracks(join_tracks(keyframe, rows, cols, np.array([1, 1, 2]))) == [[0, 1], [2, 3]]


def test_unmatched_features_are_their_own_tracks() -> None:
    label = join_tracks(np.array([0, 1, 2]), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert _tracks(label) == [[0], [1], [2]]
