"""Drift of the VO alone in two sets of runs kept by ``bench/bench_loop_closure.py --runs``: RPE
(translation, % of the segment) over 1 m and 10 m and ATE RMSE, run by run, then the median change.

    PYTHONPATH=. .venv/bin/python results/loop_closure/depth_fusion/vo_drift.py CACHE BEFORE_RUNS AFTER_RUNS RUN...

RUN is a kept run's name (``house-s2-180s-x1-stereo-stereo``: the sequence in CACHE, then the mode).
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

from mp_slam_ros.eval.metrics import RpeSpec, evaluate
from mp_slam_ros.io.tum import read_tum

SEGMENTS_M = (1.0, 10.0)


def drift(run_path: Path, groundtruth: Path) -> list[float]:
    """RPE over each of :data:`SEGMENTS_M` (% of the segment) and ATE RMSE (cm) of a kept run's VO."""
    kept = pickle.loads(run_path.read_bytes())  # written by the bench: a trusted local cache
    trajectory, truth = kept["vo"].trajectory(), read_tum(groundtruth)
    values = []
    for segment_m in SEGMENTS_M:
        evaluation = evaluate(truth, trajectory, run_path.stem, rpe=RpeSpec(segment_m, "m"))
        values.append(100.0 * evaluation.rpe_m.mean / segment_m)
    return values + [100.0 * evaluation.ate_m.rmse]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cache", type=Path)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    pairs = []
    for name in args.runs:
        groundtruth = args.cache / name.rsplit("-", 1)[0] / "groundtruth.tum"
        b, a = drift(args.before / f"{name}.pkl", groundtruth), drift(args.after / f"{name}.pkl", groundtruth)
        pairs.append((b, a))
        print(f"{name:34s} drift 1 m {b[0]:.2f} -> {a[0]:.2f}%  10 m {b[1]:.2f} -> {a[1]:.2f}%  ATE {b[2]:.2f} -> {a[2]:.2f} cm")
    for i, segment_m in enumerate(SEGMENTS_M):
        values = np.array([[b[i], a[i]] for b, a in pairs])
        change = values[:, 1] / values[:, 0] - 1.0
        print(f"{segment_m:g} m: median {np.median(values[:, 0]):.2f} -> {np.median(values[:, 1]):.2f}%, max {values[:, 0].max():.2f} -> "
              f"{values[:, 1].max():.2f}%, median change {100 * np.median(change):+.1f}%, better on {int((change < 0).sum())} of {len(change)}")


if __name__ == "__main__":
    main()
