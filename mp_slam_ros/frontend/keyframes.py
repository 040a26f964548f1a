"""Keyframe policy: a tracked frame becomes a keyframe when tracking thins out, the camera has
moved or turned enough, or too much time has passed since the last keyframe."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.geometry.lie import se3_inverse, so3_log
from mp_slam_ros.pipelines.vo_config import KeyframeConfig


def keyframe_reason(
    config: KeyframeConfig, num_tracked: int, num_at_keyframe: int, elapsed_s: float,
    T_odom_kf: NDArray[np.float64], T_odom_cam: NDArray[np.float64],
) -> str | None:
    """Why the frame at ``T_odom_cam`` should be a keyframe (``None``: it should not).

    ``num_tracked`` landmarks are tracked now, ``num_at_keyframe`` were at the last keyframe
    ``T_odom_kf``, taken ``elapsed_s`` ago.
    """
    if num_tracked < min(config.min_tracked, num_at_keyframe):  # in texture-poor views: only once tracks are lost
        return "few tracked"
    if num_tracked < config.min_tracked_ratio * num_at_keyframe:
        return "tracked ratio"
    T_kf_cam = se3_inverse(T_odom_kf) @ T_odom_cam
    if np.linalg.norm(T_kf_cam[:3, 3]) > config.max_translation_m:
        return "translation"
    if np.degrees(np.linalg.norm(so3_log(T_kf_cam[None, :3, :3]))) > config.max_rotation_deg:
        return "rotation"
    if elapsed_s > config.max_interval_s:
        return "time"
    return None
