"""Visual-odometry benchmark: accuracy and speed on generated household sequences and KITTI.

For every seed a household sequence with RGB-D and a 0.1 m stereo pair is generated (cached),
then the odometry runs in each mode next to a frame-to-frame PnP baseline (the same front end
with a keyframe every frame and no window BA: what the window BA buys). Answers first: drift
(RPE translation over 1 m segments, % of distance, KITTI-style), ATE RMSE (SE(3)-aligned), lost
frames; then per-frame tracking p95, window BA p95, real-time factor. OpenCV's own RGB-D
odometry (``cv2.rgbd``) is not in the installed OpenCV (5.0, no contrib), so it is not run.

    OPENBLAS_NUM_THREADS=1 python bench/bench_vo.py --seeds 10 --duration 60      # the issue's run
    OPENBLAS_NUM_THREADS=1 python bench/bench_vo.py --seeds 2 --duration 10 --image-scale 0.5 --speed-duration 0  # quick
    # a loaded machine: the hardest seeds first, the window-BA odometry only, results after every seed
    OPENBLAS_NUM_THREADS=1 python bench/bench_vo.py --duration 60 --image-scale 0.5 --seed-order 18 16 --methods vo --speed-duration 0
    # an option changed (the household and speed runs): --set keyframes.min_tracked_ratio=0.8

Writes ``results/vo/summary.json`` and ``results/vo/summary.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from mp_slam_ros.config import load_yaml, with_updates
from mp_slam_ros.eval.metrics import RpeSpec, evaluate
from mp_slam_ros.io.kitti import read_kitti, write_kitti_bag
from mp_slam_ros.io.tum import read_tum
from mp_slam_ros.pipelines.vo_config import VOConfig
from mp_slam_ros.pipelines.vo_run import run_vo
from mp_slam_ros.presets import VO_NODE, load_node_configs
from mp_slam_ros.sim.config import SequenceConfig
from mp_slam_ros.sim.sequence import generate_sequence

ROOT = Path(__file__).resolve().parents[1]
BASELINE = {"ba.enabled": False, "keyframes.max_interval_s": 0.01}  # frame-to-frame PnP
STEREO_BASELINE_M = 0.1


def sequence(cache: Path, seed: int, duration_s: float, image_scale: float) -> Path:
    """The generated sequence of ``seed`` (rendered once into ``cache``)."""
    out = cache / f"seed{seed}_{duration_s:g}s_{image_scale:g}"
    if not (out / "groundtruth.tum").exists():
        base = SequenceConfig()
        cfg = replace(base, seed=seed, duration_s=duration_s,
                      camera=replace(base.camera, image_scale=image_scale, stereo_baseline_m=STEREO_BASELINE_M))
        generate_sequence(cfg, out)
    return out


def measure(bag: Path, truth: Path, config: VOConfig, rpe_m: float) -> dict:
    """Run the odometry over ``bag`` and score it against ``truth``."""
    run = run_vo(bag, config)
    summary = run.summary()
    evaluation = evaluate(read_tum(truth), run.trajectory(), bag.parent.name, rpe=RpeSpec(rpe_m, "m"))
    rpe = evaluation.rpe_m
    return {
        **summary,
        "ate_rmse_m": evaluation.ate_m.rmse,
        "drift_percent": None if rpe is None else 100.0 * rpe.mean / rpe_m,
        "rpe_segment_m": rpe_m,
        "path_m": float(np.sum(np.linalg.norm(np.diff(read_tum(truth).positions_m, axis=0), axis=1))),
    }


def household(args: argparse.Namespace, seed: int) -> list[dict]:
    """One seed x every mode x {window BA, frame-to-frame baseline}."""
    rows = []
    path = sequence(args.cache, seed, args.duration, args.image_scale)
    for mode in args.modes:
        for method, updates in (("vo", {}), ("f2f_pnp", BASELINE)):
            if method not in args.methods:
                continue
            config = with_updates(VOConfig(), {**args.set, "mode": mode, "ba.synchronous": args.synchronous, **updates})
            row = {"seed": seed, "mode": mode, "method": method, **measure(path / "bag", path / "groundtruth.tum", config, 1.0)}
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("seed", "mode", "method", "lost", "ate_rmse_m", "drift_percent", "real_time_factor")}), flush=True)
    return rows


def speed(args: argparse.Namespace) -> list[dict]:
    """640x480 RGB-D and stereo at 30 Hz with the BA in its worker thread (how the node runs),
    with the household robot preset of the mode (``config/household_<mode>.yaml``)."""
    if args.speed_duration <= 0:
        return []
    path = sequence(args.cache, args.speed_seed, args.speed_duration, 1.0)
    rows = []
    for mode in args.modes:
        preset = next(c for c in load_node_configs(ROOT / "config" / f"household_{mode}.yaml", VO_NODE)
                      if isinstance(c, VOConfig))
        config = with_updates(preset, args.set)
        row = {"seed": args.speed_seed, "mode": mode, **measure(path / "bag", path / "groundtruth.tum", config, 1.0)}
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("mode", "lost", "tracking_ms", "ba_ms", "real_time_factor")}), flush=True)
    return rows


def kitti(args: argparse.Namespace) -> list[dict]:
    """The KITTI stereo excerpt (imported once), with the KITTI preset and ``--set``; drift over 1 m and 10 m."""
    if not args.kitti.is_dir():
        print(f"skipping KITTI: {args.kitti} absent", file=sys.stderr)
        return []
    out = args.cache / "kitti_excerpt"
    if not (out / "bag").exists():
        write_kitti_bag(read_kitti(args.kitti), out)
    preset = load_yaml(ROOT / "config" / "kitti_stereo.yaml", VOConfig)
    rows = []
    for method, updates in (("vo", {}), ("f2f_pnp", BASELINE)):
        if method not in args.methods:
            continue
        updates = {**args.set, **updates}
        for segment in (1.0, 10.0):
            row = {"sequence": "kitti_excerpt", "method": method,
                   **measure(out / "bag", out / "groundtruth.tum", with_updates(preset, updates), segment)}
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("sequence", "method", "lost", "ate_rmse_m", "drift_percent", "rpe_segment_m")}), flush=True)
    return rows


def aggregate(rows: list[dict]) -> list[dict]:
    """Per mode x method: median/max drift, median ATE, lost total, worst timing p95, min RTF."""
    table = []
    for mode in sorted({r["mode"] for r in rows}):
        for method in ("vo", "f2f_pnp"):
            group = [r for r in rows if r["mode"] == mode and r["method"] == method]
            if not group:
                continue
            drift = [r["drift_percent"] for r in group if r["drift_percent"] is not None]
            table.append({
                "mode": mode, "method": method, "sequences": len(group),
                "drift_percent_median": float(np.median(drift)) if drift else None,
                "drift_percent_max": float(np.max(drift)) if drift else None,
                "ate_rmse_m_median": float(np.median([r["ate_rmse_m"] for r in group])),
                "lost_total": int(sum(r["lost"] for r in group)),
                "tracking_p95_ms_max": max(r["tracking_ms"]["p95"] for r in group),
                "ba_p95_ms_max": max((r["ba_ms"] or {"p95": 0.0})["p95"] for r in group),
                "real_time_factor_min": min(r["real_time_factor"] for r in group),
            })
    return table


def markdown(table: list[dict], speed_rows: list[dict], kitti_rows: list[dict], args: argparse.Namespace, seeds_done: list[int]) -> str:
    """The summary table in Markdown."""
    lines = [
        f"# VO benchmark ({max((r['sequences'] for r in table), default=0)} of {args.seeds} seeds x {args.duration:g} s, image scale {args.image_scale:g}, "
        f"BA {'synchronous' if args.synchronous else 'in a worker thread'})", "",
        f"Seeds: {', '.join(map(str, seeds_done)) or 'none yet'}.", "",
        "| mode | method | seqs | drift % median | drift % max | ATE RMSE m median | lost | tracking p95 ms | BA p95 ms | RTF min |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    for r in table:
        lines.append(
            f"| {r['mode']} | {r['method']} | {r['sequences']} | {fmt(r['drift_percent_median'], '.2f')} | "
            f"{fmt(r['drift_percent_max'], '.2f')} | {r['ate_rmse_m_median']:.3f} | {r['lost_total']} | "
            f"{r['tracking_p95_ms_max']:.1f} | {r['ba_p95_ms_max']:.1f} | {r['real_time_factor_min']:.2f} |"
        )
    if speed_rows:
        lines += ["", f"Speed, 640x480 at 30 Hz, household presets (config/household_<mode>.yaml), BA in the worker thread (seed {args.speed_seed}, {args.speed_duration:g} s):", "",
                  "| mode | frames | lost | drift % | ATE RMSE m | tracking p50 / p95 ms | BA p50 / p95 ms | BA solves | RTF |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in speed_rows:
            ba = r["ba_ms"] or {"p50": 0.0, "p95": 0.0}
            lines.append(f"| {r['mode']} | {r['frames']} | {r['lost']} | {fmt(r['drift_percent'], '.2f')} | {r['ate_rmse_m']:.3f} | "
                         f"{r['tracking_ms']['p50']:.1f} / {r['tracking_ms']['p95']:.1f} | {ba['p50']:.1f} / {ba['p95']:.1f} | "
                         f"{r['ba_solves']} | {r['real_time_factor']:.2f} |")
    if kitti_rows:
        lines += ["", "KITTI excerpt (stereo, 51 frames, ~60 m):", "",
                  "| method | segment m | drift % | ATE RMSE m | lost | tracking p95 ms | BA p95 ms |", "|---|---|---|---|---|---|---|"]
        for r in kitti_rows:
            lines.append(f"| {r['method']} | {r['rpe_segment_m']:g} | {fmt(r['drift_percent'], '.2f')} | {r['ate_rmse_m']:.3f} | "
                         f"{r['lost']} | {r['tracking_ms']['p95']:.1f} | {(r['ba_ms'] or {'p95': 0.0})['p95']:.1f} |")
    lines += ["", "cv2.rgbd (OpenCV RGB-D odometry): not available in the installed OpenCV "
              f"{cv2.__version__} (no contrib modules); the frame-to-frame PnP row is the side-by-side baseline."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=10)
    parser.add_argument("--seed-order", type=int, nargs="+", default=[],
                        help="run these of the seeds first (e.g. the hardest: a run cut short still has them)")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--image-scale", type=float, default=1.0)
    parser.add_argument("--modes", nargs="+", default=["rgbd", "stereo"])
    parser.add_argument("--methods", nargs="+", default=["vo", "f2f_pnp"], choices=["vo", "f2f_pnp"],
                        help="the window-BA odometry and/or the frame-to-frame PnP baseline")
    parser.add_argument("--synchronous", action="store_true", help="BA before the next frame (deterministic)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="VO options of every run (e.g. keyframes.min_tracked_ratio=0.8; KITTI: on top of its preset)")
    parser.add_argument("--speed-seed", type=int, default=2, help="seed of the 640x480 speed run")
    parser.add_argument("--speed-duration", type=float, default=20.0, help="length of the speed run (0: none)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mp_slam_bench_vo"))
    parser.add_argument("--kitti", type=Path, default=ROOT.parent / "shared" / "data" / "kitti_stereo_excerpt")
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "vo")
    args = parser.parse_args()
    args.set = dict(item.split("=", 1) for item in args.set)
    args.cache.mkdir(parents=True, exist_ok=True)
    speed_rows = speed(args)
    kitti_rows = kitti(args)
    rows: list[dict] = []
    write(args, rows, speed_rows, kitti_rows)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    for seed in sorted(seeds, key=lambda s: (s not in args.seed_order, args.seed_order.index(s) if s in args.seed_order else 0, s)):
        rows += household(args, seed)
        write(args, rows, speed_rows, kitti_rows)  # after every seed: a long run leaves partial results
    print(markdown(aggregate(rows), speed_rows, kitti_rows, args, _seeds(rows)))


def write(args: argparse.Namespace, rows: list[dict], speed_rows: list[dict], kitti_rows: list[dict]) -> None:
    """``summary.json`` (every run) and ``summary.md`` (the tables) in ``args.output``."""
    args.output.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    meta = {"commit": commit, "python": platform.python_version(), "opencv": cv2.__version__,
            "load_average_1_5_15min": os.getloadavg(), "cpu_count": os.cpu_count(),
            "cv2_rgbd_available": hasattr(cv2, "rgbd"), "seeds_done": _seeds(rows),
            "args": {k: str(v) for k, v in vars(args).items()}}
    table = aggregate(rows)
    (args.output / "summary.json").write_text(json.dumps({"meta": meta, "table": table, "runs": rows, "speed": speed_rows, "kitti": kitti_rows}, indent=2) + "\n")
    (args.output / "summary.md").write_text(markdown(table, speed_rows, kitti_rows, args, _seeds(rows)))


def _seeds(rows: list[dict]) -> list[int]:
    """The seeds of ``rows`` in the order they ran."""
    return list(dict.fromkeys(r["seed"] for r in rows))


if __name__ == "__main__":
    main()
