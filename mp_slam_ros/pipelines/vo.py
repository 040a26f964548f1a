"""Visual odometry (RGB-D or stereo): ``VisualOdometry(config).track(frame) -> TrackResult``.

One frame goes through named steps (:meth:`VisualOdometry.track`, top to bottom): check the
frame, take finished window BAs, predict the pose (constant velocity or wheel odometry), track
the window's landmarks by KLT, estimate the pose by PnP RANSAC against them, then maybe make a
keyframe (new ORB features with depth become landmarks; the window BA is queued). A pose the
camera cannot have reached from the last tracked one (``tracking.max_speed_mps``,
``max_angular_rate_dps``) is a failure like no pose, and the motion model predicts within the
same bounds. When PnP fails, new features are matched to the window's landmarks
(relocalisation); failing that the frame is LOST: predicted pose, inflated covariance, the map
kept for tracking to resume on (a plain wall for a few frames) until a new map starts at the
predicted pose (``odom`` stays continuous). Only properly tracked frames
(``tracking.min_inliers`` inliers) become keyframes.

Frames: ``T_odom_base`` is what the odometry reports; the map holds ``T_odom_cam`` (optical
camera frame) with ``T_odom_cam = T_odom_base @ T_base_cam``.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.config import validate
from mp_slam_ros.frontend.alignment import affine_warps, warm_up as warm_up_alignment
from mp_slam_ros.frontend.depth import depth_at, stereo_depth
from mp_slam_ros.frontend.features import FeatureDetector, Keypoints, warm_up as warm_up_features
from mp_slam_ros.frontend.keyframes import keyframe_reason
from mp_slam_ros.frontend.matching import match_by_descriptor, match_by_projection
from mp_slam_ros.frontend.tracking import (
    PnPResult, FrameTracker, bounded_motion, motion_ratio, planar_motion, planar_prior_information, solve_pnp,
)
from mp_slam_ros.geometry.camera import project
from mp_slam_ros.geometry.lie import se3_adjoint, se3_inverse, se3_log, se3_to_translation_quat
from mp_slam_ros.pipelines.ba_worker import BAWorker
from mp_slam_ros.pipelines.vo_config import SensorMode, VOConfig
from mp_slam_ros.pipelines.window import SlidingWindow, WindowKeyframe, WindowSolution, solve_window
from mp_slam_ros.pipelines.vo_frames import FrameImages, StepLog, checked_images, warm_up_ba
from mp_slam_ros.solvers.summary import Summary
from mp_slam_ros.types import CameraModel, KeyframeArrays

FloatArray = NDArray[np.float64]
#: pose variance of the frame that starts a map (it defines the odom origin)
ORIGIN_VARIANCE = 1e-12
#: while lost, the pose follows the last motion for this long (s), then stands still (no wheel odometry)
MAX_DEAD_RECKONING_S = 1.0
#: while lost, the map is kept this long (s) for tracking to resume on it, then a new map starts
#: (ORB-SLAM3 relocalises in its map for 3 s before it starts a new one)
MAX_BRIDGE_S = 3.0
#: relocalisation matches features this close to a landmark's predicted pixel (px; predicted blind)
RELOCALISE_RADIUS_PX = 20.0
#: Lowe ratio of relocalisation by descriptor alone
RELOCALISE_RATIO = 0.8
#: the motion bounds' reference (the last tracked pose) may itself be off by this much (m): a
#: window solve applied between two frames moves the map under it (seed 18, BA in its worker:
#: poses on 19-227 inliers 5-8 cm from it in one frame were refused, up to 3 frames lost per run)
MOTION_BOUND_SLACK_M = 0.1


@dataclass
class Frame:
    """One synchronized camera frame (rectified stereo pair or colour + aligned depth)."""

    stamp_ns: int
    image: NDArray[np.uint8]  # (H, W) grey or (H, W, 3) colour in colour_order
    camera: CameraModel
    depth_m: NDArray[np.float32] | None = None  # (H, W) metres, NaN/0 invalid (RGB-D)
    right_image: NDArray[np.uint8] | None = None  # (H, W) rectified right image (stereo)
    T_odom_base_wheel: FloatArray | None = None  # (4, 4) wheel odometry, a motion prior
    colour_order: str = "rgb"  # "rgb" or "bgr" for 3-channel images


class TrackingStatus(str, enum.Enum):
    """What happened to a frame."""

    INITIALIZING = "initializing"  # first map built on this frame (or not yet: too few features)
    OK = "ok"  # tracked against the map
    LOST = "lost"  # not tracked: predicted pose, inflated covariance (map kept for MAX_BRIDGE_S, then a new one)
    RESET = "reset"  # a new map started here after reset() or a loss


@dataclass
class TrackResult:
    """The odometry of one frame."""

    stamp_ns: int
    T_odom_base: FloatArray  # (4, 4)
    covariance: FloatArray  # (6, 6) x y z rx ry rz, odom-aligned axes at the base (inflated when LOST)
    twist: FloatArray  # (6,) vx vy vz wx wy wz in base_link
    status: TrackingStatus
    keyframe: KeyframeArrays | None
    num_tracked: int
    timings_s: dict[str, float] = field(default_factory=dict)
    ba_summaries: list[Summary] = field(default_factory=list)


class VisualOdometry:
    """Frame-to-map visual odometry with a sliding-window bundle adjustment."""

    def __init__(self, config: VOConfig | None = None, T_base_cam: FloatArray | None = None, odom_frame: str = "odom",
                 on_ba_finished: Callable[[], None] | None = None) -> None:
        """``on_ba_finished`` is called from the BA thread when a window solve is ready for
        :meth:`take_finished_ba` (a node applies it between frames)."""
        self.config = config or VOConfig()
        validate(self.config)
        self.odom_frame = odom_frame
        self.T_base_cam = np.eye(4) if T_base_cam is None else np.array(T_base_cam, np.float64)
        self._detector = FeatureDetector(self.config.frontend)
        self._tracker = FrameTracker(self.config.frontend)
        self._worker: BAWorker | None = None
        self._on_ba_finished = on_ba_finished
        self._next_keyframe_id = 0
        self._generation = 0
        warm_up_ba(self.config.ba)
        warm_up_alignment()
        warm_up_features()
        self.reset(np.eye(4))
        self._status_on_init = TrackingStatus.INITIALIZING

    # -- the step function ------------------------------------------------------------------
    def track(self, frame: Frame) -> TrackResult:
        """Odometry of ``frame``; raises :class:`~mp_slam_ros.errors.FrameError` on bad input."""
        step = StepLog(time.perf_counter())
        images = checked_images(frame, self.config.mode, self._last_stamp_ns)
        if self._initialized and not _same_camera(frame.camera, self._camera):
            self.reset()  # new intrinsics or image size: the map's pixels no longer apply
        step.ba_summaries += self.take_finished_ba()
        if not self._initialized:
            if self._status_on_init is TrackingStatus.LOST:
                self._T_odom_cam = self._predict_pose(frame)  # dead reckoning until a new map starts
            return self._initialize(frame, images, step)
        T_pred = self._predict_pose(frame)
        uv, tracked = self._track_landmarks(images.grey, T_pred)
        step.timings_s["klt_s"] = time.perf_counter() - step.started_s
        estimate = self._estimate_pose(uv, tracked, T_pred, images)
        pnp = self._plausible(estimate, frame.stamp_ns)
        relocalised, out_of_sight = pnp is None, False
        if pnp is not None:
            self._keep_inliers(uv, pnp)
        else:
            pnp, out_of_sight = self._relocalise(images, T_pred, frame.stamp_ns)
            out_of_sight &= estimate is None  # an implausible pose from the tracks: the map is in sight
        step.timings_s["pnp_s"] = time.perf_counter() - step.started_s - step.timings_s["klt_s"]
        if pnp is None:
            return self._lose_tracking(frame, images, T_pred, out_of_sight, step)
        self._lost_since_ns = None
        self._tracked_ns, self._T_odom_cam_tracked = frame.stamp_ns, pnp.T_odom_cam
        keyframe = self._maybe_keyframe(frame, images, pnp.T_odom_cam, pnp.covariance_cam, step, relocalised)
        self._solve_synchronously(step)
        return self._result(frame, pnp.T_odom_cam, pnp.covariance_cam, TrackingStatus.OK, keyframe, step)

    # -- steps ------------------------------------------------------------------------------
    def take_finished_ba(self) -> list[Summary]:
        """Write finished window BAs into the map (async mode; at a frame's start, or between
        frames when ``on_ba_finished`` says one is ready); their summaries."""
        if self._worker is None:
            return []
        return [self._apply(solution) for solution in self._worker.take()]

    def _apply(self, solution: WindowSolution) -> Summary:
        """Write one window BA into the map; the last tracked pose (the motion bounds' reference)
        moves with the solve's newest keyframe, as the map it was tracked against did."""
        if solution.generation == self._window.generation and len(solution.keyframe_ids):
            correction = solution.T_odom_cam[-1] @ se3_inverse(solution.T_odom_cam_before[-1])
            self._T_odom_cam_tracked = correction @ self._T_odom_cam_tracked
        self._window.apply(solution)
        return solution.summary

    def _predict_pose(self, frame: Frame) -> FloatArray:
        """``T_odom_cam`` predicted from the wheel odometry, else by constant velocity (base_link
        kept from moving sideways or vertically where ``tracking.sideways_sigma_m`` /
        ``vertical_sigma_m`` say it cannot)."""
        wheel, self._last_wheel = self._last_wheel, frame.T_odom_base_wheel
        if wheel is not None and frame.T_odom_base_wheel is not None:
            T_base_prev_cur = se3_inverse(wheel) @ frame.T_odom_base_wheel
            return self._T_odom_cam @ se3_inverse(self.T_base_cam) @ T_base_prev_cur @ self.T_base_cam
        return self._T_odom_cam @ planar_motion(self._motion, self.T_base_cam, self.config.tracking)

    def _track_landmarks(self, grey: NDArray[np.uint8], T_odom_cam_pred: FloatArray) -> tuple[FloatArray, NDArray[np.bool_]]:
        """KLT of the tracked landmarks into this frame, started at their predicted pixels."""
        alive = self._window.alive(self._track_ids)
        self._track_ids, self._track_uv = self._track_ids[alive], self._track_uv[alive]
        self._track_angle, self._track_uv_keyframe = self._track_angle[alive], self._track_uv_keyframe[alive]
        # start each search at the point's last pixel moved by the predicted image motion: the
        # prediction alone, on weak texture, pulls KLT along with its own error
        positions = self._window.positions(self._track_ids)
        now = project(self._intrinsics, self._to_camera(positions, T_odom_cam_pred))[0]
        before = project(self._intrinsics, self._to_camera(positions, self._T_odom_cam))[0]
        guess = self._track_uv + (now - before)
        guess = np.where(np.all(np.isfinite(guess), axis=1)[:, None], guess, self._track_uv)
        warps = None
        if self.config.frontend.patch_alignment:
            T_cur_ref = se3_inverse(T_odom_cam_pred) @ self._T_odom_cam_reference
            warps = affine_warps(self._to_camera(positions, self._T_odom_cam_reference), self._track_uv_keyframe, T_cur_ref, self._pinhole)
        return self._tracker.track(grey, self._track_uv_keyframe, guess, warps)

    def _estimate_pose(
        self, uv: FloatArray, tracked: NDArray[np.bool_], T_pred: FloatArray, images: FrameImages,
    ) -> PnPResult | None:
        """PnP RANSAC of the tracked pixels against their landmarks, refined with this frame's
        depth at them (``tracking.use_depth``) and the wheeled robot's motion model
        (``tracking.sideways_sigma_m``, ``vertical_sigma_m``; not in relocalisation, whose
        prediction may be far off); None: too few inliers."""
        points = self._window.positions(self._track_ids[tracked])
        u_right = None
        if self.config.tracking.use_depth:
            u_right = uv[tracked, 0] - self._fx_baseline / self._depth(uv[tracked], images)
        platform = planar_prior_information(self.config.tracking, self.T_base_cam)
        pnp = solve_pnp(points, uv[tracked], self._K, T_pred, self.config.tracking, u_right, self._fx_baseline, platform)
        if pnp is None:
            return None
        inliers = np.zeros(len(uv), bool)
        inliers[np.flatnonzero(tracked)[pnp.inliers]] = True
        pnp.inliers = inliers
        return pnp

    def _plausible(self, pnp: PnPResult | None, stamp_ns: int) -> PnPResult | None:
        """``pnp`` if the camera can have moved there from the last tracked pose in the time since
        (``tracking.max_speed_mps`` / ``max_angular_rate_dps``), else None: a tracking failure."""
        if pnp is None:
            return None
        T_prev_cur = se3_inverse(self._T_odom_cam_tracked) @ pnp.T_odom_cam
        elapsed_s = (stamp_ns - self._tracked_ns) * 1e-9
        return pnp if motion_ratio(T_prev_cur, elapsed_s, self.config.tracking, MOTION_BOUND_SLACK_M) <= 1.0 else None

    def _keep_inliers(self, uv: FloatArray, pnp: PnPResult) -> None:
        keep = pnp.inliers
        self._track_ids, self._track_uv, self._track_angle = self._track_ids[keep], uv[keep], self._track_angle[keep]
        self._track_uv_keyframe = self._track_uv_keyframe[keep]

    def _relocalise(self, images: FrameImages, T_pred: FloatArray, stamp_ns: int) -> tuple[PnPResult | None, bool]:
        """Pose (None: failed or implausible) from this frame's features matched to window
        landmarks near their pixels at ``T_pred`` or else by descriptor alone (a turn without
        wheel odometry leaves the prediction far off); the matches become the tracks. And whether
        the map is out of sight: the frame has features enough for healthy tracking
        (``keyframes.min_tracked``) yet no pose, plausible or not, matched them to the map."""
        cfg = self.config.frontend
        new = self._detector.detect(images.grey, cfg.max_features)
        descriptors, described = self._detector.describe(images.grey, new.uv, new.angle_deg)
        uv, descriptors, angle = new.uv[described].astype(np.float64), descriptors[described], new.angle_deg[described]
        candidates = self._window.observed_ids()
        candidates = candidates[self._window.alive(candidates)]
        enough = len(uv) >= self.config.keyframes.min_tracked
        if len(uv) < self.config.tracking.min_inliers or len(candidates) == 0:
            return None, enough
        candidate_descriptors = self._window.descriptors(candidates)
        points_cam = self._to_camera(self._window.positions(candidates), T_pred)
        projected = np.where(points_cam[:, 2:] > cfg.min_depth_m, project(self._intrinsics, points_cam)[0], -1e6)  # not behind
        in_sight = False
        for index in (
            match_by_projection(uv, descriptors, projected, candidate_descriptors, RELOCALISE_RADIUS_PX, cfg.reacquire_max_hamming),
            match_by_descriptor(descriptors, candidate_descriptors, cfg.reacquire_max_hamming, RELOCALISE_RATIO),
        ):
            matched = np.flatnonzero(index >= 0)
            estimate = self._pose_from_matches(candidates[index[matched]], uv[matched], T_pred, images)
            in_sight |= estimate is not None
            pnp = self._plausible(estimate, stamp_ns)
            if pnp is not None:
                keep = matched[pnp.inliers]
                self._track_ids, self._track_uv, self._track_angle = candidates[index[keep]], uv[keep], angle[keep]
                self._track_uv_keyframe = self._track_uv.copy()
                self._restart_tracker(images.grey, pnp.T_odom_cam)
                return pnp, False
        return None, enough and not in_sight

    def _pose_from_matches(self, ids: NDArray[np.int64], uv: FloatArray, T_pred: FloatArray, images: FrameImages) -> PnPResult | None:
        """PnP RANSAC of pixels ``uv`` against landmarks ``ids`` with at least ``tracking.min_inliers`` inliers."""
        if len(ids) < self.config.tracking.min_inliers:
            return None
        u_right = uv[:, 0] - self._fx_baseline / self._depth(uv, images) if self.config.tracking.use_depth else None
        pnp = solve_pnp(self._window.positions(ids), uv, self._K, T_pred, self.config.tracking, u_right, self._fx_baseline)
        return pnp if pnp is not None and pnp.inliers.sum() >= self.config.tracking.min_inliers else None

    def _maybe_keyframe(
        self, frame: Frame, images: FrameImages, T_odom_cam: FloatArray, covariance_cam: FloatArray, step: StepLog,
        relocalised: bool,
    ) -> KeyframeArrays | None:
        """A keyframe when relocalised or by :func:`keyframe_reason`, from a properly tracked frame
        (``tracking.min_inliers``: a few tracks on a plain wall would fill the window with
        keyframes that push out those tracking resumes on), or from a frame tracked on fewer
        whose view has texture again (``keyframes.min_tracked`` new features): else its last
        tracks die before a keyframe may add any (seed 18, 5.3 s: 6 tracks left, a lost frame)."""
        new = None
        if len(self._track_ids) < self.config.tracking.min_inliers:
            new = self._detector.detect(images.grey, self.config.frontend.max_features - len(self._track_ids), self._track_uv)
            if len(new.uv) < self.config.keyframes.min_tracked:
                return None
        last = self._window.keyframes[-1]
        reason = "relocalised" if relocalised else keyframe_reason(
            self.config.keyframes, len(self._track_ids), self._tracked_at_keyframe,
            (frame.stamp_ns - last.stamp_ns) * 1e-9, last.T_odom_cam, T_odom_cam,
        )
        if reason is None:
            return None
        started = time.perf_counter()
        keyframe = self._insert_keyframe(frame, images, T_odom_cam, covariance_cam, new)
        step.timings_s["keyframe_s"] = time.perf_counter() - started
        return keyframe

    def _insert_keyframe(
        self, frame: Frame, images: FrameImages, T_odom_cam: FloatArray, covariance_cam: FloatArray,
        new: Keypoints | None = None,
    ) -> KeyframeArrays:
        """New features (``new``: already detected) re-find untracked window landmarks or, with
        depth, become new landmarks; the keyframe joins the window and its BA is queued."""
        n_old = len(self._track_ids)
        grey = images.grey
        if new is None:
            new = self._detector.detect(grey, self.config.frontend.max_features - n_old, self._track_uv)
        uv = np.concatenate([self._track_uv, new.uv]).astype(np.float64)
        angle = np.concatenate([self._track_angle, new.angle_deg])
        descriptors, described = self._detector.describe(grey, uv, angle)
        depth = self._depth(uv, images)
        ids = np.concatenate([self._track_ids, self._reacquire(uv[n_old:], descriptors[n_old:], described[n_old:], T_odom_cam)])
        depth[~self._depth_agrees(ids, uv, depth, T_odom_cam)] = np.nan
        points_cam = self._camera.pinhole().unproject(uv, np.where(np.isfinite(depth), depth, 1.0))
        creates = (ids < 0) & np.isfinite(depth) & described
        first_new = self._window.num_landmarks
        ids[creates] = self._window.add_landmarks(self._to_odom(points_cam[creates], T_odom_cam), descriptors[creates])
        observed = ids >= 0
        u_right = uv[:, 0] - self._fx_baseline / depth
        self._window.add_keyframe(WindowKeyframe(
            self._next_keyframe_id, frame.stamp_ns, T_odom_cam.copy(), ids[observed], uv[observed], u_right[observed],
            (first_new, self._window.num_landmarks),
        ))
        self._track_ids, self._track_uv, self._track_angle = ids[observed], uv[observed], angle[observed]
        self._track_uv_keyframe = self._track_uv.copy()
        self._restart_tracker(grey, T_odom_cam)  # KLT runs from this keyframe: no drift accumulates frame to frame
        self._tracked_at_keyframe = int(observed.sum())
        known = np.full_like(points_cam, np.nan)
        known[observed] = self._to_camera(self._window.positions(ids[observed]), T_odom_cam)
        points_cam = np.where(np.isfinite(depth)[:, None], points_cam, known)
        keyframe = self._keyframe_arrays(frame, uv[described], descriptors[described], points_cam[described], T_odom_cam, covariance_cam)
        self._next_keyframe_id += 1
        self._queue_window_ba()
        return keyframe

    def _depth_agrees(self, ids: NDArray[np.int64], uv: FloatArray, depth: FloatArray, T_odom_cam: FloatArray) -> NDArray[np.bool_]:
        """Whether the depth ``(N,)`` measured at each keypoint agrees with its landmark (ids
        ``(N,)``, -1: none yet, always agrees) at ``T_odom_cam``: their right-image coordinates
        within ``ba.outlier_threshold_px``. A tracked pixel that slid onto a nearer surface reads
        that surface's depth; such a depth, far from all the pixels say, once dragged a window BA
        16 cm sideways along the pan/shift ambiguity of a distant view (seed 10, 14.9 s)."""
        known = np.flatnonzero((ids >= 0) & np.isfinite(depth))
        agrees = np.ones(len(ids), bool)
        points_cam = self._to_camera(self._window.positions(ids[known]), T_odom_cam)
        z = points_cam[:, 2]
        u_right_map = project(self._intrinsics, points_cam)[0][:, 0] - self._fx_baseline / z
        u_right = uv[known, 0] - self._fx_baseline / depth[known]
        agrees[known] = (z > 0.0) & (np.abs(u_right - u_right_map) <= self.config.ba.outlier_threshold_px)
        return agrees

    def _reacquire(
        self, uv: FloatArray, descriptors: NDArray[np.uint8], described: NDArray[np.bool_], T_odom_cam: FloatArray
    ) -> NDArray[np.int64]:
        """Ids ``(M,)`` of untracked window landmarks re-found at keypoints ``uv`` (-1: none)."""
        cfg = self.config.frontend
        found = np.full(len(uv), -1, np.int64)
        if cfg.reacquire_radius_px <= 0 or len(uv) == 0:
            return found
        candidates = self._window.observed_ids()
        candidates = candidates[self._window.alive(candidates) & ~np.isin(candidates, self._track_ids)]
        points_cam = self._to_camera(self._window.positions(candidates), T_odom_cam)
        in_front = points_cam[:, 2] > cfg.min_depth_m
        candidates = candidates[in_front]
        projected = project(self._intrinsics, points_cam[in_front])[0]
        index = match_by_projection(
            uv[described], descriptors[described], projected, self._window.descriptors(candidates),
            cfg.reacquire_radius_px, cfg.reacquire_max_hamming,
        )
        rows = np.flatnonzero(described)
        found[rows[index >= 0]] = candidates[index[index >= 0]]
        return found

    def _restart_tracker(self, grey: NDArray[np.uint8], T_odom_cam: FloatArray) -> None:
        """Track from ``grey``, taken at ``T_odom_cam`` (the patch alignment's reference pose), on."""
        self._tracker.restart(grey)
        self._T_odom_cam_reference = T_odom_cam.copy()

    def _depth(self, uv: FloatArray, images: FrameImages) -> FloatArray:
        """Depth ``(N,)`` at pixels ``uv`` from the depth image or the stereo pair (NaN: none)."""
        if self.config.mode is SensorMode.RGBD:
            return depth_at(images.depth_m, uv, self.config.frontend)
        fx_baseline = self._camera.fx * self._camera.baseline_m
        return stereo_depth(images.grey, images.right, uv, fx_baseline, self.config.frontend)

    def _keyframe_arrays(
        self, frame: Frame, uv: FloatArray, descriptors: NDArray[np.uint8], points_cam: FloatArray,
        T_odom_cam: FloatArray, covariance_cam: FloatArray,
    ) -> KeyframeArrays:
        """The published keyframe: keypoints with ORB descriptors and their camera-frame points."""
        translation, quat_xyzw = se3_to_translation_quat(T_odom_cam)
        return KeyframeArrays(
            keyframe_id=self._next_keyframe_id, stamp_ns=frame.stamp_ns, frame_id=self.odom_frame,
            pose_odom_cam=np.concatenate([translation[0], quat_xyzw[0]]),
            covariance_odom_cam=_rotate_covariance(covariance_cam, T_odom_cam),
            camera=frame.camera, keypoints_px=uv.astype(np.float32),
            descriptors=descriptors, points_cam=points_cam.astype(np.float32),
        )

    def _queue_window_ba(self) -> None:
        """Queue (async) or remember (synchronous) the window BA of the current window."""
        if not self.config.ba.enabled:
            return
        job = self._window.problem(self._camera.pinhole(self._baseline_for_ba), self.config.ba)
        if job is None:
            return
        if self.config.ba.synchronous:
            self._sync_job = job
            return
        if self._worker is None:
            self._worker = BAWorker(lambda job: solve_window(job, self.config.ba), self._on_ba_finished)
        self._worker.submit(job)

    def _solve_synchronously(self, step: StepLog) -> None:
        """Solve the window BA queued by this frame (``ba.synchronous``); timed as ``ba_s``."""
        job, self._sync_job = self._sync_job, None
        if job is None:
            return
        started = time.perf_counter()
        step.ba_summaries.append(self._apply(solve_window(job, self.config.ba)))
        step.timings_s["ba_s"] = time.perf_counter() - started

    def _initialize(self, frame: Frame, images: FrameImages, step: StepLog) -> TrackResult:
        """Start a map at this frame at the current pose (INITIALIZING/RESET, or LOST if too few
        features have depth)."""
        self._set_camera(frame.camera)
        self._window = SlidingWindow(self.config.ba.window_size, self._generation)
        self._track_ids = np.zeros(0, np.int64)
        self._track_uv = np.zeros((0, 2))
        self._track_uv_keyframe = np.zeros((0, 2))
        self._track_angle = np.zeros(0, np.float32)
        covariance = self._lost_covariance() if self._status_on_init is TrackingStatus.LOST else np.eye(6) * ORIGIN_VARIANCE
        # A new map's first keyframe is not tied to the previous map's keyframes: after a loss its
        # pose is a prediction, after reset() it may have jumped (~/reset_to_pose, a clock jump).
        # Its covariance (to the previous keyframe, what loop closure's odometry edge uses) says so.
        first_map = self._status_on_init is TrackingStatus.INITIALIZING
        keyframe_covariance = np.eye(6) * ORIGIN_VARIANCE if first_map else self._lost_covariance()
        keyframe = self._insert_keyframe(frame, images, self._T_odom_cam, keyframe_covariance)
        self._solve_synchronously(step)
        if len(self._track_ids) < self.config.tracking.min_inliers:
            self._next_keyframe_id -= 1  # not a usable keyframe: its id is handed out again
            status = TrackingStatus.LOST if self._status_on_init is not TrackingStatus.INITIALIZING else TrackingStatus.INITIALIZING
            return self._result(frame, self._T_odom_cam, self._lost_covariance(), status, None, step)
        self._initialized = True
        self._tracked_ns, self._T_odom_cam_tracked = frame.stamp_ns, self._T_odom_cam
        status, self._status_on_init = self._status_on_init, TrackingStatus.RESET
        return self._result(frame, self._T_odom_cam, covariance, status, keyframe, step)

    def _lose_tracking(self, frame: Frame, images: FrameImages, T_pred: FloatArray, out_of_sight: bool, step: StepLog) -> TrackResult:
        """LOST: the predicted pose, an inflated covariance, the map kept. A new map starts here,
        at the predicted pose, after :data:`MAX_BRIDGE_S`, or at once when the map is
        ``out_of_sight`` (see :meth:`_relocalise`)."""
        if self._lost_since_ns is None:
            self._lost_since_ns = frame.stamp_ns
        if (frame.stamp_ns - self._lost_since_ns) * 1e-9 <= MAX_BRIDGE_S and not out_of_sight:
            return self._result(frame, T_pred, self._lost_covariance(), TrackingStatus.LOST, None, step)
        self._generation += 1
        self._initialized = False
        self._status_on_init = TrackingStatus.LOST
        self._T_odom_cam = T_pred
        result = self._initialize(frame, images, step)
        result.status, result.covariance = TrackingStatus.LOST, self._lost_covariance()
        return result

    def _result(
        self, frame: Frame, T_odom_cam: FloatArray, covariance_cam: FloatArray, status: TrackingStatus,
        keyframe: KeyframeArrays | None, step: StepLog,
    ) -> TrackResult:
        """Pose, covariance and twist of base_link; the motion model and timings are updated."""
        T_odom_base = T_odom_cam @ se3_inverse(self.T_base_cam)
        twist = np.zeros(6)
        dt = 0.0 if self._last_stamp_ns is None else (frame.stamp_ns - self._last_stamp_ns) * 1e-9
        if dt > 0.0:
            twist = se3_log(se3_inverse(self._last_T_odom_base) @ T_odom_base)[0] / dt
        if status is TrackingStatus.OK:  # bounded: the first motion after a loss also holds the prediction's error
            self._motion = bounded_motion(se3_inverse(self._T_odom_cam) @ T_odom_cam, dt, self.config.tracking)
        elif status is not TrackingStatus.LOST or (frame.stamp_ns - (self._lost_since_ns or 0)) * 1e-9 > MAX_DEAD_RECKONING_S:
            self._motion = np.eye(4)  # (a short loss keeps the motion: the next frames are predicted with it)
        self._T_odom_cam = T_odom_cam
        self._last_T_odom_base, self._last_stamp_ns = T_odom_base, frame.stamp_ns
        if status is not TrackingStatus.LOST:
            covariance_base = se3_adjoint(self.T_base_cam)[0] @ covariance_cam @ se3_adjoint(self.T_base_cam)[0].T
            covariance = _rotate_covariance(covariance_base, T_odom_base)
        else:
            covariance = covariance_cam
        step.timings_s["total_s"] = time.perf_counter() - step.started_s
        return TrackResult(
            frame.stamp_ns, T_odom_base, covariance, twist, status, keyframe, len(self._track_ids),
            step.timings_s, step.ba_summaries,
        )

    # -- public API -------------------------------------------------------------------------
    def set_T_base_cam(self, T_base_cam: FloatArray) -> None:
        """Change the camera extrinsics; the reported base pose keeps continuity."""
        self._T_odom_cam = self._T_odom_cam @ se3_inverse(self.T_base_cam) @ np.asarray(T_base_cam, np.float64)
        self.T_base_cam = np.array(T_base_cam, np.float64)
        self.reset(self._T_odom_cam @ se3_inverse(self.T_base_cam))

    def update_config(self, config: VOConfig) -> None:
        """Use ``config`` from the next frame on (BA options at the next solve; a new mode or
        window size restarts the map)."""
        validate(config)
        restart = config.mode is not self.config.mode or config.ba.window_size != self.config.ba.window_size
        self.config = config
        self._detector = FeatureDetector(config.frontend)
        self._tracker.config = config.frontend
        if restart:
            self.reset(self._T_odom_cam @ se3_inverse(self.T_base_cam))

    def reset(self, T_odom_base: FloatArray | None = None) -> None:
        """Drop the map; the next frame starts a new one at ``T_odom_base`` (default: the last pose)."""
        if T_odom_base is not None:
            self._T_odom_cam = np.asarray(T_odom_base, np.float64) @ self.T_base_cam
        self._generation += 1
        self._initialized = False
        self._status_on_init = TrackingStatus.RESET
        self._motion = np.eye(4)
        self._lost_since_ns: int | None = None
        self._tracked_ns, self._T_odom_cam_tracked = 0, self._T_odom_cam  # the last tracked frame (motion bounds)
        self._last_wheel = None
        self._last_stamp_ns: int | None = None
        self._last_T_odom_base = self._T_odom_cam @ se3_inverse(self.T_base_cam)
        self._sync_job = None
        self._window = SlidingWindow(self.config.ba.window_size, self._generation)
        self._track_ids = np.zeros(0, np.int64)
        self._tracked_at_keyframe = 0

    def landmarks_odom(self) -> NDArray[np.float32]:
        """Positions ``(N, 3)`` float32 of the landmarks observed in the window."""
        ids = self._window.observed_ids()
        return self._window.positions(ids[self._window.alive(ids)]).astype(np.float32)

    def wait_for_ba(self) -> list[Summary]:
        """Block until queued window BAs are done and apply them (offline runs); their summaries."""
        if self._worker is None:
            return []
        self._worker.wait_idle()
        return self.take_finished_ba()

    @property
    def ba_idle(self) -> bool:
        """No window BA queued, running, or finished but not yet applied."""
        return self._worker is None or self._worker.idle

    def close(self) -> None:
        """Stop the BA worker thread."""
        if self._worker is not None:
            self._worker.close()
            self._worker = None

    # -- helpers ----------------------------------------------------------------------------
    def _set_camera(self, camera: CameraModel) -> None:
        self._camera = camera
        self._K = np.asarray(camera.camera_matrix, np.float64)
        self._pinhole = camera.pinhole()
        self._intrinsics = self._pinhole.intrinsics
        # depth (RGB-D, or triangulated from the stereo pair) enters tracking and BA as a virtual
        # right-image coordinate; its baseline sets how much depth weighs against the pixels
        self._baseline_for_ba = self.config.frontend.rgbd_virtual_baseline_m
        self._fx_baseline = camera.fx * self._baseline_for_ba

    @staticmethod
    def _to_camera(points_odom: FloatArray, T_odom_cam: FloatArray) -> FloatArray:
        T_cam_odom = se3_inverse(T_odom_cam)
        return points_odom @ T_cam_odom[:3, :3].T + T_cam_odom[:3, 3]

    @staticmethod
    def _to_odom(points_cam: FloatArray, T_odom_cam: FloatArray) -> FloatArray:
        return points_cam @ T_odom_cam[:3, :3].T + T_odom_cam[:3, 3]

    def _lost_covariance(self) -> FloatArray:
        return np.eye(6) * self.config.tracking.lost_variance


def _rotate_covariance(covariance: FloatArray, T_odom_x: FloatArray) -> FloatArray:
    """A body-frame ``[rho, phi]`` covariance ``(6, 6)`` expressed in odom-aligned axes."""
    R6 = np.kron(np.eye(2), T_odom_x[:3, :3])
    return R6 @ covariance @ R6.T


def _same_camera(a: CameraModel, b: CameraModel) -> bool:
    return (a.width, a.height, a.baseline_m) == (b.width, b.height, b.baseline_m) and np.array_equal(a.camera_matrix, b.camera_matrix)
