"""Precision benchmark of the visual odometry: ATE distribution per BA precision mode.

For every seed a short generated household RGB-D sequence is rendered (cached), then the
odometry runs with a synchronous window BA (deterministic) once per precision mode and is scored
by ATE RMSE (SE(3)-aligned) against ground truth. The linear solver is ``iterative_schur`` by
default: the VO's default ``schur`` solves the reduced system as dense float64 Cholesky, so there
the modes differ only in the residual/Jacobian dtype, and ``mixed`` equals ``fp32`` (the recipe's
fp16 Jacobian products exist only in ``iterative_schur`` and ``cgnr``).

Modes: ``fp64``, ``fp32``, ``mixed`` and ``fp16`` as the VO configures them (``ba.precision``; an
fp16 step that fails is redone one rung up, the solver's escalation), and ``fp16_naive``: fp16
with escalation off (``ba.escalate: false``). :func:`recorded_ba` records every window solve's
escalations, fallbacks to the direct solver, termination
and final relative gradient (evaluated in float64: how far from a stationary point the solve
stopped, comparable across modes) are recorded per run.

    OPENBLAS_NUM_THREADS=1 python bench/bench_vo_precision.py --seeds 100 --duration 4   # the issue's run
    OPENBLAS_NUM_THREADS=1 python bench/bench_vo_precision.py --seeds 2 --duration 2     # quick

Writes ``summary.json``, ``summary.md`` and ``ate_cdf.png`` to ``results/vo_precision``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from vo_sequences import rgbd_sequence  # noqa: E402  (bench/ is the script's folder)

from mp_slam_ros.config import with_updates  # noqa: E402
from mp_slam_ros.errors import MpSlamError  # noqa: E402
from mp_slam_ros.eval.metrics import evaluate  # noqa: E402
from mp_slam_ros.io.tum import read_tum  # noqa: E402
from mp_slam_ros.pipelines import window  # noqa: E402
from mp_slam_ros.pipelines.vo_config import VOConfig  # noqa: E402
from mp_slam_ros.pipelines.vo_run import run_vo  # noqa: E402
from mp_slam_ros.solvers.ba import BAProblem, BAState, BundleAdjustment  # noqa: E402
from mp_slam_ros.solvers.summary import Summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: mode name -> (ba.precision, escalation on)
MODES: dict[str, tuple[str, bool]] = {
    "fp64": ("fp64", True), "fp32": ("fp32", True), "mixed": ("mixed", True),
    "fp16": ("fp16", True), "fp16_naive": ("fp16", False),
}
#: the issue's four modes (the default run; ``fp16`` escalates on every window solve: slower, = mixed)
ISSUE_MODES = ["fp64", "fp32", "mixed", "fp16_naive"]
#: the issue's bound: mixed within 5% of fp64 at the median and the p95 of ATE
RATIO_BOUND = 1.05


def relative_gradient(problem: BAProblem, state: BAState) -> float:
    """How far ``state`` is from a stationary point of ``problem``, evaluated in float64 whatever
    the mode (so comparable across modes): ``max_j |(J^T r)_j| / (||J_j|| ||r||)``, the largest
    cosine between the (robustly reweighted) residual and a Jacobian column; 0 at a stationary point."""
    linearization = BundleAdjustment(problem).linearize(state, np.dtype(np.float64))
    jacobian, residual = linearization.jacobian, np.asarray(linearization.residual, dtype=np.float64)
    column_norms = np.sqrt(np.asarray(jacobian.multiply(jacobian).sum(axis=0)).ravel())
    gradient = jacobian.T @ residual
    norm = float(np.linalg.norm(residual))
    if norm == 0.0:
        return 0.0
    return float(np.max(np.abs(gradient) / np.where(column_norms > 0, column_norms, 1.0)) / norm)


@contextlib.contextmanager
def recorded_ba() -> Iterator[list[tuple[Summary, float]]]:
    """Within the block, each window BA solve appends its summary and :func:`relative_gradient`
    at its final state to the yielded list (``solve_window`` looks ``bundle_adjust`` up in its
    module at call time)."""
    solves: list[tuple[Summary, float]] = []
    adjust = window.bundle_adjust

    def recorded(problem: BAProblem, *args: object, **kwargs: object):  # noqa: ANN202
        result = adjust(problem, *args, **kwargs)
        solves.append((result.summary, relative_gradient(problem, result.state)))
        return result

    window.bundle_adjust = recorded
    try:
        yield solves
    finally:
        window.bundle_adjust = adjust


def run_mode(path: Path, mode: str, solver: str) -> dict:
    """One VO run over the sequence at ``path`` in ``mode``; ATE RMSE is inf when the run fails
    (solver error or no trajectory to align), with the reason."""
    precision, escalate = MODES[mode]
    config = with_updates(VOConfig(), {"ba.synchronous": True, "ba.precision": precision, "ba.solver": solver, "ba.escalate": escalate})
    row: dict = {"mode": mode, "precision": precision, "escalate": escalate}
    with recorded_ba() as solves:
        try:
            run = run_vo(path / "bag", config)
            evaluation = evaluate(read_tum(path / "groundtruth.tum"), run.trajectory(), path.name)
            row |= {"ate_rmse_m": evaluation.ate_m.rmse, "lost": run.summary()["lost"], "frames": len(run.statuses), "error": None}
        except (MpSlamError, ArithmeticError, np.linalg.LinAlgError) as error:
            row |= {"ate_rmse_m": math.inf, "lost": None, "frames": None, "error": f"{type(error).__name__}: {error}"}
    if not math.isfinite(row["ate_rmse_m"]) and row["error"] is None:
        row["error"] = "non-finite ATE"
    summaries = [summary for summary, _ in solves]
    row |= {
        "ba_solves": len(summaries),
        "ba_escalated": sum(bool(s.escalations) for s in summaries),
        "ba_direct_fallbacks": sum(bool(s.linear_solver_changes) for s in summaries),
        "ba_not_converged": sum(not s.converged for s in summaries),
        "ba_nonfinite_cost": sum(not math.isfinite(s.final_cost) for s in summaries),
        "precision_used": sorted({s.precision_used.value for s in summaries}),
        "ba_relative_gradient": [gradient for _, gradient in solves],
        "ba_terminations": dict(Counter(s.termination.value for s in summaries)),
    }
    return row


def statistics(rows: list[dict], modes: list[str]) -> dict:
    """Per mode: sequences, failures (ATE not finite), ATE median/p95/max over all sequences
    (failures count as inf), BA solve counts; and mixed/fp64 ratios at the median and p95."""
    table = {}
    for mode in modes:
        group = [r for r in rows if r["mode"] == mode]
        if not group:
            continue
        ate = np.array([r["ate_rmse_m"] for r in group], dtype=float)
        median, p95, top = (float(np.percentile(ate, q, method="inverted_cdf")) for q in (50, 95, 100))
        table[mode] = {
            "sequences": len(group), "failures": int(np.sum(~np.isfinite(ate))),
            "ate_median_m": median, "ate_p95_m": p95, "ate_max_m": top,
            "lost_frames": int(sum(r["lost"] or 0 for r in group)),
            **_gradient_percentiles([g for r in group for g in r.get("ba_relative_gradient", [])]),  # absent: older runs
            "ba_terminations": dict(sum((Counter(r["ba_terminations"]) for r in group), Counter())),
            **{key: int(sum(r[key] for r in group)) for key in
               ("ba_solves", "ba_escalated", "ba_direct_fallbacks", "ba_not_converged", "ba_nonfinite_cost")},
        }
    per_seed = {mode: _per_seed_ratio(rows, mode) for mode in table if mode != "fp64" and "fp64" in table}
    ratios = {}
    if "mixed" in table and "fp64" in table:
        for key in ("ate_median_m", "ate_p95_m"):
            ratios[key] = table["mixed"][key] / table["fp64"][key]
    return {"modes": table, "mixed_over_fp64": ratios, "per_seed_ratio_to_fp64": per_seed,
            "mixed_within_bound": bool(ratios) and all(v <= RATIO_BOUND for v in ratios.values())}


def _per_seed_ratio(rows: list[dict], mode: str) -> dict[str, float]:
    """Percentiles 5/50/95 over seeds of ATE(mode) / ATE(fp64) on the same sequence: how far a
    mode moves one trajectory (fp32's spread is the reference for what any change of rounding does)."""
    fp64 = {r["seed"]: r["ate_rmse_m"] for r in rows if r["mode"] == "fp64"}
    ratio = [r["ate_rmse_m"] / fp64[r["seed"]] for r in rows if r["mode"] == mode and fp64.get(r["seed"], 0) > 0]
    if not ratio:
        return {}
    p5, p50, p95 = np.percentile(ratio, [5, 50, 95])
    return {"p5": float(p5), "p50": float(p50), "p95": float(p95), "seeds": len(ratio)}


def _gradient_percentiles(values: list[float]) -> dict[str, float]:
    """Median and p95 of the window solves' final float64 relative gradients (nan: no solve)."""
    if not values:
        return {"ba_relative_gradient_median": math.nan, "ba_relative_gradient_p95": math.nan}
    median, p95 = np.percentile(values, [50, 95])
    return {"ba_relative_gradient_median": float(median), "ba_relative_gradient_p95": float(p95)}


STYLES = {"fp64": ("k", "-"), "fp32": ("tab:blue", "--"), "mixed": ("tab:green", "-"),
          "fp16": ("tab:orange", ":"), "fp16_naive": ("tab:red", "-")}


def _step_cdf(ax: plt.Axes, values: np.ndarray, mode: str, label: str) -> None:
    """One empirical CDF over ``values`` (non-finite ones never reached: the curve stays below 1)."""
    finite = np.sort(values[np.isfinite(values)])
    colour, line = STYLES.get(mode, (None, "-"))
    ax.step(finite, np.arange(1, finite.size + 1) / values.size, where="post", color=colour, ls=line, label=label)


def plot_cdf(rows: list[dict], modes: list[str], path: Path, title: str) -> None:
    """Empirical CDF of ATE RMSE (mm, log x) per mode, and when recorded, of the window solves'
    final float64 relative gradient (where naive fp16 shows: its solves stop far from stationary)."""
    gradients = {m: np.array([g for r in rows if r["mode"] == m for g in r.get("ba_relative_gradient", [])]) for m in modes}
    panels = 2 if any(v.size for v in gradients.values()) else 1
    fig, axes = plt.subplots(1, panels, figsize=(7.5 * panels, 4.8), squeeze=False)
    ax = axes[0, 0]
    for mode in modes:
        ate = np.array([r["ate_rmse_m"] for r in rows if r["mode"] == mode], dtype=float)
        if ate.size:
            failed = int(np.sum(~np.isfinite(ate)))
            _step_cdf(ax, 1e3 * ate, mode, f"{mode} ({failed} failed)" if failed else mode)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("ATE RMSE (mm, SE(3)-aligned)")
    ax.set_ylabel("fraction of sequences")
    ax.set_title(title, fontsize=10)
    if panels == 2:
        ax = axes[0, 1]
        for mode, values in gradients.items():
            if values.size:
                _step_cdf(ax, values, mode, mode)
        ax.set_xscale("log")
        ax.set_xlabel("final relative gradient of a window solve (float64; 0 = stationary)")
        ax.set_ylabel("fraction of window solves")
        ax.set_title(f"Where the window solves stopped ({sum(v.size for v in gradients.values())} solves)", fontsize=10)
    for ax in axes.ravel():
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(stats: dict, meta: dict) -> str:
    """The summary: per-mode ATE table, the mixed/fp64 ratios against the bound, the command."""
    args = meta["args"]
    lines = [f"# VO precision: ATE per BA precision mode ({meta['seeds_done']} of {args['seeds']} seeds "
             f"x {args['duration']} s, RGB-D, image scale {args['image_scale']}, solver {args['solver']}, synchronous BA)", "",
             "| mode | sequences | failed | ATE median mm | ATE p95 mm | ATE max mm | lost frames | BA solves | escalated "
             "| direct fallback | not converged | final relative gradient (fp64) median / p95 |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for mode, m in stats["modes"].items():
        lines.append(f"| {mode} | {m['sequences']} | {m['failures']} | {1e3 * m['ate_median_m']:.2f} | {1e3 * m['ate_p95_m']:.2f} | "
                     f"{1e3 * m['ate_max_m']:.2f} | {m['lost_frames']} | {m['ba_solves']} | {m['ba_escalated']} | "
                     f"{m['ba_direct_fallbacks']} | {m['ba_not_converged']} | "
                     f"{m['ba_relative_gradient_median']:.1e} / {m['ba_relative_gradient_p95']:.1e} |")
    lines += ["", "Window-solve terminations: " + "; ".join(
        f"{mode}: " + ", ".join(f"{k} {v}" for k, v in sorted(m["ba_terminations"].items())) for mode, m in stats["modes"].items())]
    ratios = stats["mixed_over_fp64"]
    if ratios:
        verdict = "within" if stats["mixed_within_bound"] else "NOT within"
        lines += ["", f"mixed / fp64: median {ratios['ate_median_m']:.3f}, p95 {ratios['ate_p95_m']:.3f} "
                  f"({verdict} the issue's {RATIO_BOUND:g} bound)."]
    if stats["per_seed_ratio_to_fp64"]:
        lines += ["", "Per sequence, ATE(mode) / ATE(fp64) on the same seed, percentiles 5 / 50 / 95 over seeds "
                  "(fp32: what any change of rounding does to a trajectory): " + "; ".join(
                      f"{mode} {q['p5']:.2f} / {q['p50']:.2f} / {q['p95']:.2f}"
                      for mode, q in stats["per_seed_ratio_to_fp64"].items() if q) + "."]
    lines += ["", "`fp16` is fp16 as the VO runs it (a failing step escalates: fp16 -> mixed -> fp32 -> fp64); "
              "`fp16_naive` is fp16 with escalation off "
              "(`ba.escalate: false`). Failed = the run raised or left nothing to align (ATE inf).",
              "", f"Figure: `ate_cdf.png` (ATE CDF; right, when recorded: CDF of the window solves' final relative gradient). Commit {meta['commit']}, Python {meta['python']}, {meta['wall_s']:.0f} s wall.",
              "", "```", *[m["command"] for m in meta.get("shards", [])], meta["command"], "```"]
    return "\n".join(lines) + "\n"


def merged_rows(paths: list[Path]) -> tuple[list[dict], list[dict]]:
    """The runs of several ``summary.json`` (shards of one run over disjoint seeds; a (seed,
    mode) present twice is kept once) and their meta."""
    rows, metas, seen = [], [], set()
    for path in paths:
        report = json.loads(path.read_text())
        metas.append(report["meta"])
        for row in report["runs"]:
            if (row["seed"], row["mode"]) not in seen:
                seen.add((row["seed"], row["mode"]))
                rows.append(row)
    return sorted(rows, key=lambda r: r["seed"]), metas


def write(args: argparse.Namespace, rows: list[dict], started: float, shards: list[dict] | None = None) -> dict:
    """``summary.json``, ``summary.md`` and ``ate_cdf.png`` in ``args.output``; returns the
    statistics. ``shards``: the meta of the runs whose rows were merged (``--merge``)."""
    args.output.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.split("\n")
    meta = {"commit": commit, "uncommitted_changes": [line[3:] for line in dirty if line.strip()], "python": platform.python_version(), "load_average_1_5_15min": os.getloadavg(),
            "seeds_done": len({r["seed"] for r in rows}), "wall_s": time.perf_counter() - started,
            "command": "OPENBLAS_NUM_THREADS=1 python " + shlex.join(["bench/bench_vo_precision.py", *sys.argv[1:]]),
            "args": {k: str(v) for k, v in vars(args).items()}}
    if shards:
        meta |= {"shards": shards, "wall_s": sum(m["wall_s"] for m in shards)}
    stats = statistics(rows, args.modes)
    (args.output / "summary.json").write_text(json.dumps({"meta": meta, "statistics": stats, "runs": rows}, indent=2) + "\n")
    (args.output / "summary.md").write_text(markdown(stats, meta))
    plot_cdf(rows, args.modes, args.output / "ate_cdf.png",
             f"VO ATE per BA precision: {meta['seeds_done']} generated RGB-D sequences x {args.duration:g} s, {args.solver}")
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=100)
    parser.add_argument("--duration", type=float, default=4.0, help="sequence length (s)")
    parser.add_argument("--image-scale", type=float, default=0.5)
    parser.add_argument("--solver", default="iterative_schur", help="ba.solver of every mode")
    parser.add_argument("--modes", nargs="+", default=ISSUE_MODES, choices=list(MODES))
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mp_slam_bench_vo_precision"))
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "vo_precision")
    parser.add_argument("--merge", type=Path, nargs="+", help="no runs: combine these summary.json (shards run in parallel)")
    args = parser.parse_args()
    started, rows = time.perf_counter(), []
    if args.merge:
        rows, shards = merged_rows(args.merge)
        print(json.dumps(write(args, rows, started, shards), indent=2))
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        path = rgbd_sequence(args.cache, seed, args.duration, args.image_scale)
        for mode in args.modes:
            row = {"seed": seed, **run_mode(path, mode, args.solver)}
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("seed", "mode", "ate_rmse_m", "lost", "ba_escalated", "error")}), flush=True)
        stats = write(args, rows, started)  # after every seed: a long run leaves partial results
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
