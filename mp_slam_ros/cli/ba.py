"""``mp-slam ba``: bundle-adjust a BAL problem in a chosen precision; write the solution as BAL.

Progress (one line per LM iteration) and the final summary go to stderr, so that ``--json``
leaves a clean JSON document on stdout. The dense factorizations of BA are small: unless
``OPENBLAS_NUM_THREADS`` is set, this command runs BLAS single-threaded (multithreaded BLAS on
300x300 matrices is slower, and much slower on a busy CPU).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads OpenBLAS

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from mp_slam_ros.errors import ConfigError  # noqa: E402
from mp_slam_ros.io.bal import bal_to_problem, read_bal, solution_to_bal, write_bal  # noqa: E402
from mp_slam_ros.precision import Backend, Precision  # noqa: E402
from mp_slam_ros.solvers.ba import (  # noqa: E402
    LinearSolverKind,
    PreconditionerKind,
    ba_solver_options,
    bundle_adjust,
)
from mp_slam_ros.solvers.robust import LossKind, RobustLoss  # noqa: E402
from mp_slam_ros.solvers.summary import IterationRecord, Summary  # noqa: E402


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mp-slam ba``."""
    parser.add_argument("problem", type=Path, help="BAL problem file (text)")
    parser.add_argument("-o", "--output", type=Path, help="write the solution here (BAL, input conventions)")
    parser.add_argument("--precision", choices=[p.value for p in Precision], default="mixed")
    parser.add_argument("--solver", choices=[s.value for s in LinearSolverKind], default="iterative_schur",
                        help="iterative_schur (default: matrix-free PCG on the reduced camera system, the "
                        "mixed-precision recipe), cgnr (CG on J) or schur (fp64 direct baseline)")
    parser.add_argument("--preconditioner", choices=[p.value for p in PreconditionerKind], default="schur_jacobi",
                        help="CGNR preconditioner (default: schur_jacobi, landmarks eliminated exactly)")
    parser.add_argument("--backend", choices=[b.value for b in Backend], default="auto")
    parser.add_argument("--loss", choices=[k.value for k in LossKind], default="none",
                        help="robust loss (default none: BAL files carry no loss; plain least squares "
                        "as Ceres' bundle_adjuster)")
    parser.add_argument("--loss-scale", type=float, default=2.0, help="robust loss scale in sigmas (default 2)")
    parser.add_argument("--sigma-px", type=float, default=1.0, help="pixel noise sigma (default 1)")
    parser.add_argument("--fix-cameras", default="", help="comma-separated camera indices held fixed (gauge)")
    parser.add_argument("--max-iterations", type=int, default=None,
                        help="LM iterations at most (default 50 for BAL files, which have no depth)")
    parser.add_argument("--function-tolerance", type=float, default=None,
                        help="stop when an iteration gains less than this share of the cost (default 1e-6 "
                        "for BAL files, as Ceres; 1e-4 with depth)")
    parser.add_argument("--linear-rtol", type=float, default=0.01,
                        help="forcing term of the inner CG (Nash-Sofer test) per LM step (default 0.01)")
    parser.add_argument("--no-escalate", action="store_true", help="never escalate precision on failure")
    parser.add_argument("--json", action="store_true", help="print the solver summary as JSON on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-iteration progress")


def _fixed_cameras(spec: str, num_cams: int) -> np.ndarray:
    fixed = np.zeros(num_cams, dtype=bool)
    for token in filter(None, (t.strip() for t in spec.split(","))):
        if not token.isdigit() or int(token) >= num_cams:
            raise ConfigError("fix_cameras", token, f"must be camera indices in [0, {num_cams})")
        fixed[int(token)] = True
    return fixed


def _progress(record: IterationRecord) -> None:
    mark = "+" if record.accepted else "-"
    print(
        f"{record.iteration:3d} {mark} cost {record.cost:.6e}  |dx| {record.step_norm:.2e}  "
        f"lambda {record.damping:.1e}  {record.precision.value:5s}  "
        f"linear {record.linear_iterations:3d} it, rel {record.linear_relative_residual:.1e} "
        f"({record.linear_status})",
        file=sys.stderr,
    )


def _report(summary: Summary, elapsed_s: float) -> None:
    print(
        f"{summary.termination.value}: {summary.message}; cost {summary.initial_cost:.6e} -> "
        f"{summary.final_cost:.6e} in {summary.num_iterations} iterations "
        f"({summary.linear_iterations} linear), {elapsed_s * 1e3:.1f} ms, "
        f"precision {summary.precision_requested.value} -> {summary.precision_used.value}",
        file=sys.stderr,
    )
    for line in summary.change_lines():
        print(f"  {line}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Read, solve and (optionally) write; exit status 0 when the solve converged or ran out of
    iterations, 1 on bad input (raised as :class:`MpSlamError`)."""
    if args.sigma_px <= 0.0:
        raise ConfigError("sigma_px", args.sigma_px, "must be > 0")
    bal = read_bal(args.problem)
    loss = RobustLoss(args.loss, args.loss_scale)
    problem = bal_to_problem(bal, loss, args.sigma_px, _fixed_cameras(args.fix_cameras, len(bal.camera_params)))
    options = ba_solver_options(
        args.precision, monocular=problem.monocular, backend=Backend.parse(args.backend),
        escalate=not args.no_escalate,
    )
    if args.max_iterations is not None:
        options.max_iterations = args.max_iterations
    if args.function_tolerance is not None:
        options.function_tolerance = args.function_tolerance
    options.linear.rtol = args.linear_rtol
    started = time.perf_counter()
    result = bundle_adjust(
        problem, options, solver=args.solver, preconditioner=args.preconditioner,
        callback=None if args.quiet else _progress,
    )
    elapsed = time.perf_counter() - started
    _report(result.summary, elapsed)
    if args.output is not None:
        write_bal(args.output, solution_to_bal(bal, result.state))
    if args.json:
        summary = result.summary.to_dict()
        summary.update(problem=str(args.problem), solver=args.solver, wall_time_s=elapsed,
                       num_cameras=problem.num_cams, num_points=problem.num_points,
                       num_observations=problem.num_observations)
        print(json.dumps(summary, indent=2))
    return 0
