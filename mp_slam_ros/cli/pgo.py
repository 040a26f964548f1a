"""``mp-slam pgo IN.g2o -o OUT.g2o``: optimize a pose graph in a chosen precision.

Reads a g2o file (SE(3) or SE(2)), initializes the poses (``--init``: the file's vertices,
odometry composed along a spanning tree, or chordal relaxation), runs Levenberg-Marquardt with the
chosen precision mode and linear solver (``--loss``: a robust loss on every edge or on the loop
edges only, e.g. ``--loss cauchy --loss-edges loops`` against wrong loops), prints one progress line per iteration on stderr (cost,
step, damping, precision, inner iterations), writes the optimized graph (ids, information and
FIX lines kept), with ``--tum`` also its poses as a TUM trajectory (for ``mp-slam eval``) and,
with ``--json``, prints the solver summary as JSON on stdout. What the reader repaired or skipped (information
matrices that were not positive definite, unsupported elements; see :mod:`mp_slam_ros.io.g2o`)
is said once on stderr, one line each, and recorded in the JSON; ``--strict`` makes both errors.
Bad input (a malformed file, a disconnected graph, an invalid option) ends with a one-line
message and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from mp_slam_ros.backend.initialization import chordal_initialization, odometry_initialization
from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.errors import ConfigError
from mp_slam_ros.io.g2o import G2oReadReport, read_g2o_with_report, write_g2o
from mp_slam_ros.io.tum import trajectory_of_nodes, write_tum
from mp_slam_ros.precision import Precision
from mp_slam_ros.solvers.linear.ichol import IncompleteCholeskyFactory
from mp_slam_ros.solvers.pgo import DEFAULT_DROP_TOLERANCE, SOLVERS, default_options, optimize_pose_graph
from mp_slam_ros.solvers.robust import LossKind, RobustLoss
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
    parser.add_argument(
        "--init", choices=INITIALIZATIONS, default=None,
        help="initial poses: vertices (the file's VERTEX lines; default when it has them), odometry (edges "
        "composed along a BFS spanning tree from the anchor; default without VERTEX lines), chordal "
        "(chordal relaxation: rotations, then translations)",
    )
    parser.add_argument(
        "--strict", action="store_true",
        help="reject information matrices that are not positive definite and unsupported elements "
        "(default: repair / skip them, and say so)",
    )
    parser.add_argument("--loss", choices=[k.value for k in LossKind], default="none",
                        help="robust loss (default none: plain least squares, as g2o files carry no kernel)")
    parser.add_argument("--loss-scale", type=float, default=3.0, help="robust loss scale in sigmas (default 3)")
    parser.add_argument("--loss-edges", choices=("all", "loops"), default="all",
                        help="edges under the loss: all, or loops (PoseGraph.is_loop: edges between non-consecutive ids)")
    parser.add_argument("--tum", type=Path, help="also write the optimized poses as TUM (timestamp = node id)")
    parser.add_argument("--json", action="store_true", help="print the solver summary as JSON on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-iteration progress")


INITIALIZATIONS = ("vertices", "odometry", "chordal")


def _warn_about(report: G2oReadReport, path: Path) -> None:
    """One stderr line per kind of repair or skip the reader did."""
    worst = report.worst_repair
    if worst is not None:
        count = len(report.repaired_edges)
        print(
            f"mp-slam pgo: warning: {path}: repaired {count} information matri{'x' if count == 1 else 'ces'} "
            f"that {'was' if count == 1 else 'were'} not (numerically) positive definite (eigenvalues clipped at "
            f"{report.relative_floor:g} x the largest); worst: line {worst.line}, edge {worst.from_id} -> "
            f"{worst.to_id}, smallest eigenvalue {worst.smallest_eigenvalue:.3g} (largest "
            f"{worst.largest_eigenvalue:.3g}); --strict rejects them",
            file=sys.stderr,
        )
    if report.skipped:
        tags = ", ".join(f"{tag} x {count}" for tag, count in sorted(report.skipped.items()))
        print(f"mp-slam pgo: warning: {path}: skipped {sum(report.skipped.values())} unsupported "
              f"element line(s): {tags}; --strict rejects them", file=sys.stderr)


def _initialized(graph: PoseGraph, report: G2oReadReport, choice: str | None) -> tuple[PoseGraph, dict[str, Any]]:
    """The graph with the initial poses of ``--init`` and a JSON record of the choice (``time_s``
    is None when the reader already composed the odometry: a file without VERTEX lines)."""
    method = choice or ("vertices" if report.has_vertices else "odometry")
    if method == "vertices" and not report.has_vertices:
        raise ConfigError("--init", method, "the file has no VERTEX lines (use odometry or chordal)")
    if method == "vertices" or (method == "odometry" and not report.has_vertices):
        return graph, {"method": method, "time_s": None}
    started = time.perf_counter()
    initialize = chordal_initialization if method == "chordal" else odometry_initialization
    graph = graph.with_poses(initialize(graph))
    return graph, {"method": method, "time_s": time.perf_counter() - started}


def _progress(record: IterationRecord) -> None:
    mark = "" if record.accepted else "  (rejected)"
    print(
        f"iter {record.iteration:3d}  cost {record.cost:.9g}  step {record.step_norm:.3e}  "
        f"damping {record.damping:.1e}  precision {record.precision.value:5s}  "
        f"linear {record.linear_solver} {record.linear_iterations:3d} {record.linear_status}{mark}",
        file=sys.stderr,
    )


def run(args: argparse.Namespace) -> int:
    """Optimize ``args.input`` and write ``args.output``; see the module docstring."""
    started = time.perf_counter()
    graph, read_report = read_g2o_with_report(args.input, strict=args.strict)
    read_s = time.perf_counter() - started
    _warn_about(read_report, args.input)
    graph, initialization = _initialized(graph, read_report, args.init)
    options = default_options(
        precision=Precision.parse(args.precision, "--precision"),
        max_iterations=args.max_iterations,
        escalate=not args.no_escalate,
    )
    preconditioner = IncompleteCholeskyFactory(drop_tolerance=args.ichol_drop)
    loss = RobustLoss(args.loss, args.loss_scale)
    result = optimize_pose_graph(
        graph, options, solver=args.solver, callback=None if args.quiet else _progress,
        preconditioner=preconditioner, loss=loss, robust_edges=graph.is_loop if args.loss_edges == "loops" else None,
    )
    summary = result.summary
    if not args.quiet:
        print(
            f"{summary.termination.value}: {summary.message}; chi2 {result.initial_chi2:.9g} -> "
            f"{result.final_chi2:.9g} in {summary.num_iterations} iterations, "
            f"{summary.timings.total_s:.3f} s, precision used {summary.precision_used.value}",
            file=sys.stderr,
        )
        for line in summary.change_lines():
            print(line, file=sys.stderr)
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
            read_s=read_s, initialization=initialization, loss=loss.describe(), loss_edges=args.loss_edges,
            **read_report.to_dict(),
        )
        print(json.dumps(report, indent=2))
    return 0
