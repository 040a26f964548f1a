"""VisualOdometry on a short generated household sequence: accuracy, determinism, bad frames, CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mp_slam_ros.cli.main import main
from mp_slam_ros.config import with_updates
from mp_slam_ros.errors import FrameError
from mp_slam_ros.io.bags import BagError
from mp_slam_ros.eval.metrics import evaluate
from mp_slam_ros.geometry.lie import se3_inverse
from mp_slam_ros.io.tum import read_tum
from mp_slam_ros.pipelines import vo as vo_module
from mp_slam_ros.pipelines.vo import Frame, TrackingStatus, VisualOdometry
from mp_slam_ros.pipelines.vo_bag import BagFrames
from mp_slam_ros.pipelines.vo_config import SensorMode, VOConfig
from mp_slam_ros.pipelines.vo_run import run_vo
from mp_slam_ros.pipelines.window import WindowSolution
from mp_slam_ros.sim.config import SequenceConfig
from mp_slam_ros.sim.sequence import generate_sequence

#: ATE bound on the 4 s sequence (about 1.5 m of travel); the VO reaches ~1-2 cm
ATE_BOUND_M = 0.05


@pytest.fixture(scope="module")
def sequence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4 s, 320x240 RGB-D + stereo household sequence (generated once per module)."""
    base = SequenceConfig()
    cfg = replace(base, seed=3, duration_s=4.0, camera=replace(base.camera, image_scale=0.5, stereo_baseline_m=0.1))
    out = tmp_path_factory.mktemp("vo") / "seq"
    generate_sequence(cfg, out)
    return out


def synchronous(mode: str) -> VOConfig:
    return with_updates(VOConfig(), {"mode": mode, "ba.synchronous": True})


@pytest.mark.parametrize("mode", ["rgbd", "stereo"])
def test_tracks_every_frame_within_the_ate_bound(sequence: Path, mode: str) -> None:
    run = run_vo(sequence / "bag", synchronous(mode))
    assert run.mode == mode
    assert TrackingStatus.LOST not in run.statuses
    assert run.keyframes >= 3 and len(run.ba_s) >= 2
    evaluation = evaluate(read_tum(sequence / "groundtruth.tum"), run.trajectory(), mode)
    assert evaluation.ate_m.rmse < ATE_BOUND_M


def test_synchronous_runs_are_deterministic(sequence: Path) -> None:
    first = run_vo(sequence / "bag", synchronous("rgbd"))
    second = run_vo(sequence / "bag", synchronous("rgbd"))
    np.testing.assert_array_equal(np.array(first.T_odom_base), np.array(second.T_odom_base))


def frames(sequence: Path, count: int, wheel_topic: str | None = None) -> list[Frame]:
    with BagFrames(sequence / "bag", SensorMode.RGBD, wheel_topic=wheel_topic) as bag:
        return [frame for _, frame in zip(range(count), bag)]


def test_keyframes_carry_what_loop_closure_needs(sequence: Path) -> None:
    odometry = VisualOdometry(synchronous("rgbd"))
    keyframes = [r.keyframe for r in map(odometry.track, frames(sequence, 30)) if r.keyframe is not None]
    assert keyframes and keyframes[0].keyframe_id == 0
    kf = keyframes[-1]
    n = len(kf.keypoints_px)
    assert n > 50 and kf.descriptors.shape == (n, 32) and kf.points_cam.shape == (n, 3)
    assert np.isfinite(kf.points_cam).all(axis=1).mean() > 0.5
    assert abs(np.linalg.norm(kf.pose_odom_cam[3:]) - 1.0) < 1e-9
    assert odometry.landmarks_odom().shape[1] == 3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda f: replace(f, camera=replace(f.camera, camera_matrix=np.zeros((3, 3)))), "frame.camera.camera_matrix"),
        (lambda f: replace(f, image=f.image[:-2]), "frame.image"),
        (lambda f: replace(f, image=f.image.astype(np.float32)), "frame.image"),
        (lambda f: replace(f, depth_m=None), "frame.depth_m"),
        (lambda f: replace(f, depth_m=f.depth_m[:, :-1]), "frame.depth_m"),
    ],
)
def test_bad_frames_raise_a_typed_error(sequence: Path, change, field: str) -> None:
    frame = frames(sequence, 1)[0]
    with pytest.raises(FrameError) as caught:
        VisualOdometry(synchronous("rgbd")).track(change(frame))
    assert caught.value.field == field


def test_stereo_needs_a_right_image_and_a_baseline(sequence: Path) -> None:
    frame = frames(sequence, 1)[0]
    odometry = VisualOdometry(synchronous("stereo"))
    with pytest.raises(FrameError, match="right image"):
        odometry.track(frame)
    with pytest.raises(FrameError, match="baseline"):
        odometry.track(replace(frame, right_image=frame.image))


def test_time_going_backwards_is_refused(sequence: Path) -> None:
    first, second = frames(sequence, 2)
    odometry = VisualOdometry(synchronous("rgbd"))
    odometry.track(second)
    with pytest.raises(FrameError, match="reset"):
        odometry.track(first)
    odometry.reset()
    assert odometry.track(first).status is TrackingStatus.RESET
    odometry.reset()
    assert odometry.track(replace(second, image=np.full_like(second.image, 128))).status is TrackingStatus.LOST  # no map after a reset


def test_a_new_maps_first_keyframe_is_not_tied_to_the_old_map(sequence: Path) -> None:
    """After reset() (e.g. ~/reset_to_pose: the pose may jump) the new map's first keyframe
    carries the lost covariance, so loop closure's odometry edge to it is loose; only the very
    first keyframe has the origin's."""
    first, second = frames(sequence, 2)
    odometry = VisualOdometry(synchronous("rgbd"))
    assert np.abs(odometry.track(first).keyframe.covariance_odom_cam).max() < 1e-9
    odometry.reset(np.eye(4))
    result = odometry.track(second)
    assert result.status is TrackingStatus.RESET and result.keyframe is not None
    lost = VOConfig().tracking.lost_variance
    np.testing.assert_allclose(result.keyframe.covariance_odom_cam, np.eye(6) * lost, rtol=1e-9, atol=1e-9 * lost)
    assert np.abs(result.covariance).max() < 1e-9  # the odometry itself restarts exactly at the given pose


def test_no_depth_and_textureless_frames_are_lost_not_fatal(sequence: Path) -> None:
    good = frames(sequence, 6)
    odometry = VisualOdometry(synchronous("rgbd"))
    no_depth = odometry.track(replace(good[0], depth_m=np.full_like(good[0].depth_m, np.nan)))
    assert no_depth.status is TrackingStatus.INITIALIZING and no_depth.keyframe is None
    assert odometry.track(good[1]).status is TrackingStatus.INITIALIZING  # the map starts here
    assert odometry.track(good[2]).status is TrackingStatus.OK
    blank = replace(good[3], image=np.full_like(good[3].image, 128))
    lost = odometry.track(blank)
    assert lost.status is TrackingStatus.LOST and lost.covariance[0, 0] >= 1e3
    after = [odometry.track(frame).status for frame in good[4:]]
    assert after[-1] is TrackingStatus.OK
    assert all(status is not TrackingStatus.LOST for status in after[1:])


def test_a_short_loss_keeps_the_motion(sequence: Path) -> None:
    """Frames lost in a row are reported along the last motion (inflated covariance), not frozen."""
    good = frames(sequence, 12)
    odometry = VisualOdometry(synchronous("rgbd"))
    tracked = [odometry.track(frame) for frame in good[:10]]
    assert tracked[-1].status is TrackingStatus.OK
    blank = [replace(frame, image=np.full_like(frame.image, 128)) for frame in good[10:]]
    lost = [odometry.track(frame) for frame in blank]
    assert all(result.status is TrackingStatus.LOST for result in lost)
    step = np.linalg.norm(tracked[-1].T_odom_base[:3, 3] - tracked[-2].T_odom_base[:3, 3])
    lost_step = np.linalg.norm(lost[1].T_odom_base[:3, 3] - lost[0].T_odom_base[:3, 3])
    assert step > 1e-3 and lost_step == pytest.approx(step, rel=1e-6)


def test_an_impossibly_fast_pose_is_a_tracking_failure(sequence: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tracked pose the camera cannot have reached at ``tracking.max_speed_mps`` is not taken:
    LOST at the prediction, no keyframe, the map kept (no new map while it is in sight); the
    same frames track with the default bound. (No slack: these 0.4 s cover ~10 cm.)"""
    monkeypatch.setattr(vo_module, "MOTION_BOUND_SLACK_M", 0.0)
    good = frames(sequence, 42)[30:]  # the robot is under way
    default = VisualOdometry(synchronous("rgbd"))
    assert all(default.track(frame).status is not TrackingStatus.LOST for frame in good)
    slow = with_updates(synchronous("rgbd"), {"tracking.max_speed_mps": 0.01})  # the robot drives ~0.3 m/s
    odometry = VisualOdometry(slow)
    start = odometry.track(good[0])
    results = [odometry.track(frame) for frame in good[1:]]
    assert start.status is TrackingStatus.INITIALIZING
    assert all(r.status is TrackingStatus.LOST and r.keyframe is None for r in results)
    for r in results:  # at the prediction: no tracked motion, so the pose stands
        np.testing.assert_allclose(r.T_odom_base, start.T_odom_base, atol=1e-12)


def test_a_window_solution_moves_the_motion_bounds_reference(sequence: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A BA solve that shifts the window (10 cm here) shifts the next tracked pose with it; the
    motion bounds measure that pose from the last tracked one moved alike, not as a 3 m/s jump
    (without the slack, which would also take a 10-cm jump)."""
    monkeypatch.setattr(vo_module, "MOTION_BOUND_SLACK_M", 0.0)
    good = frames(sequence, 42)[30:]
    odometry = VisualOdometry(with_updates(synchronous("rgbd"), {"keyframes.max_interval_s": 0.1}))
    summaries = [summary for frame in good[:-1] for summary in odometry.track(frame).ba_summaries]
    window = odometry._window
    shift = np.eye(4)
    shift[:3, 3] = [0.1, 0.0, 0.0]
    ids = window.observed_ids()
    before = np.stack([kf.T_odom_cam for kf in window.keyframes])
    odometry._apply(WindowSolution(
        window.generation, np.array([kf.keyframe_id for kf in window.keyframes]), before, shift @ before,
        ids, window.positions(ids) + shift[:3, 3], np.zeros(0, np.int64), np.zeros(0, np.int64), summaries[-1],
    ))
    assert odometry.track(good[-1]).status is TrackingStatus.OK


def test_a_frame_tracked_on_few_points_is_a_keyframe_once_the_view_has_texture(sequence: Path) -> None:
    """Tracks thinned below ``tracking.min_inliers`` (a plain box filled the view) in front of a
    textured view: the frame becomes a keyframe and tracking goes on with fresh features; before,
    keyframes waited for ``min_inliers`` tracks and the last few died (seed 18: a lost frame)."""
    good = frames(sequence, 6)
    odometry = VisualOdometry(synchronous("rgbd"))
    for frame in good[:4]:
        odometry.track(frame)
    few = 8  # within the motion prior's gate (>= 6 inliers), below min_inliers (10)
    odometry._track_ids, odometry._track_uv = odometry._track_ids[:few], odometry._track_uv[:few]
    odometry._track_angle, odometry._track_uv_keyframe = odometry._track_angle[:few], odometry._track_uv_keyframe[:few]
    result = odometry.track(good[4])
    assert result.status is TrackingStatus.OK and result.keyframe is not None
    assert odometry.track(good[5]).num_tracked > 100


def test_a_keyframe_keeps_no_depth_that_disagrees_with_the_map(sequence: Path) -> None:
    """A tracked landmark's depth in a new keyframe must agree with the map (as in tracking): one
    from a nearer surface once dragged a window BA 16 cm sideways. Depths 50% too far: the
    keyframe observes the old landmarks by their pixels only; its new landmarks keep theirs."""
    good = frames(sequence, 8)
    every_frame = with_updates(synchronous("rgbd"), {"keyframes.max_interval_s": 0.01})
    u_right_finite = []
    for scale in (1.0, 1.5):
        odometry = VisualOdometry(every_frame)
        for frame in good[:6]:
            odometry.track(frame)
        assert odometry.track(replace(good[6], depth_m=good[6].depth_m * scale)).keyframe is not None
        keyframe = odometry._window.keyframes[-1]
        old = keyframe.landmark_ids < keyframe.new_landmarks[0]
        assert old.sum() > 50 and np.isfinite(keyframe.u_right[~old]).all()
        u_right_finite.append(np.isfinite(keyframe.u_right[old]).mean())
    assert u_right_finite[0] > 0.8 and u_right_finite[1] < 0.05


def test_the_bags_wheel_odometry_is_each_frames_motion_prior(sequence: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wheel = read_tum(sequence / "odometry.tum")  # the generator's wheel odometry at the image stamps
    with BagFrames(sequence / "bag", SensorMode.RGBD, wheel_topic="/odom") as bag:
        assert bag.wheel_samples >= 190  # /odom at 50 Hz over the 4 s
        frames_ = list(bag)
    inside = [f for f in frames_ if wheel.timestamps_s[0] <= f.stamp_ns * 1e-9 <= wheel.timestamps_s[-1]]
    assert len(inside) >= len(frames_) - 1 and all(f.T_odom_base_wheel is not None for f in inside)
    for frame in inside[::20]:  # interpolated between the 50 Hz samples around the image stamp
        nearest = np.argmin(np.abs(wheel.timestamps_s - frame.stamp_ns * 1e-9))
        assert np.linalg.norm(frame.T_odom_base_wheel[:3, 3] - wheel.positions_m[nearest]) < 2e-3
    for topic, reason in (("/wheel", "no such topic"), ("/camera/color/camera_info", "CameraInfo")):
        with pytest.raises(BagError, match=reason):
            BagFrames(sequence / "bag", wheel_topic=topic).__enter__()
    with BagFrames(sequence / "bag", "stereo") as stereo:  # the mode by name, as in a config file
        assert stereo.topics.mode is SensorMode.STEREO
    with pytest.raises(ValueError, match="'mono'"):
        BagFrames(sequence / "bag", "mono")
    tum = tmp_path / "vo.tum"
    assert main(["vo", str(sequence / "bag"), "--tum", str(tum), "--json", "--synchronous", "--wheel-odom", "/odom"]) == 0
    assert json.loads(capsys.readouterr().out)["lost"] == 0


@pytest.mark.parametrize("wheel", [True, False])
def test_a_textureless_stretch_is_bridged_on_the_same_map(sequence: Path, wheel: bool) -> None:
    """Eight plain frames (a featureless wall, ~0.5 s): LOST with an inflated covariance at the
    motion prior's pose, no keyframe and no new map; tracking resumes on the map after them."""
    good = frames(sequence, 60, "/odom" if wheel else None)
    gap = range(40, 48)
    plain = [replace(f, image=np.full_like(f.image, 128)) if i in gap else f for i, f in enumerate(good)]
    with BagFrames(sequence / "bag", SensorMode.RGBD) as bag:
        odometry = VisualOdometry(synchronous("rgbd"), bag.T_base_cam)  # base_link poses, as the ground truth
    results = [odometry.track(frame) for frame in plain]
    statuses = [r.status for r in results]
    assert all(s is TrackingStatus.OK for s in statuses[1:40])
    assert all(statuses[i] is TrackingStatus.LOST and results[i].covariance[0, 0] >= 1e3 for i in gap)
    assert all(results[i].keyframe is None for i in gap)
    assert all(s is TrackingStatus.OK for s in statuses[48:])  # same map: no RESET, no re-initialisation
    ids = [r.keyframe.keyframe_id for r in results if r.keyframe is not None]
    assert ids == list(range(len(ids)))  # one map: the keyframe ids run on
    truth = read_tum(sequence / "groundtruth.tum").matrices()[: len(results)]
    T_before_after = se3_inverse(results[39].T_odom_base) @ results[-1].T_odom_base
    T_true = se3_inverse(truth[39]) @ truth[-1]
    assert np.linalg.norm(T_before_after[:3, 3] - T_true[:3, 3]) < 0.03  # 20 frames of travel across the gap


def test_cli_writes_tum_and_json_summary(sequence: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tum = tmp_path / "vo.tum"
    assert main(["vo", str(sequence / "bag"), "--tum", str(tum), "--json", "--synchronous", "--set", "ba.window_size=20"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == 120 and summary["lost"] == 0 and summary["keyframes"] >= 3
    assert summary["real_time_factor"] > 0 and summary["tracking_ms"]["p95"] > 0
    assert summary["ba_time_limited"] == 0
    assert len(read_tum(tum)) == 120
    budget = ["--set", "ba.window_size=20", "--set", "ba.max_solve_time_ms=1e-6"]  # a solve stops after its first iteration
    assert main(["vo", str(sequence / "bag"), "--tum", str(tum), "--json", "--synchronous", *budget]) == 0
    limited = json.loads(capsys.readouterr().out)
    assert 0 < limited["ba_time_limited"] <= limited["ba_solves"] and limited["lost"] == 0
    assert main(["vo", str(sequence / "bag"), "--tum", str(tum), "--set", "ba.window_size=1"]) == 1
    assert "ba.window_size" in capsys.readouterr().err


def test_cli_reads_the_vo_options_of_a_ros_parameter_file(sequence: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preset = Path(__file__).resolve().parents[2] / "config" / "household_rgbd.yaml"
    tum = tmp_path / "vo.tum"
    assert main(["vo", str(sequence / "bag"), "--tum", str(tum), "--json", "--synchronous", "--params", str(preset)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["lost"] == 0
    assert "vo_node's own parameters do not apply" in captured.err and "publish_tf" in captured.err
    bad = tmp_path / "bad.yaml"
    bad.write_text("vo_node:\n  ros__parameters:\n    ba:\n      window_size: 1\n")
    assert main(["vo", str(sequence / "bag"), "--tum", str(tum), "--params", str(bad)]) == 1
    assert "ba.window_size" in capsys.readouterr().err
