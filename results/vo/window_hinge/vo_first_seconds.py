"""The VO alone over the first SECONDS of a generated sequence (the loop-closure bench's VO options,
synchronous BA), with any VO options given as dotted ``KEY=VALUE`` after the seconds: keyframes
made, ATE RMSE (SE(3)-aligned), 1-m drift, lost frames.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python results/vo/window_hinge/vo_first_seconds.py \\
        /tmp/lc/cache/house-s5-180s-x1-stereo rgbd 60 [ba.loss=cauchy ba.loss_scale=0.6 ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from household_run import run_until, vo_config

from mp_slam_ros.eval.metrics import RpeSpec, evaluate
from mp_slam_ros.io.tum import read_tum
from mp_slam_ros.pipelines.vo import TrackingStatus, TrackResult
from mp_slam_ros.pipelines.vo_run import VORun


def main() -> None:
    sequence, mode, seconds = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    updates = dict(item.split("=", 1) for item in sys.argv[4:])
    run = VORun()

    def record(result: TrackResult, _elapsed_s: float) -> None:
        run.stamps_s.append(result.stamp_ns * 1e-9)
        run.T_odom_base.append(result.T_odom_base)
        run.statuses.append(result.status)
        run.keyframes += result.keyframe is not None

    run_until(sequence, vo_config(mode, updates), seconds, record)
    scores = evaluate(read_tum(sequence / "groundtruth.tum"), run.trajectory(), "vo", rpe=RpeSpec(1.0, "m"))
    lost = sum(status is TrackingStatus.LOST for status in run.statuses)
    options = f" ({' '.join(sys.argv[4:])})" if updates else ""
    print(f"{sequence.name} {mode} {seconds:g} s{options}: keyframes {run.keyframes}, ATE {100 * scores.ate_m.rmse:.2f} cm, "
          f"1-m drift {100 * scores.rpe_m.mean:.2f}%, lost {lost}")


if __name__ == "__main__":
    main()
