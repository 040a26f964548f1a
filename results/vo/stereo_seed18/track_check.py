"""Per-frame check of the VO against the generator's ground truth (analysis of issue 10's seed 18).

For frames FIRST..LAST it prints: the tracking status, tracked landmarks, whether a keyframe was
made, the error of the frame-to-frame motion (rotation about base_link's x, y, z in degrees,
translation in mm), the heading error summed since FIRST, and where the tracked landmarks project
under the TRUE camera pose (aligned to the odometry at FIRST) against the pixels KLT tracked them
to: the mean pixel offset of the landmarks farther than 2 m and of the nearer ones. A track that
slid off its landmark (e.g. along the silhouette of a nearer object) shows as a growing offset.
It reads private state of ``VisualOdometry`` (an analysis script, not an API).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python results/vo/stereo_seed18/track_check.py \\
        /tmp/vo/cache/seed18_60s_1 --params config/household_stereo.yaml --first 120 --last 160
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from mp_slam_ros.cli.vo import add_arguments, config_from_args
from mp_slam_ros.config import with_updates
from mp_slam_ros.geometry.camera import project
from mp_slam_ros.geometry.lie import se3_inverse, so3_log
from mp_slam_ros.io.tum import read_tum
from mp_slam_ros.pipelines.vo import VisualOdometry
from mp_slam_ros.pipelines.vo_bag import BagFrames


def truth_by_stamp(path: Path) -> dict[int, np.ndarray]:
    """Ground-truth ``T_world_base`` (4, 4) by stamp in ms (the stamps' float text differs)."""
    truth = read_tum(path)
    return {int(round(stamp * 1e3)): T for stamp, T in zip(truth.timestamps_s, truth.matrices())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument("--first", type=int, required=True)
    parser.add_argument("--last", type=int, required=True)
    args = parser.parse_args(["--tum", "/dev/null", *sys.argv[1:]])  # the TUM output is not written
    sequence = Path(args.bag)
    config = with_updates(config_from_args(args), {"ba.synchronous": True})
    truth = truth_by_stamp(sequence / "groundtruth.tum")
    previous, heading_error_deg = None, 0.0
    with BagFrames(sequence / "bag", config.mode) as frames:
        config = with_updates(config, {"mode": frames.mode.value})
        odometry = VisualOdometry(config, frames.T_base_cam)
        for index, frame in enumerate(frames):
            if index > args.last:
                break
            result = odometry.track(frame)
            T_world_base = truth[int(round(result.stamp_ns * 1e-6))]
            if index == args.first:
                T_odom_world = result.T_odom_base @ se3_inverse(T_world_base)
            if index > args.first and previous is not None:
                motion_error = se3_inverse(se3_inverse(previous[1]) @ T_world_base) @ (se3_inverse(previous[0]) @ result.T_odom_base)
                rotation_deg = np.degrees(so3_log(motion_error[None, :3, :3])[0])
                heading_error_deg += rotation_deg[2]
                T_odom_cam_true = T_odom_world @ T_world_base @ frames.T_base_cam
                points_odom = odometry._window.positions(odometry._track_ids)
                points_cam = (points_odom - T_odom_cam_true[:3, 3]) @ T_odom_cam_true[:3, :3]
                offset = odometry._track_uv - project(odometry._intrinsics, points_cam)[0]
                far = points_cam[:, 2] > 2.0
                print(
                    f"{index:5d} {result.status.value:5s} tracked {result.num_tracked:4d} {'KF' if result.keyframe else '  '}"
                    f" motion error rot ({rotation_deg[0]:+.3f} {rotation_deg[1]:+.3f} {rotation_deg[2]:+.3f}) deg"
                    f" trans {1e3 * np.linalg.norm(motion_error[:3, 3]):5.1f} mm, heading error {heading_error_deg:+.2f} deg;"
                    f" true-pose pixel offset far {_mean(offset[far])} ({far.sum()}), near {_mean(offset[~far])} ({(~far).sum()})"
                )
            previous = (result.T_odom_base, T_world_base)
        odometry.close()


def _mean(offset_px: np.ndarray) -> str:
    return "(  -  ,  -  )" if len(offset_px) == 0 else f"({offset_px[:, 0].mean():+6.2f},{offset_px[:, 1].mean():+6.2f})"


if __name__ == "__main__":
    main()
