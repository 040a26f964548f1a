"""Global bundle adjustment of the loop closure's keyframes (backend.global_ba) on the synthetic
rooms of test_loop_world: it refines what the pose graph left, and its association never joins
two keypoints of one keyframe."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from mp_slam_ros.backend.global_ba import GlobalBAConfig, _landmarks, covisible_pairs, refine_keyframes
from mp_slam_ros.geometry.lie import se3_inverse
from mp_slam_ros.pipelines.loop_closure import LoopClosure

sys.path.insert(0, str(Path(__file__).parent))
from test_loop_world import circle_run, config, drifting_odometry, make_world, position_errors, run  # noqa: E402


def _loop_closed_run(seed: int = 1) -> tuple[LoopClosure, list[np.ndarray], list[np.ndarray]]:
    world = make_world(seed, [np.zeros(3)])
    truth, stamps, ids = circle_run(world, np.zeros(3), laps=1.6)
    odometry = drifting_odometry(truth, world.rng)
    lc = LoopClosure(config(**{"loop.error_cell_deg": 1.0}))
    run(lc, world, truth, stamps, ids, odometry)
    assert lc.counts["accepted"] >= 5
    return lc, truth, odometry


def test_global_ba_removes_most_of_what_the_pose_graph_left() -> None:
    lc, truth, odometry = _loop_closed_run()
    _, _, T_pgo = lc.poses()
    result = lc.refine_globally()
    assert result is not None and result.summary.converged
    assert result.refined == len(truth) and result.fixed == 1
    assert result.landmarks > 300 and result.observations > 4 * result.landmarks
    assert np.allclose(result.T_map_cam_before, T_pgo)
    _, _, T_ba = lc.poses()
    assert np.allclose(T_ba, result.T_map_cam)  # applied to the graph
    assert np.allclose(T_ba[0], T_pgo[0])  # the gauge keyframe stays
    before, after = position_errors(T_pgo, truth), position_errors(T_ba, truth)
    assert np.sqrt(np.mean(after**2)) < 0.5 * np.sqrt(np.mean(before**2))
    assert np.allclose(lc.T_map_odom, T_ba[-1] @ se3_inverse(odometry[-1]))
    assert lc.counts["global_ba"] == 1


def test_mixed_precision_global_ba_matches_fp64() -> None:
    lc, truth, _ = _loop_closed_run()
    keyframes = lc.store.keyframes
    graph = lc.graph.snapshot().graph
    mixed = refine_keyframes(keyframes, graph, GlobalBAConfig())
    fp64 = refine_keyframes(keyframes, graph, GlobalBAConfig(precision="fp64", solver="schur"))  # type: ignore[arg-type]
    assert mixed is not None and fp64 is not None
    assert mixed.summary.converged and fp64.summary.converged
    assert abs(mixed.summary.final_cost - fp64.summary.final_cost) <= 1e-3 * fp64.summary.final_cost
    assert np.abs(mixed.T_map_cam[:, :3, 3] - fp64.T_map_cam[:, :3, 3]).max() < 1e-3


def test_landmarks_left_erring_are_counted_beside_the_cost_convergence() -> None:
    """The summary's convergence is the cost's; landmarks that an observation still disagrees with
    beyond ``outlier_threshold_px`` after the last pass are counted (none on clean data; with a
    threshold under the keypoint noise, nearly all)."""
    lc, _, _ = _loop_closed_run()
    keyframes, graph = lc.store.keyframes, lc.graph.snapshot().graph
    clean = refine_keyframes(keyframes, graph, GlobalBAConfig())
    strict = refine_keyframes(keyframes, graph, GlobalBAConfig(outlier_threshold_px=0.01, min_observations=1))
    assert clean is not None and strict is not None
    assert clean.unsettled_landmarks == 0 and clean.as_dict()["unsettled_landmarks"] == 0
    assert strict.unsettled_landmarks > 0.5 * strict.landmarks


def test_nothing_to_adjust_returns_none_and_changes_nothing() -> None:
    lc = LoopClosure(config())
    assert lc.refine_globally() is None
    world = make_world(2, [np.zeros(3)])
    truth, stamps, ids = circle_run(world, np.zeros(3), laps=0.1)
    run(lc, world, truth[:1], stamps[:1], ids[:1], truth[:1])
    assert lc.refine_globally() is None  # one keyframe


def test_a_match_that_would_give_a_landmark_two_keypoints_of_one_keyframe_is_refused() -> None:
    lc, _, _ = _loop_closed_run()
    keyframes = lc.store.keyframes[:3]
    _, _, T = lc.poses()
    offsets = np.concatenate([[0], np.cumsum([len(k.keypoints_px) for k in keyframes])])
    # features: 0 ~ next keyframe's 0 ~ last keyframe's 0, keyframe 0's 1 ~ keyframe 1's 0 (wrong,
    # a worse descriptor distance), and 5 ~ keyframe 1's 5
    rows = np.array([0, offsets[1], 1, 5])
    cols = np.array([offsets[1], offsets[2], offsets[1], offsets[1] + 5])
    landmarks = _landmarks(keyframes, T[:3], offsets, rows, cols, np.array([10, 12, 30, 8]))
    assert landmarks is not None
    assert len(landmarks.points_map) == 2  # the three-keyframe track kept, the wrong match refused
    tracks = sorted(sorted(landmarks.obs_keyframe[landmarks.obs_landmark == i].tolist()) for i in range(2))
    assert tracks == [[0, 1], [0, 1, 2]]


def test_pairs_follow_sessions_loops_and_covisibility() -> None:
    lc, truth, _ = _loop_closed_run()
    keyframes = lc.store.keyframes
    _, _, T = lc.poses()
    cfg = GlobalBAConfig(neighbours=2, covisible_max=0)
    pairs = set(covisible_pairs(keyframes, T, np.array([[3, 40]]), cfg))
    assert {(0, 1), (0, 2), (3, 40)} <= pairs and (0, 3) not in pairs
    keyframes[5].session = 1  # a new session: no neighbour pairs across it
    try:
        pairs = set(covisible_pairs(keyframes, T, np.zeros((0, 2)), cfg))
    finally:
        keyframes[5].session = 0
    assert (4, 5) not in pairs and (5, 6) not in pairs and (3, 5) not in pairs and (6, 7) in pairs
    near = set(covisible_pairs(keyframes, T, np.zeros((0, 2)), GlobalBAConfig(neighbours=1, covisible_max=3)))
    last = len(keyframes) - 1  # 1.6 laps of 36: the last keyframe sees what keyframe last - 36 saw
    assert any(a < last - 30 for a, b in near if b == last)


def test_keyframes_with_few_landmarks_move_with_the_previous_adjusted_one() -> None:
    lc, truth, _ = _loop_closed_run()
    keyframes = list(lc.store.keyframes)
    _, _, T = lc.poses()
    few = keyframes[10]
    keyframes[10] = type(few)(
        few.keyframe_id, few.stamp_ns, few.session, few.T_odom_cam, few.K,
        few.keypoints_px[:20], few.descriptors[:20], few.points_cam[:20],
    )
    result = refine_keyframes(keyframes, lc.graph.snapshot().graph, GlobalBAConfig(min_observations=30))
    assert result is not None and result.refined == len(keyframes) - 1
    expected = result.T_map_cam[9] @ se3_inverse(T[9]) @ T[10]
    assert np.allclose(result.T_map_cam[10], expected)
