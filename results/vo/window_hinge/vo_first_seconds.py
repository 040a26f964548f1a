"""The VO alone over the first SECONDS of a generated sequence (the loop-closure bench's VO options,
synchronous BA): keyframes made, ATE RMSE (SE(3)-aligned), 1-m drift, lost frames.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python results/vo/window_hinge/vo_first_seconds.py \\
        /tmp/lc/cache/house-s5-180s-x1-stereo rgbd 60
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from bench_loop_closure import offline_config  # noqa: E402

from mp_slam_ros.config import with_updates  # noqa: E402
from mp_slam_ros.eval.metrics import RpeSpec, evaluate  # noqa: E402
from mp_slam_ros.io.tum import read_tum  # noqa: E402
from mp_slam_ros.pipelines import vo_run  # noqa: E402
from mp_slam_ros.pipelines.vo import TrackingStatus, TrackResult  # noqa: E402


class _Done(Exception):
    """Raised past the last second asked for."""


def main() -> None:
    sequence, mode, seconds = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    config = with_updates(offline_config(mode).vo, {"tracking.sideways_sigma_m": 0.0005, "tracking.vertical_sigma_m": 0.0005})
    runs: list[vo_run.VORun] = []
    make_run = vo_run.VORun.__init__

    def keep(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        make_run(self, *args, **kwargs)
        runs.append(self)  # run_vo's record, for its trajectory after the early stop

    vo_run.VORun.__init__ = keep
    counts = {"keyframes": 0}
    start: list[float] = []

    def on_result(result: TrackResult) -> None:
        stamp_s = result.stamp_ns * 1e-9
        start[:] = start or [stamp_s]
        counts["keyframes"] += result.keyframe is not None
        if stamp_s - start[0] > seconds:
            raise _Done

    try:
        vo_run.run_vo(sequence / "bag", config, on_result=on_result)
    except _Done:
        pass
    run = runs[0]
    scores = evaluate(read_tum(sequence / "groundtruth.tum"), run.trajectory(), "vo", rpe=RpeSpec(1.0, "m"))
    lost = sum(status is TrackingStatus.LOST for status in run.statuses)
    print(f"{sequence.name} {mode} {seconds:g} s: keyframes {counts['keyframes']}, ATE {100 * scores.ate_m.rmse:.2f} cm, "
          f"1-m drift {100 * scores.rpe_m.mean:.2f}%, lost {lost}")


if __name__ == "__main__":
    main()
