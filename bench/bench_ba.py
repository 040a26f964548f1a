"""Bundle-adjustment benchmark (not a test): precision modes x solvers vs SciPy and GTSAM.

All in one run, on the same generated sliding-window VO problems (mp_slam_ros.sim.ba_windows):

1. timing: RGB-D windows of 10/25/50/100 keyframes (and a monocular 50-keyframe case: the
   seed's 2 rows per observation), every precision mode x solver (and the CGNR
   preconditioners), SciPy least_squares and GTSAM LM; median/p95 solve time, final cost (fp64)
   relative to a tightly converged fp64 Schur reference, iterations. Methods run interleaved per
   window, so machine load hits all of them alike. Answers are checked before times are compared.
2. optimum: >= 200 windows of 50 keyframes in four classes (RGB-D; monocular with 2 fixed
   cameras; monocular without depth and without fixed cameras, Huber; the same in plain least
   squares, cold start, as a BAL file): every method's final cost against the tight Schur
   optimum, the share within 0.1%, the count of converged_* terminations above it (target 0;
   in brackets those that a tight fp64 Schur solve from the claimed state lowers by more than
   0.1%: short of a local minimum, where the rest sit at another minimum of the robust cost), and
   the time against GTSAM on the same windows; twice: with the BA defaults (function tolerance
   1e-4, 30 iterations with depth: what a VO window gets; 1e-6, 100 monocular) and solved to the
   optimum (1e-6, 100 iterations).
3. accuracy: over many 50-keyframe windows, the pose error of every mode against the fp64
   solution (CGNR, as the recipe), with the pixel-noise-induced error (fp64 vs ground truth);
   cumulative histograms.
4. products: the share of CG time and flops spent in the J products (fp16 in mixed).

Writes results/ba/bench_ba.json, timing.png, pose_error_cdf.png and a Markdown table. Usage:
    OPENBLAS_NUM_THREADS=1 python bench/bench_ba.py [--quick] [--out results/ba]
and, to iterate on one case (timing only, nothing written):
    OPENBLAS_NUM_THREADS=1 python bench/bench_ba.py --timing-only --sizes 50 --no-mono \
        --windows 20 --methods schur,cgnr/fp32,cgnr/mixed,gtsam
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # small dense factorizations: one thread

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ba_bench_sections import (  # noqa: E402
    OPTIMUM_SETTINGS,
    accuracy_section,
    optimum_section,
    products_section,
    timing_section,
)
from ba_bench_report import markdown_table, optimum_table, plot_cdf, plot_timing, timing_table  # noqa: E402

from mp_slam_ros.sim.ba_windows import WindowConfig  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the three sections and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few windows per section (minutes -> seconds)")
    parser.add_argument("--out", type=Path, default=Path("results/ba"))
    parser.add_argument("--sizes", default="10,25,50,100", help="window sizes (keyframes)")
    parser.add_argument("--windows", type=int, default=20, help="windows per size in the timing section")
    parser.add_argument("--accuracy-windows", type=int, default=500, help="50-keyframe windows for the histogram")
    parser.add_argument("--product-windows", type=int, default=10)
    parser.add_argument("--optimum-windows", type=int, default=50,
                        help="windows per class in the optimum section (4 classes)")
    parser.add_argument("--optimum-only", action="store_true",
                        help="only the optimum section; prints its table, writes nothing")
    parser.add_argument("--optimum-setting", choices=sorted(OPTIMUM_SETTINGS), default="default",
                        help="LM options of --optimum-only (the full run does both)")
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--no-mono", action="store_true", help="skip the monocular 50-keyframe case")
    parser.add_argument("--methods", default="", help="comma-separated method prefixes to time "
                        "(e.g. schur,cgnr/fp32,gtsam; default all); with --timing-only for quick iterations")
    parser.add_argument("--timing-only", action="store_true",
                        help="only the timing section; prints its table, writes nothing")
    args = parser.parse_args(argv)
    if args.quick:
        args.windows, args.accuracy_windows, args.product_windows, args.optimum_windows = 3, 20, 2, 2
    cases = [(f"{k} keyframes", k, WindowConfig()) for k in (int(s) for s in args.sizes.split(","))]
    if not args.no_mono:
        cases.append(("50 keyframes, monocular", 50, WindowConfig(rgbd=False)))
    prefixes = [p for p in args.methods.split(",") if p]
    selected: Callable[[str], bool] = lambda name: not prefixes or any(name.startswith(p) for p in prefixes)  # noqa: E731
    log: Callable[[str], None] = lambda line: print(line, flush=True)  # noqa: E731
    started = time.perf_counter()
    if args.optimum_only:
        optimum = optimum_section(args.optimum_windows, args.seed + 300_000, log, args.optimum_setting)
        print("\n".join(optimum_table(optimum)))
        return 0
    timing = timing_section(cases, args.windows, args.seed, log, selected)
    if args.timing_only:
        print("\n".join(timing_table(timing)))
        return 0
    if prefixes:
        parser.error("--methods needs --timing-only (committed results hold every method)")
    args.out.mkdir(parents=True, exist_ok=True)
    results = {
        "machine": {"python": platform.python_version(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS")},
        "arguments": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "timing": timing,
        "optimum": optimum_section(args.optimum_windows, args.seed + 300_000, log),
        "optimum_tight": optimum_section(args.optimum_windows, args.seed + 300_000, log, "tight"),
        "accuracy": accuracy_section(args.accuracy_windows, args.seed + 100_000, log),
        "products": products_section(args.product_windows, args.seed + 200_000, log),
    }
    results["wall_time_s"] = time.perf_counter() - started
    (args.out / "bench_ba.json").write_text(json.dumps(results, indent=1))
    table = markdown_table(results)
    (args.out / "summary.md").write_text(table)
    plot_timing(results["timing"], args.out / "timing.png")
    plot_cdf(results["accuracy"], args.out / "pose_error_cdf.png")
    print(table)
    print(f"wrote {args.out}/bench_ba.json, summary.md, timing.png, pose_error_cdf.png "
          f"in {results['wall_time_s']:.0f} s")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
