"""Loop closure on synthetic keyframes (test_loop_world): revisits, twin rooms as the false-loop
trap, bad input, save/kill/load/relocalise, the options tree."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mp_slam_ros.backend.keyframe_store import MANIFEST
from mp_slam_ros.config import flatten, load_yaml, with_updates
from mp_slam_ros.errors import ConfigError, FileFormatError
from mp_slam_ros.geometry.lie import se3_exp, se3_inverse
from mp_slam_ros.pipelines.loop_closure import LoopClosure
from mp_slam_ros.pipelines.loop_closure_config import LoopClosureConfig
from mp_slam_ros.pipelines.loop_closure_input import edge_information

sys.path.insert(0, str(Path(__file__).parent))
from test_loop_world import circle_run, config, drifting_odometry, make_world, position_errors, run  # noqa: E402

def test_revisits_close_loops_and_reduce_drift() -> None:
    world = make_world(1, [np.zeros(3)])
    truth, stamps, ids = circle_run(world, np.zeros(3), laps=1.6)
    odometry = drifting_odometry(truth, world.rng)
    # this world's keypoint and depth errors are independent per point: 1-degree error cells
    lc = LoopClosure(config(**{"loop.error_cell_deg": 1.0}))
    results = run(lc, world, truth, stamps, ids, odometry)
    assert lc.counts["accepted"] >= 5 and lc.counts["solves"] >= 1
    graph = lc.graph.snapshot().graph  # every accepted loop measures the true relative pose
    for a, b, T in zip(graph.edge_from[graph.is_loop], graph.edge_to[graph.is_loop], graph.T_from_to[graph.is_loop]):
        assert np.linalg.norm(T[:3, 3] - (se3_inverse(truth[a]) @ truth[b])[:3, 3]) < 0.05
    _, _, T_map_cam = lc.poses()
    before, after = position_errors(np.array(odometry), truth), position_errors(T_map_cam, truth)
    assert after.max() < 0.6 * before.max()  # the stretch after the last loop keeps its drift
    assert np.allclose(lc.T_map_odom, T_map_cam[-1] @ se3_inverse(odometry[-1]))
    assert all(r.summary.converged for r in results if r.solved)


def test_keyframes_near_the_query_in_the_map_are_verified_when_appearance_proposes_none() -> None:
    world = make_world(1, [np.zeros(3)])
    truth, stamps, ids = circle_run(world, np.zeros(3), laps=1.6)
    odometry = drifting_odometry(truth, world.rng)
    blind = {"places.min_score": 1.0, "loop.error_cell_deg": 1.0}  # place recognition proposes nothing
    without = LoopClosure(config(**blind, **{"loop.proximity_candidates": 0}))
    run(without, world, truth, stamps, ids, odometry)
    assert without.counts["candidates"] == 0 and without.counts["accepted"] == 0
    lc = LoopClosure(config(**blind))
    results = run(lc, world, truth, stamps, ids, odometry)
    assert lc.counts["proximity_candidates"] > 0 and lc.counts["accepted"] >= 5
    assert all(c.proximity and np.isnan(c.score) for r in results for c in r.candidates)
    graph = lc.graph.snapshot().graph
    for a, b, T in zip(graph.edge_from[graph.is_loop], graph.edge_to[graph.is_loop], graph.T_from_to[graph.is_loop]):
        assert np.linalg.norm(T[:3, 3] - (se3_inverse(truth[a]) @ truth[b])[:3, 3]) < 0.05
        assert stamps[b] - stamps[a] >= 10.0  # loop.min_age_s


def test_twin_rooms_never_accept_a_false_loop() -> None:
    offset = np.array([15.0, 0.0, 0.0])
    world = make_world(2, [np.zeros(3), offset])
    truth_a, stamps_a, ids_a = circle_run(world, np.zeros(3), laps=1.0)
    truth_b, stamps_b, ids_b = circle_run(world, offset, laps=1.0, start_id=36, start_s=60.0)
    truth_c, stamps_c, ids_c = circle_run(world, np.zeros(3), laps=0.5, start_id=72, start_s=120.0)
    truth = truth_a + truth_b + truth_c
    # the corridor between the rooms is walked without features: bridge with odometry-only keyframes
    odometry = drifting_odometry(truth, world.rng)
    lc = LoopClosure(config())
    results = run(lc, world, truth, stamps_a + stamps_b + stamps_c, ids_a + ids_b + ids_c, odometry)
    room = np.array([0] * 36 + [1] * 36 + [0] * 18)
    verified_false = accepted_false = accepted_true = 0
    for result in results:
        for candidate in result.candidates:
            false = room[result.node] != room[candidate.match_node]
            verified_false += candidate.verified and false
            accepted_false += candidate.accepted and false
            accepted_true += candidate.accepted and not false
    assert verified_false > 0  # the trap works: look-alike rooms pass geometric verification
    assert accepted_false == 0
    assert accepted_true > 0
    graph = lc.graph.snapshot().graph
    loops = graph.is_loop
    assert np.all(room[graph.edge_from[loops]] == room[graph.edge_to[loops]])


def test_bad_input_is_warned_counted_and_survived() -> None:
    world = make_world(3, [np.zeros(3)])
    truth, stamps, ids = circle_run(world, np.zeros(3), laps=0.5)
    odometry = drifting_odometry(truth, world.rng)
    lc = LoopClosure(config())
    keyframes = [world.keyframe(i, s, T, O) for i, s, T, O in zip(ids, stamps, truth, odometry)]
    for kf in keyframes[:5]:
        assert lc.add_keyframe(kf).warnings == []
    assert lc.add_keyframe(keyframes[4]).node is None  # duplicate
    assert lc.add_keyframe(keyframes[2]).node is None  # out of order
    nan_pose = dataclasses.replace(keyframes[5], pose_odom_cam=np.full(7, np.nan))
    assert lc.add_keyframe(nan_pose).node is None
    nan_cov = dataclasses.replace(keyframes[5], covariance_odom_cam=np.full((6, 6), np.nan))
    assert lc.add_keyframe(nan_cov).node is not None
    empty = dataclasses.replace(keyframes[6], descriptors=np.zeros((0, 32), np.uint8))
    result = lc.add_keyframe(empty)
    assert result.node is not None and "not used for place recognition" in result.warnings[0]
    restarted = dataclasses.replace(keyframes[7], keyframe_id=0)
    assert "VO restart" in lc.add_keyframe(restarted).warnings[0]
    for kf in keyframes[8:]:
        lc.add_keyframe(dataclasses.replace(kf, keyframe_id=kf.keyframe_id - 7))
    counts = lc.counts
    assert (counts["duplicates"], counts["out_of_order"], counts["bad_pose"], counts["bad_covariance"], counts["no_features"], counts["restarts"]) == (1, 1, 1, 1, 1, 1)
    assert counts["keyframes"] == len(keyframes)  # each added once: the dropped repeats and the NaN pose were copies
    assert np.all(np.isfinite(lc.poses()[2]))


def test_save_kill_load_relocalise(tmp_path) -> None:
    world = make_world(4, [np.zeros(3)])
    truth, stamps, ids = circle_run(world, np.zeros(3), laps=1.3)
    lc = LoopClosure(config())
    run(lc, world, truth, stamps, ids, drifting_odometry(truth, world.rng))
    manifest = lc.save_map(tmp_path / "map")
    first = json.loads(manifest.read_text())
    # a save killed after writing its data files leaves the previous map readable
    (tmp_path / "map" / "graph-deadbeef.g2o").write_text("garbage")
    assert LoopClosure(config()).load_map(tmp_path / "map") == len(lc.store)
    assert json.loads(manifest.read_text()) == first
    # a new session with its own odometry frame (shifted and turned) relocalises on the map
    fresh = LoopClosure(config())
    fresh.load_map(tmp_path / "map")
    assert not fresh.relocalized
    T_odom_world = se3_exp(np.array([[2.0, -1.0, 0.0, 0.0, 0.0, 0.7]]))[0]
    truth2, stamps2, ids2 = circle_run(world, np.zeros(3), laps=0.3, start_s=500.0)
    results = run(fresh, world, truth2, stamps2, ids2, [T_odom_world @ T for T in truth2])
    assert fresh.relocalized and sum(r.relocalized for r in results) == 1
    _, _, T_map_cam = lc.poses()
    T_map_world = T_map_cam[0] @ se3_inverse(truth[0])  # the map's frame vs the world
    expected = T_map_world @ se3_inverse(T_odom_world)
    assert np.allclose(fresh.T_map_odom[:3, 3], expected[:3, 3], atol=0.15)
    fresh.save_map(tmp_path / "map")
    assert len(list((tmp_path / "map").glob("keyframes-*.npz"))) == 1


def test_load_map_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(FileFormatError, match="map.json"):
        LoopClosure().load_map(tmp_path)
    (tmp_path / MANIFEST).write_text("{}")
    with pytest.raises(FileFormatError, match="version"):
        LoopClosure().load_map(tmp_path)


def test_config_walker_and_yaml(tmp_path) -> None:
    keys = flatten(LoopClosureConfig())
    assert keys["loop.min_age_s"] == 20.0 and keys["pgo.precision"] == "mixed"
    with pytest.raises(ConfigError, match="pgo.solver"):
        with_updates(LoopClosureConfig(), {"pgo.solver": "qr"})
    with pytest.raises(ConfigError, match="places.candidates"):
        with_updates(LoopClosureConfig(), {"places.candidates": 0})
    path = tmp_path / "lc.yaml"
    path.write_text("loop_closure_node:\n  ros__parameters:\n    pgo:\n      precision: fp64\n    loop.min_age_s: 5\n")
    loaded = load_yaml(path, LoopClosureConfig)
    assert loaded.pgo.precision.value == "fp64" and loaded.loop.min_age_s == 5.0


def test_a_vo_restart_loosens_the_odometry_check_across_it() -> None:
    """A 25 deg jump of the odometry at keyframe 20: loops across it contradict the odometry.
    Reported as a VO restart (ids start over) the chain is uncertain there and the loops are
    accepted; unreported, the odometry check rejects them."""
    world = make_world(5, [np.zeros(3)])
    truth, stamps, ids = circle_run(world, np.zeros(3), laps=1.5)
    odometry = drifting_odometry(truth, world.rng)
    jump = se3_exp(np.array([[0.0, 0.0, 0.0, 0.0, np.radians(25.0), 0.0]]))[0]
    odometry = odometry[:20] + [odometry[19] @ jump @ se3_inverse(odometry[19]) @ T for T in odometry[20:]]
    accepted = {}
    for restart in (False, True):
        lc = LoopClosure(config())
        restarted_ids = [i if i < 20 or not restart else i - 20 for i in ids]
        run(lc, world, truth, stamps, restarted_ids, odometry)
        accepted[restart] = lc.counts["accepted"]
        assert lc.counts["restarts"] == int(restart)
    assert accepted[True] >= 5 and accepted[False] < accepted[True]


def test_loops_place_the_segment_after_a_restart_whose_prediction_is_far_off() -> None:
    """Tracking lost during a turn: the odometry restarts 150 deg and 1.5 m away from the truth.
    The restart edge (``odometry.restart_*``) is nearly uninformative, so the loops across it are
    accepted and the optimised keyframes after it land where they are."""
    world = make_world(5, [np.zeros(3)])
    truth, stamps, ids = circle_run(world, np.zeros(3), laps=1.5)
    odometry = drifting_odometry(truth, world.rng)
    jump = se3_exp(np.array([[1.5, 0.0, 0.0, 0.0, np.radians(150.0), 0.0]]))[0]
    odometry = odometry[:20] + [odometry[19] @ jump @ se3_inverse(odometry[19]) @ T for T in odometry[20:]]
    lc = LoopClosure(config())
    run(lc, world, truth, stamps, [i if i < 20 else i - 20 for i in ids], odometry)
    assert lc.counts["restarts"] == 1 and lc.counts["accepted"] >= 5
    assert position_errors(lc.poses()[2], truth).max() < 0.1


def test_an_edge_after_lost_tracking_is_bounded_by_the_fastest_motion() -> None:
    """The VO reports lost tracking with a covariance of metres: the edge's translation sigma is
    bounded by ``odometry.gap_sigma_m + odometry.max_speed_mps * gap`` (the camera cannot have
    moved farther), a rotation sigma below 180 deg and certain edges untouched."""
    odometry = LoopClosureConfig().odometry
    lost = np.diag([100.0] * 3 + [0.5**2] * 3)
    lost[0, 3] = lost[3, 0] = 5.0  # correlated translation and rotation
    covariance = np.linalg.inv(edge_information(lost, odometry, gap_s=1.0))
    bound = odometry.gap_sigma_m + odometry.max_speed_mps * 1.0
    assert np.isclose(np.sqrt(np.linalg.eigvalsh(covariance[:3, :3])[-1]), bound, rtol=1e-6)
    assert np.allclose(covariance[3:, 3:], lost[3:, 3:] + np.radians(odometry.min_sigma_deg) ** 2 * np.eye(3))
    assert np.linalg.eigvalsh(covariance)[0] > 0.0
    certain = np.diag([1e-4] * 3 + [1e-6] * 3)
    floor = np.diag([odometry.min_sigma_m**2] * 3 + [np.radians(odometry.min_sigma_deg) ** 2] * 3)
    assert np.allclose(np.linalg.inv(edge_information(certain, odometry, gap_s=1.0)), certain + floor)


def test_a_new_map_after_lost_tracking_gets_the_restart_rotation_and_the_motion_bound() -> None:
    """The first keyframe of a map the VO starts after lost tracking carries its lost covariance
    (``vo.tracking.lost_variance`` 1e4 m^2, rad^2): the edge to it is what ``mp-slam slam``
    gave such a keyframe before (rotation sigma 180 deg, translation bounded by the gap), so the
    node and the offline runner, which both pass the VO's keyframes through, agree."""
    odometry = LoopClosureConfig().odometry
    covariance = np.linalg.inv(edge_information(np.eye(6) * 1e4, odometry, gap_s=3.0))
    sigmas = np.sqrt(np.diag(covariance))
    assert np.allclose(sigmas[:3], odometry.gap_sigma_m + odometry.max_speed_mps * 3.0)
    assert np.allclose(sigmas[3:], np.radians(odometry.restart_sigma_deg))
