"""The sliding window of the visual odometry: keyframes, their observations, the landmarks, and
the bundle adjustment of the window (problem built from the window, solution applied back by id).

Landmarks live in odom coordinates in arrays sorted by landmark id (ids only grow); a landmark
dies when no keyframe of the window observes it any more, and its rows leave the arrays then, so
they hold the window's landmarks only (memory stays flat over long runs). Keyframe observations
are arrays (landmark ids, pixels, right-image ``u``), so building a 50-keyframe problem is a few
concatenations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.geometry.camera import PinholeCamera, project
from mp_slam_ros.geometry.lie import se3_inverse
from mp_slam_ros.pipelines.vo_config import BAConfig
from mp_slam_ros.solvers.ba import BAProblem, ba_solver_options, bundle_adjust
from mp_slam_ros.solvers.robust import RobustLoss
from mp_slam_ros.solvers.summary import Summary

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
#: bytes of an ORB descriptor
DESCRIPTOR_BYTES = 32


@dataclass
class WindowKeyframe:
    """One keyframe of the window and what it observes (M observations)."""

    keyframe_id: int
    stamp_ns: int
    T_odom_cam: FloatArray  # (4, 4)
    landmark_ids: IntArray  # (M,)
    uv: FloatArray  # (M, 2) pixels
    u_right: FloatArray  # (M,) right-image u (stereo or virtual RGB-D), NaN without depth
    new_landmarks: tuple[int, int]  # [first, last) ids of the landmarks created with this keyframe


@dataclass
class WindowProblem:
    """A window bundle adjustment to solve (a snapshot: independent of later window changes)."""

    generation: int
    problem: BAProblem
    keyframe_ids: IntArray  # (C,)
    landmark_ids: IntArray  # (P,)
    obs_keyframe_ids: IntArray  # (N,)
    obs_landmark_ids: IntArray  # (N,)


@dataclass
class WindowSolution:
    """A solved window: new poses and landmarks by id, outlier observations, the solver summary."""

    generation: int
    keyframe_ids: IntArray
    T_odom_cam_before: FloatArray  # (C, 4, 4)
    T_odom_cam: FloatArray  # (C, 4, 4)
    landmark_ids: IntArray
    points_odom: FloatArray  # (P, 3)
    outlier_keyframe_ids: IntArray
    outlier_landmark_ids: IntArray
    summary: Summary


class SlidingWindow:
    """Keyframes (oldest first, at most ``size``) and the landmarks they observe."""

    def __init__(self, size: int, generation: int = 0) -> None:
        self.size = size
        self.generation = generation
        self.keyframes: list[WindowKeyframe] = []
        self._ids = np.zeros(0, np.int64)  # (M,) ascending ids of the live landmarks
        self._positions = np.zeros((0, 3))  # (M, 3) odom
        self._descriptors = np.zeros((0, DESCRIPTOR_BYTES), np.uint8)  # (M, 32)
        self._count = 0

    @property
    def num_landmarks(self) -> int:
        """Landmark ids handed out so far (alive or not)."""
        return self._count

    @property
    def num_stored(self) -> int:
        """Landmarks held in the arrays (the live ones)."""
        return len(self._ids)

    def add_landmarks(self, points_odom: FloatArray, descriptors: NDArray[np.uint8]) -> IntArray:
        """Ids ``(N,)`` of new landmarks at ``points_odom`` ``(N, 3)`` with ORB ``descriptors`` ``(N, 32)``."""
        n = len(points_odom)
        ids = np.arange(self._count, self._count + n, dtype=np.int64)
        self._ids = np.concatenate([self._ids, ids])
        self._positions = np.concatenate([self._positions, np.asarray(points_odom, np.float64).reshape(n, 3)])
        self._descriptors = np.concatenate([self._descriptors, np.asarray(descriptors, np.uint8).reshape(n, DESCRIPTOR_BYTES)])
        self._count += n
        return ids

    def positions(self, ids: IntArray) -> FloatArray:
        """Odom positions ``(N, 3)`` of live landmarks ``ids``; raises ``KeyError`` for a dead one."""
        return self._positions[self._rows(ids)]

    def descriptors(self, ids: IntArray) -> NDArray[np.uint8]:
        """ORB descriptors ``(N, 32)`` of live landmarks ``ids`` (from the keyframe that created them)."""
        return self._descriptors[self._rows(ids)]

    def alive(self, ids: IntArray) -> NDArray[np.bool_]:
        """Mask ``(N,)`` of the landmarks still observed in the window."""
        return self._find(ids)[1]

    def _find(self, ids: IntArray) -> tuple[IntArray, NDArray[np.bool_]]:
        """Array rows ``(N,)`` of landmarks ``ids`` and whether each is stored (alive)."""
        ids = np.asarray(ids, np.int64)
        rows = np.minimum(np.searchsorted(self._ids, ids), max(len(self._ids) - 1, 0))
        found = self._ids[rows] == ids if len(self._ids) else np.zeros(ids.shape, bool)
        return rows, found

    def _rows(self, ids: IntArray) -> IntArray:
        rows, found = self._find(ids)
        if not np.all(found):
            raise KeyError(f"landmarks {np.asarray(ids)[~found][:5].tolist()} are not in the window")
        return rows

    def observed_ids(self) -> IntArray:
        """Sorted ids of every landmark observed by a window keyframe."""
        if not self.keyframes:
            return np.zeros(0, np.int64)
        return np.unique(np.concatenate([kf.landmark_ids for kf in self.keyframes]))

    def add_keyframe(self, keyframe: WindowKeyframe) -> None:
        """Append ``keyframe``; drop the oldest beyond ``size`` and the landmarks only it observed."""
        self.keyframes.append(keyframe)
        if len(self.keyframes) > self.size:
            dropped = self.keyframes.pop(0)
            self._kill_unobserved(dropped.landmark_ids)

    def _kill_unobserved(self, candidates: IntArray) -> None:
        """Drop the rows of the ``candidates`` no window keyframe observes any more."""
        gone = candidates[~np.isin(candidates, self.observed_ids())]
        keep = ~np.isin(self._ids, gone)
        self._ids, self._positions, self._descriptors = self._ids[keep], self._positions[keep], self._descriptors[keep]

    def problem(self, camera: PinholeCamera, config: BAConfig) -> WindowProblem | None:
        """The window BA: landmarks seen by >= 2 window keyframes, the oldest keyframes fixed."""
        if len(self.keyframes) < 2:
            return None
        counts = [len(kf.landmark_ids) for kf in self.keyframes]
        obs_cam = np.repeat(np.arange(len(self.keyframes)), counts)
        obs_lm = np.concatenate([kf.landmark_ids for kf in self.keyframes])
        landmark_ids, obs_point, per_landmark = np.unique(obs_lm, return_inverse=True, return_counts=True)
        keep_landmark = per_landmark >= 2
        if config.max_landmarks and int(keep_landmark.sum()) > config.max_landmarks:
            keep_landmark = _most_observed(per_landmark, keep_landmark, config.max_landmarks)
        keep = keep_landmark[obs_point]
        if not np.any(keep):
            return None
        new_index = np.cumsum(keep_landmark) - 1
        fixed = np.zeros(len(self.keyframes), bool)
        fixed[: min(config.fixed_keyframes, len(self.keyframes) - 1)] = True
        problem = BAProblem.from_camera(
            camera,
            T_world_cam=np.stack([kf.T_odom_cam for kf in self.keyframes]),
            points_world=self.positions(landmark_ids[keep_landmark]),
            obs_cam=obs_cam[keep],
            obs_point=new_index[obs_point[keep]],
            obs_uv=np.concatenate([kf.uv for kf in self.keyframes])[keep],
            obs_u_right=np.concatenate([kf.u_right for kf in self.keyframes])[keep],
            obs_weight=1.0 / config.pixel_sigma_px,
            fixed_cams=fixed,
            loss=RobustLoss(config.loss, config.loss_scale),
        )
        keyframe_ids = np.array([kf.keyframe_id for kf in self.keyframes], np.int64)
        return WindowProblem(
            self.generation, problem, keyframe_ids, landmark_ids[keep_landmark],
            keyframe_ids[obs_cam[keep]], obs_lm[keep],
        )

    def apply(self, solution: WindowSolution) -> None:
        """Write a solution back by id (keyframes and landmarks gone since are skipped); landmarks
        seen by one keyframe move with it; outlier observations are removed."""
        if solution.generation != self.generation:
            return
        rows, alive = self._find(solution.landmark_ids)
        self._positions[rows[alive]] = solution.points_odom[alive]
        index = {int(k): i for i, k in enumerate(solution.keyframe_ids)}
        outliers: list[IntArray] = []
        for kf in self.keyframes:
            i = index.get(kf.keyframe_id)
            if i is None:
                continue
            kf.T_odom_cam = solution.T_odom_cam[i]
            created = np.arange(*kf.new_landmarks, dtype=np.int64)
            created_rows, created_alive = self._find(created)
            single = created_rows[created_alive & ~np.isin(created, solution.landmark_ids)]
            correction = solution.T_odom_cam[i] @ se3_inverse(solution.T_odom_cam_before[i])
            self._positions[single] = self._positions[single] @ correction[:3, :3].T + correction[:3, 3]
            bad = solution.outlier_landmark_ids[solution.outlier_keyframe_ids == kf.keyframe_id]
            if bad.size:
                keep = ~np.isin(kf.landmark_ids, bad)
                kf.landmark_ids, kf.uv, kf.u_right = kf.landmark_ids[keep], kf.uv[keep], kf.u_right[keep]
                outliers.append(bad)
        if outliers:
            self._kill_unobserved(np.unique(np.concatenate(outliers)))


def _most_observed(observations: IntArray, eligible: NDArray[np.bool_], budget: int) -> NDArray[np.bool_]:
    """The ``budget`` eligible landmarks seen by the most keyframes (ties: the older, whose ids,
    sorted ascending by ``np.unique``, come first)."""
    candidates = np.flatnonzero(eligible)
    order = np.argsort(-observations[candidates], kind="stable")
    chosen = np.zeros_like(eligible)
    chosen[candidates[order[:budget]]] = True
    return chosen


def solve_window(job: WindowProblem, config: BAConfig) -> WindowSolution:
    """Bundle-adjust a window problem; observations whose reprojection error exceeds
    ``ba.outlier_threshold_px`` at the solution are reported as outliers."""
    options = ba_solver_options(
        config.precision, max_iterations=config.max_iterations, escalate=config.escalate,
        max_time_s=config.max_solve_time_ms / 1000.0,
    )
    result = bundle_adjust(job.problem, options, solver=config.solver)
    state = result.state
    problem = job.problem
    T_cam_world = se3_inverse(state.T_world_cam)[problem.obs_cam]
    points_cam = np.einsum("nij,nj->ni", T_cam_world[:, :3, :3], state.points_world[problem.obs_point])
    points_cam += T_cam_world[:, :3, 3]
    uv = project(problem.intrinsics[0], points_cam)[0]
    error = np.linalg.norm(uv - problem.obs_uv, axis=1)
    bad = ~(error <= config.outlier_threshold_px) | (points_cam[:, 2] <= 0.0)
    return WindowSolution(
        job.generation, job.keyframe_ids, problem.T_world_cam, state.T_world_cam, job.landmark_ids,
        state.points_world, job.obs_keyframe_ids[bad], job.obs_landmark_ids[bad], result.summary,
    )
