"""``mp-slam eval``: ATE/RPE of TUM trajectories against ground truth with evo; table, JSON, plots."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.eval.metrics import STATISTICS, ErrorStats, Evaluation, RpeSpec, evaluate
from mp_slam_ros.io.tum import read_tum


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mp-slam eval``."""
    parser.add_argument("--gt", required=True, type=Path, help="ground-truth TUM file")
    parser.add_argument("--est", required=True, type=Path, nargs="+", action="extend", help="estimated TUM file(s); repeatable")
    parser.add_argument("-o", "--output", type=Path, default=Path("eval_results"), help="folder for results.json and PNG plots")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument("--max-time-diff", type=float, default=0.01, help="max timestamp difference to match poses (s)")
    parser.add_argument("--sim3", action="store_true", help="align with scale (Sim(3)), for monocular estimates")
    parser.add_argument("--rpe-delta", type=float, default=1.0, help="RPE pose-pair distance (default 1.0)")
    parser.add_argument("--rpe-unit", choices=("m", "frames"), default="m", help="unit of --rpe-delta")


def _names(paths: Sequence[Path]) -> list[str]:
    """Short unique labels: file names, or parent/name when names repeat."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(Path(p.parent.name) / p.name) if names.count(p.name) > 1 else p.name for p in paths]


def _table(evaluations: Sequence[Evaluation]) -> Table:
    table = Table(title="trajectory errors (evo)")
    table.add_column("estimate")
    table.add_column("metric")
    table.add_column("n", justify="right")
    for stat in STATISTICS:
        table.add_column(stat, justify="right")
    for evaluation in evaluations:
        rows: list[tuple[str, ErrorStats | None]] = [
            ("ATE (m)", evaluation.ate_m), ("RPE trans (m)", evaluation.rpe_m), ("RPE rot (deg)", evaluation.rpe_deg)
        ]
        for metric, stats in rows:
            cells = ["-"] * len(STATISTICS) if stats is None else [f"{getattr(stats, s):.4f}" for s in STATISTICS]
            table.add_row(evaluation.name, metric, "-" if stats is None else str(stats.n), *cells)
    return table


def run(args: argparse.Namespace) -> int:
    """Evaluate every ``--est`` against ``--gt``; print the table, write results.json and plots."""
    if args.rpe_delta <= 0 or (args.rpe_unit == "frames" and not float(args.rpe_delta).is_integer()):
        raise ConfigError("rpe_delta", args.rpe_delta, "must be > 0 (an integer for frames)")
    ground_truth = read_tum(args.gt)
    spec = RpeSpec(args.rpe_delta, args.rpe_unit)
    evaluations = [
        evaluate(ground_truth, read_tum(path), name, max_time_diff_s=args.max_time_diff, correct_scale=args.sim3, rpe=spec)
        for path, name in zip(args.est, _names(args.est))
    ]
    console = Console() if sys.stdout.isatty() else Console(width=160)  # no truncated columns in logs
    console.print(_table(evaluations))
    args.output.mkdir(parents=True, exist_ok=True)
    results = {
        "ground_truth": str(args.gt),
        "alignment": "sim3" if args.sim3 else "se3",
        "rpe": asdict(spec),
        "estimates": [
            {
                "name": e.name,
                "ate_m": asdict(e.ate_m),
                "rpe_m": None if e.rpe_m is None else asdict(e.rpe_m),
                "rpe_deg": None if e.rpe_deg is None else asdict(e.rpe_deg),
                "scale": e.scale,
                "T_ref_est": e.T_ref_est.tolist(),
            }
            for e in evaluations
        ],
    }
    (args.output / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    written = [args.output / "results.json"]
    if not args.no_plots:
        from mp_slam_ros.eval.plots import write_plots

        written += write_plots(evaluations, args.output)
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
