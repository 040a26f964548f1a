"""The VO's per-frame motion prior with wheel odometry, across seeds (the lead of stop 28's note).

On the demo's settings (household RGB-D, 40 s, 320x240 at 15 Hz, ``config/household_rgbd.yaml``,
the bag's wheel odometry as the motion prior, synchronous BA: deterministic), the VO's ATE
(SE(3)-aligned, mean and max) and lost frames per seed for the preset and for tighter priors.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python results/vo/wheel_prior_320/sweep.py [--seeds 1 2 ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mp_slam_ros.cli.demo import DemoSequence
from mp_slam_ros.config import with_updates
from mp_slam_ros.eval.metrics import evaluate
from mp_slam_ros.io.tum import read_tum
from mp_slam_ros.pipelines.vo import TrackingStatus
from mp_slam_ros.pipelines.vo_config import VOConfig
from mp_slam_ros.pipelines.vo_run import run_vo
from mp_slam_ros.presets import VO_NODE, load_node_configs
from mp_slam_ros.sim.sequence import generate_sequence

ROOT = Path(__file__).resolve().parents[3]
VARIANTS = {
    "preset (1 cm, 0.5 deg)": {},
    "prior 3 mm": {"tracking.prior_translation_m": 0.003},
    "prior 2 mm, 0.1 deg": {"tracking.prior_translation_m": 0.002, "tracking.prior_rotation_deg": 0.1},
}


def main() -> None:
    """Print one row per seed and variant, then the means."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mp_slam_wheel_prior"))
    args = parser.parse_args()
    preset = next(c for c in load_node_configs(ROOT / "config" / "household_rgbd.yaml", VO_NODE) if isinstance(c, VOConfig))
    rows: dict[str, list[tuple[float, float, int]]] = {name: [] for name in VARIANTS}
    print(f"{'seed':>4s}  {'variant':24s} {'ATE mean cm':>11s} {'ATE max cm':>10s} {'lost':>5s}", flush=True)
    for seed in args.seeds:
        sequence = DemoSequence(duration_s=40.0, image_scale=0.5, rate_hz=15.0, seed=seed, loop_min_age_s=10.0)
        folder = args.cache / sequence.key()
        if not (folder / "bag").exists():
            generate_sequence(sequence.config(), folder)
        truth = read_tum(folder / "groundtruth.tum")
        for name, updates in VARIANTS.items():
            config = with_updates(preset, {"ba.synchronous": True, **updates})
            run = run_vo(folder / "bag", config, wheel_topic="/odom")
            ate = evaluate(truth, run.trajectory(), name).ate_m
            lost = sum(status is TrackingStatus.LOST for status in run.statuses)
            rows[name].append((ate.mean * 100, ate.max * 100, lost))
            print(f"{seed:4d}  {name:24s} {ate.mean * 100:11.2f} {ate.max * 100:10.2f} {lost:5d}", flush=True)
    for name, values in rows.items():
        means = np.array([v[0] for v in values])
        print(f"mean over {len(values)} seeds  {name:24s} {means.mean():6.2f} cm  (worst seed {means.max():.2f}, "
              f"lost {sum(v[2] for v in values)})")


if __name__ == "__main__":
    main()
