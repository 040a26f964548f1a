"""Memory benchmark of the visual odometry: process RSS over a long offline replay.

One long generated household RGB-D sequence (default 600 s, image scale 0.5, cached) is run
through :func:`~mp_slam_ros.pipelines.vo_run.run_vo` with the default configuration (window BA in
its worker thread, as the node runs it); the resident set size of this process (``VmRSS`` of
``/proc/self/status``) is sampled from the per-frame progress callback. The answer: RSS after the
warm-up (default 60 s of sequence) against RSS at the end, growth in % (the issue's bound: 10%),
and the run's own accuracy (ATE, lost frames) so a replay that lost tracking does not pass as
flat. ``--tracemalloc`` also compares Python allocations (numpy arrays included) between the
warm-up and the end, top lines first: what grows.

    OPENBLAS_NUM_THREADS=1 python bench/bench_vo_memory.py                     # the issue's run (600 s)
    OPENBLAS_NUM_THREADS=1 python bench/bench_vo_memory.py --duration 90 --warm-up 30   # quick

Writes ``summary.json``, ``summary.md`` and ``rss.png`` to ``results/vo_memory``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from vo_sequences import rgbd_sequence  # noqa: E402  (bench/ is the script's folder)

from mp_slam_ros.config import with_updates  # noqa: E402
from mp_slam_ros.eval.metrics import evaluate  # noqa: E402
from mp_slam_ros.io.tum import read_tum  # noqa: E402
from mp_slam_ros.pipelines.vo_config import VOConfig  # noqa: E402
from mp_slam_ros.pipelines.vo_run import run_vo  # noqa: E402
from mp_slam_ros.sim.config import SequenceConfig  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: the issue's bound on RSS growth from the warm-up to the end (%)
GROWTH_BOUND_PERCENT = 10.0


def rss_mib() -> float:
    """Resident set size of this process (MiB), from ``/proc/self/status``."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError("/proc/self/status has no VmRSS line")


@dataclass
class RssSampler:
    """The ``run_vo`` progress callback: RSS every ``every`` frames; when tracing, tracemalloc
    snapshots at frame ``warm_up_frame`` and at the last frame (the bag still open)."""

    every: int
    warm_up_frame: int
    frames: list[int] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    warm_up_snapshot: tracemalloc.Snapshot | None = None
    end_snapshot: tracemalloc.Snapshot | None = None
    started: float = field(default_factory=time.perf_counter)

    def __call__(self, done: int, total: int) -> None:
        if done % self.every == 0 or done == total or done == self.warm_up_frame:
            self.frames.append(done)
            self.rss_mib.append(rss_mib())
            self.wall_s.append(time.perf_counter() - self.started)
            print(json.dumps({"frame": done, "of": total, "rss_mib": round(self.rss_mib[-1], 1),
                              "wall_s": round(self.wall_s[-1], 1)}), flush=True)
        if tracemalloc.is_tracing() and done in (self.warm_up_frame, total):
            snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            if done == total:
                self.end_snapshot = snapshot
            else:
                self.warm_up_snapshot = snapshot

    def rss_at(self, frame: int) -> float:
        """RSS of the first sample at or after ``frame``."""
        return next(r for f, r in zip(self.frames, self.rss_mib) if f >= frame)


def growth(sampler: RssSampler, rate_hz: float, smoothing_s: float = 60.0) -> dict:
    """RSS at the warm-up and at the end, growth %, the peak, the least-squares slope after the
    warm-up (MiB per 100 s of sequence), and the growth between the medians of the samples in
    the ``smoothing_s`` after the warm-up and in the last ``smoothing_s`` (single samples include
    a window solve's transient arrays). Within the bound when both growths are."""
    start, end = sampler.rss_at(sampler.warm_up_frame), sampler.rss_mib[-1]
    span = smoothing_s * rate_hz
    first = [r for f, r in zip(sampler.frames, sampler.rss_mib) if sampler.warm_up_frame <= f < sampler.warm_up_frame + span]
    last = [r for f, r in zip(sampler.frames, sampler.rss_mib) if f > sampler.frames[-1] - span]
    start_median, end_median = float(np.median(first or [start])), float(np.median(last))
    after = [(f / rate_hz, r) for f, r in zip(sampler.frames, sampler.rss_mib) if f >= sampler.warm_up_frame]
    t_s, r_mib = zip(*after)
    mean_t, mean_r = sum(t_s) / len(t_s), sum(r_mib) / len(r_mib)
    var_t = sum((t - mean_t) ** 2 for t in t_s)
    slope = sum((t - mean_t) * (r - mean_r) for t, r in zip(t_s, r_mib)) / var_t if var_t > 0 else 0.0
    return {"rss_warm_up_mib": start, "rss_end_mib": end, "rss_peak_mib": max(sampler.rss_mib),
            "growth_percent": 100.0 * (end - start) / start, "slope_mib_per_100s": 100.0 * slope,
            "smoothing_s": smoothing_s, "rss_warm_up_median_mib": start_median, "rss_end_median_mib": end_median,
            "growth_median_percent": 100.0 * (end_median - start_median) / start_median,
            "within_bound": max(end - start, end_median - start_median) <= GROWTH_BOUND_PERCENT / 100 * min(start, start_median)}


def top_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, limit: int = 15) -> list[dict]:
    """The source lines whose live allocations grew most between two snapshots (largest first)."""
    stats = sorted(after.compare_to(before, "lineno"), key=lambda s: s.size_diff, reverse=True)
    return [{"where": str(s.traceback), "size_diff_kib": s.size_diff / 1024, "count_diff": s.count_diff,
             "size_kib": s.size / 1024} for s in stats[:limit]]


def plot(sampler: RssSampler, rate_hz: float, result: dict, path: Path, title: str) -> None:
    """RSS against sequence time, the warm-up mark and the +10% bound."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot([f / rate_hz for f in sampler.frames], sampler.rss_mib, color="tab:blue", label="RSS")
    ax.axvline(sampler.warm_up_frame / rate_hz, color="grey", ls=":", label="end of warm-up")
    bound = result["rss_warm_up_mib"] * (1 + GROWTH_BOUND_PERCENT / 100)
    ax.axhline(bound, color="tab:red", ls="--", label=f"warm-up RSS +{GROWTH_BOUND_PERCENT:g}%")
    ax.set_xlabel("sequence time (s)")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(0, max(bound, result["rss_peak_mib"]) * 1.1)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(report: dict) -> str:
    """The summary: growth against the bound, the run's accuracy and speed, what grew."""
    g, run, meta = report["rss"], report["run"], report["meta"]
    verdict = "within" if g["within_bound"] else "NOT within"
    lines = [f"# VO memory over a {meta['args']['duration']} s replay (RGB-D, image scale {meta['args']['image_scale']}, "
             f"seed {meta['args']['seed']}, BA {'synchronous' if run['synchronous'] else 'in its worker thread'})", "",
             f"RSS {g['rss_warm_up_mib']:.1f} MiB after the {meta['args']['warm_up']} s warm-up -> {g['rss_end_mib']:.1f} MiB "
             f"at the end: **{g['growth_percent']:+.1f}%** ({verdict} the issue's {GROWTH_BOUND_PERCENT:g}% bound); "
             f"peak {g['rss_peak_mib']:.1f} MiB; slope after the warm-up {g['slope_mib_per_100s']:+.2f} MiB per 100 s. "
             f"Medians of the samples in the {g['smoothing_s']:g} s after the warm-up and in the last {g['smoothing_s']:g} s: "
             f"{g['rss_warm_up_median_mib']:.1f} -> {g['rss_end_median_mib']:.1f} MiB, **{g['growth_median_percent']:+.1f}%**.", "",
             f"The run: {run['frames']} frames, {run['keyframes']} keyframes, {run['lost']} lost, {run['ba_solves']} BA solves, "
             f"ATE RMSE {run['ate_rmse_m']:.3f} m, real-time factor {run['real_time_factor']:.2f} "
             f"(tracemalloc {'on' if meta['tracemalloc'] else 'off'}).", "", "Figure: `rss.png`."]
    if report["top_growth"]:
        lines += ["", "Largest growth of live Python/numpy allocations, warm-up -> end (tracemalloc):", "",
                  "| where | growth KiB | blocks | live KiB |", "|---|---|---|---|"]
        lines += [f"| `{t['where']}` | {t['size_diff_kib']:+.0f} | {t['count_diff']:+d} | {t['size_kib']:.0f} |" for t in report["top_growth"]]
    lines += ["", f"Commit {meta['commit']}, Python {meta['python']}, {meta['wall_s']:.0f} s wall for the replay (rendering the sequence not counted).",
              "", "```", meta["command"], "```"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=600.0, help="sequence length (s)")
    parser.add_argument("--image-scale", type=float, default=0.5)
    parser.add_argument("--warm-up", type=float, default=60.0, help="sequence time whose RSS is the baseline (s)")
    parser.add_argument("--sample-every", type=int, default=150, help="frames between RSS samples")
    parser.add_argument("--synchronous", action="store_true", help="BA before the next frame (default: worker thread)")
    parser.add_argument("--tracemalloc", action="store_true", help="trace allocations (slower; RSS includes the traces)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mp_slam_bench_vo_memory"))
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "vo_memory")
    parser.add_argument("--resummarize", type=Path, help="no run: recompute the growth of this summary.json")
    args = parser.parse_args()
    rate_hz = SequenceConfig().camera.rate_hz
    if args.resummarize:
        resummarize(args.resummarize, rate_hz)
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    path = rgbd_sequence(args.cache, args.seed, args.duration, args.image_scale)
    if args.tracemalloc:
        tracemalloc.start()
    sampler = RssSampler(args.sample_every, int(round(args.warm_up * rate_hz)))
    run = run_vo(path / "bag", with_updates(VOConfig(), {"ba.synchronous": args.synchronous}), sampler)
    evaluation = evaluate(read_tum(path / "groundtruth.tum"), run.trajectory(), path.name)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {
        "meta": {"commit": commit, "python": platform.python_version(), "load_average_1_5_15min": os.getloadavg(),
                 "wall_s": time.perf_counter() - sampler.started, "tracemalloc": args.tracemalloc,
                 "command": "OPENBLAS_NUM_THREADS=1 python " + shlex.join(["bench/bench_vo_memory.py", *sys.argv[1:]]),
                 "args": {k: str(v) for k, v in vars(args).items()}},
        "rss": growth(sampler, rate_hz),
        "run": {**run.summary(), "ate_rmse_m": evaluation.ate_m.rmse, "synchronous": args.synchronous},
        "top_growth": (top_growth(sampler.warm_up_snapshot, sampler.end_snapshot)
                       if sampler.end_snapshot and sampler.warm_up_snapshot else []),
        "samples": {"frame": sampler.frames, "rss_mib": sampler.rss_mib, "wall_s": sampler.wall_s},
    }
    publish(report, sampler, rate_hz, args.output)


def publish(report: dict, sampler: RssSampler, rate_hz: float, output: Path) -> None:
    """``summary.json``, ``summary.md`` and ``rss.png`` in ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
    (output / "summary.md").write_text(markdown(report))
    args = report["meta"]["args"]
    plot(sampler, rate_hz, report["rss"], output / "rss.png",
         f"VO process RSS, {args['duration']} s generated RGB-D replay (seed {args['seed']}, scale {args['image_scale']})")
    print(markdown(report))


def resummarize(path: Path, rate_hz: float) -> None:
    """Recompute the growth of a saved ``summary.json`` (its samples) and rewrite its folder."""
    report = json.loads(path.read_text())
    args = report["meta"]["args"]
    sampler = RssSampler(int(args["sample_every"]), int(round(float(args["warm_up"]) * rate_hz)),
                         report["samples"]["frame"], report["samples"]["rss_mib"], report["samples"]["wall_s"])
    report["rss"] = growth(sampler, rate_hz)
    publish(report, sampler, rate_hz, path.parent)


if __name__ == "__main__":
    main()
