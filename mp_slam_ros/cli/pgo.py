"""``mp-slam pgo IN.g2o -o OUT.g2o``: optimize a pose graph in a chosen precision.

Reads a g2o file (SE(3) or SE(2)), runs Levenberg-Marquardt with the chosen precision mode and
linear solver, prints one progress line per iteration on stderr (cost, step, damping, precision,
inner iterations), writes the optimized graph (ids, information and FIX lines kept), with
``--tum`` also its poses as a TUM trajectory (for ``mp-slam eval``) and, with ``--json``, prints
the solver summary as JSON on stdout. Bad input (a malformed file, a
disconnected graph, an invalid option) ends with a one-line message and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.io.g2o import read_g2o, write_g2o
from mp_slam_ros.io.tum import trajectory_of_nodes, write_tum
from mp_slam_ros.precision import Precision
from mp_slam_ros.solvers.linear.ichol import IncompleteCholeskyFactory
from mp_slam_ros.solvers.pgo import DEFAULT_DROP_TOLERANCE, SOLVERS, default_options, optimize_pose_graph
from mp_slam_ros.solvers.summary import IterationRecord


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mp-slam pgo``."""
    parser.add_argument("input", type=Path, help="input pose graph (.g2o)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="optimized pose graph (.g2o)")
    parser.add_argument(
        "--precision", choices=[p.value for p in Precision], default=Precision.MIXED.value,
        help="precision mode (default: mixed)",
    )
    parser.add_argument("--solver", choices=SOLVERS, default="cgnr_ic", help="linear solver (default: cgnr_ic)")
    parser.add_argument("--max-iterations", type=int, default=100, help="LM iterations (default: 100)")
    parser.add_argument(
        "--ichol-drop", type=float, default=DEFAULT_DROP_TOLERANCE,
        help=f"drop tolerance of the incomplete Cholesky, 0 = IC(0) (default: {DEFAULT_DROP_TOLERANCE:g})",
    )
    parser.add_argument("--no-escalate", action="store_true", help="never redo a step in a higher precision")
    parser.add_argument("--tum", type=Path, help="also write the optimized poses as TUM (timestamp = node id)")
    parser.add_argument("--json", action="store_true", help="print the solver summary as JSON on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-iteration progress")


def _progress(record: IterationRecord) -> None:
    mark = "" if record.accepted else "  (rejected)"
    print(
        f"iter {record.iteration:3d}  cost {record.cost:.9g}  step {record.step_norm:.3e}  "
        f"damping {record.damping:.1e}  precision {record.precision.value:5s}  "
        f"linear {record.linear_iterations:3d} {record.linear_status}{mark}",
        file=sys.stderr,
    )


def run(args: argparse.Namespace) -> int:
    """Optimize ``args.input`` and write ``args.output``; see the module docstring."""
    graph = read_g2o(args.input)
    options = default_options(
        precision=Precision.parse(args.precision, "--precision"),
        max_iterations=args.max_iterations,
        escalate=not args.no_escalate,
    )
    preconditioner = IncompleteCholeskyFactory(drop_tolerance=args.ichol_drop)
    result = optimize_pose_graph(
        graph, options, solver=args.solver, callback=None if args.quiet else _progress,
        preconditioner=preconditioner,
    )
    summary = result.summary
    if not args.quiet:
        print(
            f"{summary.termination.value}: {summary.message}; chi2 {result.initial_chi2:.9g} -> "
            f"{result.final_chi2:.9g} in {summary.num_iterations} iterations, "
            f"{summary.timings.total_s:.3f} s, precision used {summary.precision_used.value}",
            file=sys.stderr,
        )
    try:
        write_g2o(args.output, result.graph)
        if args.tum is not None:
            optimized = result.graph
            write_tum(args.tum, trajectory_of_nodes(optimized.node_ids, optimized.T_world_node),
                      comment=f"{args.input} optimized by mp-slam pgo ({summary.precision_used.value})")
    except OSError as error:
        raise ConfigError("--output/--tum", str(error.filename), f"cannot write: {error.strerror or error}") from None
    if args.json:
        report = summary.to_dict()
        report.update(
            input=str(args.input), output=str(args.output), num_nodes=graph.num_nodes,
            num_edges=graph.num_edges, initial_chi2=result.initial_chi2, final_chi2=result.final_chi2,
        )
        print(json.dumps(report, indent=2))
    return 0
