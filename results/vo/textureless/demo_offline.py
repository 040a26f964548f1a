"""Offline VO over the quick demo's sequence (the folder ``mp-slam demo --quick`` caches) with its
wheel odometry as the motion prior, as vo_node gets it: a per-frame log of a time range (the
textureless view is at 26.5-27.5 s), then the status counts, keyframes and ATE / drift.

    OPENBLAS_NUM_THREADS=1 .venv/bin/python results/vo/textureless/demo_offline.py SEQ_DIR [--no-wheel]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from mp_slam_ros.config import with_updates
from mp_slam_ros.eval.metrics import RpeSpec, evaluate
from mp_slam_ros.io.tum import TumTrajectory, read_tum
from mp_slam_ros.pipelines.vo import TrackingStatus, VisualOdometry
from mp_slam_ros.pipelines.vo_bag import BagFrames
from mp_slam_ros.pipelines.vo_config import VOConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sequence", type=Path, help="a generated sequence folder (bag/, groundtruth.tum, odometry.tum)")
    parser.add_argument("--no-wheel", action="store_true", help="constant-velocity prediction instead of the wheel odometry")
    parser.add_argument("--precision", default="mixed", help="ba.precision (the quick demo's: mixed)")
    parser.add_argument("--log-from", type=float, default=26.0, help="first logged second")
    parser.add_argument("--log-to", type=float, default=28.0, help="last logged second")
    args = parser.parse_args()
    config = with_updates(VOConfig(), {"ba.synchronous": True, "ba.precision": args.precision})  # household_rgbd.yaml's VO values
    wheel = read_tum(args.sequence / "odometry.tum")
    wheel_ns, wheel_T = np.round(wheel.timestamps_s * 1e9).astype(np.int64), wheel.matrices()
    stamps, poses, statuses, keyframes = [], [], [], 0
    with BagFrames(args.sequence / "bag", config.mode) as frames:
        odometry = VisualOdometry(config, frames.T_base_cam)
        first_ns = None
        for frame in frames:
            first_ns = frame.stamp_ns if first_ns is None else first_ns
            if not args.no_wheel:
                frame.T_odom_base_wheel = wheel_T[np.argmin(np.abs(wheel_ns - frame.stamp_ns))]
            result = odometry.track(frame)
            stamps.append(result.stamp_ns * 1e-9)
            poses.append(result.T_odom_base)
            statuses.append(result.status)
            keyframes += result.keyframe is not None
            t = (frame.stamp_ns - first_ns) * 1e-9
            if args.log_from <= t <= args.log_to:
                print(f"{len(stamps) - 1:4d} t={t:6.2f} {result.status.value:12s} tracked={result.num_tracked:4d} {'keyframe' if result.keyframe else ''}")
        odometry.close()
    tracked = [i for i, s in enumerate(statuses) if s is not TrackingStatus.LOST]
    trajectory = TumTrajectory.from_matrices(np.array(stamps)[tracked], np.array(poses)[tracked])
    evaluation = evaluate(read_tum(args.sequence / "groundtruth.tum"), trajectory, "vo", rpe=RpeSpec(1.0, "m"))
    print(json.dumps({
        "frames": len(statuses), "statuses": Counter(s.value for s in statuses), "keyframes": keyframes,
        "ate_rmse_cm": round(100 * evaluation.ate_m.rmse, 2), "ate_mean_cm": round(100 * evaluation.ate_m.mean, 2),
        "drift_percent": round(100 * evaluation.rpe_m.mean, 2),
    }))


if __name__ == "__main__":
    main()
