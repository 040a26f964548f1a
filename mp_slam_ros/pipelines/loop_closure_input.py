"""Checks of incoming keyframes for loop closure, and the information matrices of its edges.

:func:`check_keyframe` never raises: it says whether to drop a keyframe (NaN or non-rigid pose,
out of order, duplicated), what to repair (a NaN or indefinite covariance is replaced by the
floor covariance), whether it starts a new odometry segment (a VO restart: its id is not above
the previous one while its stamp is later) and whether it can take part in place recognition
(descriptors, keypoints and 3-D points of matching lengths). Each finding is a warning string
and a counter name.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.backend.keyframe_store import StoredKeyframe
from mp_slam_ros.geometry.lie import se3_from_translation_quat
from mp_slam_ros.pipelines.loop_closure_config import OdometryEdgeConfig
from mp_slam_ros.types import KeyframeArrays

FloatArray = NDArray[np.float64]


@dataclass
class InputCheck:
    """The verdict on one keyframe (see the module docstring)."""

    drop: bool = False
    restart: bool = False
    has_features: bool = True
    T_odom_cam: FloatArray = field(default_factory=lambda: np.eye(4))
    covariance_cam: FloatArray | None = None  # (6, 6) camera-frame [rho, phi]; None: floor only
    warnings: list[str] = field(default_factory=list)
    counters: Counter[str] = field(default_factory=Counter)

    def warn(self, counter: str, message: str, drop: bool = False) -> None:
        """Record a finding (and drop the keyframe when ``drop``)."""
        self.counters[counter] += 1
        self.warnings.append(message)
        self.drop |= drop


def check_keyframe(keyframe: KeyframeArrays, previous: StoredKeyframe | None, config: OdometryEdgeConfig) -> InputCheck:
    """Check ``keyframe`` against the previous keyframe of its session (None: first one)."""
    check = InputCheck()
    name = f"keyframe {keyframe.keyframe_id} at {keyframe.stamp_ns} ns"
    pose = np.asarray(keyframe.pose_odom_cam, np.float64).reshape(-1)
    if pose.shape != (7,) or not np.all(np.isfinite(pose)) or abs(np.linalg.norm(pose[3:]) - 1.0) > 1e-3:
        check.warn("bad_pose", f"{name}: pose_odom_cam {pose.tolist()} is not a finite pose with a unit quaternion: dropped", drop=True)
        return check
    check.T_odom_cam = se3_from_translation_quat(pose[:3], pose[3:])[0]
    if previous is not None:
        if keyframe.stamp_ns == previous.stamp_ns and keyframe.keyframe_id == previous.keyframe_id:
            check.warn("duplicates", f"{name}: duplicate of the previous keyframe: dropped", drop=True)
            return check
        if keyframe.stamp_ns <= previous.stamp_ns:
            check.warn("out_of_order", f"{name}: not later than the previous keyframe ({previous.stamp_ns} ns): dropped", drop=True)
            return check
        if keyframe.keyframe_id <= previous.keyframe_id:
            check.restart = True
            check.warn("restarts", f"{name}: id not above the previous {previous.keyframe_id}: VO restart, new odometry segment")
    check.covariance_cam = _camera_covariance(keyframe, check)
    check.has_features = _has_features(keyframe, check)
    return check


def _camera_covariance(keyframe: KeyframeArrays, check: InputCheck) -> FloatArray | None:
    """The keyframe's covariance moved from odom-aligned to camera axes (None when unusable)."""
    covariance = np.asarray(keyframe.covariance_odom_cam, np.float64)
    usable = covariance.shape == (6, 6) and np.all(np.isfinite(covariance))
    if usable:
        symmetric = 0.5 * (covariance + covariance.T)
        usable = bool(np.linalg.eigvalsh(symmetric)[0] >= -1e-12 * max(np.abs(symmetric).max(), 1e-300))
    if not usable:
        check.warn("bad_covariance", f"keyframe {keyframe.keyframe_id}: covariance is not a finite positive semi-definite 6x6 matrix: floor covariance used")
        return None
    R6 = np.kron(np.eye(2), check.T_odom_cam[:3, :3])
    return R6.T @ (0.5 * (covariance + covariance.T)) @ R6


def _has_features(keyframe: KeyframeArrays, check: InputCheck) -> bool:
    n = len(keyframe.descriptors)
    shapes_ok = (
        np.asarray(keyframe.descriptors).ndim == 2 and np.asarray(keyframe.keypoints_px).shape == (n, 2)
        and np.asarray(keyframe.points_cam).shape == (n, 3)
    )
    if n == 0 or not shapes_ok:
        check.warn("no_features", f"keyframe {keyframe.keyframe_id}: {n} descriptors (or mismatched keypoint/point arrays): not used for place recognition")
        return False
    if not np.all(np.isfinite(keyframe.keypoints_px)):
        check.warn("no_features", f"keyframe {keyframe.keyframe_id}: non-finite keypoints: not used for place recognition")
        return False
    K = np.asarray(keyframe.camera.camera_matrix, np.float64)
    if K.shape != (3, 3) or not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
        check.warn("no_features", f"keyframe {keyframe.keyframe_id}: unusable camera matrix: not used for place recognition")
        return False
    return True


def edge_information(covariance: FloatArray | None, config: OdometryEdgeConfig, restart: bool = False, gap_s: float = 0.0) -> FloatArray:
    """Information ``(6, 6)`` of an edge: ``(scale * covariance + floor)^-1`` (restart: the
    restart sigmas only; None covariance: the floor only). Its translation sigma is at most
    ``odometry.gap_sigma_m + odometry.max_speed_mps * gap_s`` (``gap_s``: time between the two
    keyframes): the camera cannot have moved farther, whatever covariance the VO reports after
    lost tracking (without the bound such an edge says nothing, and loops alone, aliased ones
    too, place what follows); its rotation sigma at most 180 deg (no rotation is farther off).
    The first keyframe of a map the VO starts after lost tracking carries its lost covariance
    (metres, radians), so the edge to it is bounded by both; a keyframe the VO relocalised
    in its kept map carries the covariance of that tracking."""
    if restart:
        sigmas = np.array([config.restart_sigma_m] * 3 + [np.radians(config.restart_sigma_deg)] * 3)
        return np.diag(1.0 / sigmas**2)
    floor = np.diag([config.min_sigma_m**2] * 3 + [np.radians(config.min_sigma_deg) ** 2] * 3)
    total = floor if covariance is None else config.covariance_scale * covariance + floor
    information = np.linalg.inv(_bound_sigmas(total, config.gap_sigma_m + config.max_speed_mps * gap_s, np.pi))
    return 0.5 * (information + information.T)


def _bound_sigmas(covariance: FloatArray, max_sigma_m: float, max_sigma_rad: float) -> FloatArray:
    """``S C S`` with ``S = diag(S_t, S_r)``, ``S_b = V diag(s) V^T`` per block (``V, lambda``:
    eigenvectors and values of the block, ``s = min(1, max_sigma / sqrt(lambda))``): no
    translation direction less certain than ``max_sigma_m``, no rotation direction less certain
    than ``max_sigma_rad``; correlations kept, positive semi-definite."""
    S = np.eye(6)
    for block, max_sigma in ((slice(0, 3), max_sigma_m), (slice(3, 6), max_sigma_rad)):
        values, vectors = np.linalg.eigh(0.5 * (covariance[block, block] + covariance[block, block].T))
        shrink = np.minimum(1.0, max_sigma / np.sqrt(np.maximum(values, 1e-300)))
        S[block, block] = vectors @ np.diag(shrink) @ vectors.T
    return S @ covariance @ S.T
