"""``mp-slam graph KIND -o OUT.g2o``: write a seeded synthetic pose graph (and its ground truth).

The worlds are those of :mod:`mp_slam_ros.sim.pose_graphs`: ``household`` (a robot touring a
corridor and its rooms, closing loops on revisits), ``sphere`` (``sphere2500``-like), ``grid``
(``M3500``-like), ``city`` (2-D, ``city10000``-like street grid with its own default noise),
``garage`` (3-D, ``parking-garage``-like multi-level drive with anisotropic information;
``--indefinite-fraction`` makes some edges' information indefinite) and ``tiny`` (laps of a
small square, for 9-100 poses). ``--edges-only`` writes no ``VERTEX`` lines (the common form of
the public 2-D data sets; readers initialise from odometry). The initial estimate is the dead-reckoning chain of the noisy odometry (or the
truth perturbed per pose with ``--initial perturbed``). With ``--gt`` the true poses are written
as a TUM file whose timestamps are the node ids, for ``mp-slam eval``. ``--loop-sigma-t/-r`` give
loop closures their own noise (and information); ``--odometry-scale-bias``/``--odometry-yaw-bias``
add a systematic odometry error that the written information does not model.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.io.g2o import format_g2o
from mp_slam_ros.io.tum import trajectory_of_nodes, write_tum
from mp_slam_ros.sim.pose_graphs import (
    CITY_NOISE, GARAGE_NOISE, GraphNoise, SyntheticPoseGraph, city_graph, garage_graph, grid_graph, household_graph,
    sphere_graph, tiny_graph,
)

KINDS = ("household", "sphere", "grid", "city", "garage", "tiny")
#: Worlds with their own default noise (the others use :class:`GraphNoise`'s defaults).
_DEFAULT_NOISE = {"city": CITY_NOISE, "garage": GARAGE_NOISE}
#: Worlds of one dimension only.
_FIXED_DIM = {"sphere": 3, "city": 2, "garage": 3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mp-slam graph``."""
    parser.add_argument("kind", choices=KINDS, help="world shape")
    parser.add_argument("-o", "--output", type=Path, required=True, help="pose graph to write (.g2o)")
    parser.add_argument("-n", "--poses", type=int, default=2000, help="number of poses (default: 2000)")
    parser.add_argument("--dim", type=int, choices=(2, 3), default=None,
                        help="2-D or 3-D (default 3; sphere and garage: 3 only, city: 2 only)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--initial", choices=("odometry", "perturbed"), default="odometry",
                        help="initial estimate: dead reckoning (default) or perturbed truth")
    parser.add_argument("--sigma-t", type=float, default=None,
                        help=f"edge translation noise in m (default: {GraphNoise.translation_m:g}; "
                             f"city {CITY_NOISE.translation_m:g}, garage {GARAGE_NOISE.translation_m:g})")
    parser.add_argument("--sigma-r", type=float, default=None,
                        help=f"edge rotation noise in rad (default: {GraphNoise.rotation_rad:g}; "
                             f"city {CITY_NOISE.rotation_rad:g}, garage {GARAGE_NOISE.rotation_rad:g})")
    parser.add_argument("--loop-sigma-t", type=float, default=None,
                        help="loop-closure translation noise in m (default: as --sigma-t)")
    parser.add_argument("--loop-sigma-r", type=float, default=None,
                        help="loop-closure rotation noise in rad (default: as --sigma-r)")
    parser.add_argument("--odometry-scale-bias", type=float, default=0.0,
                        help="systematic relative error of odometry translations, not in the information (default: 0)")
    parser.add_argument("--odometry-yaw-bias", type=float, default=0.0,
                        help="systematic yaw in rad added to every odometry edge, not in the information (default: 0)")
    parser.add_argument("--indefinite-fraction", type=float, default=0.0,
                        help="garage: fraction of edges whose information is made indefinite (default: 0)")
    parser.add_argument("--edges-only", action="store_true",
                        help="write no VERTEX lines (readers initialise the poses from the odometry edges)")
    parser.add_argument("--gt", type=Path, help="also write the true poses as TUM (timestamp = node id)")


def run(args: argparse.Namespace) -> int:
    """Generate the graph of ``args`` and write it (and the ground truth)."""
    problem = _generate(args)
    graph = problem.graph
    lines = format_g2o(graph)
    if args.edges_only:
        lines = [line for line in lines if not line.startswith("VERTEX")]
    try:
        args.output.write_text("".join(lines), encoding="utf-8")
        if args.gt is not None:
            truth = trajectory_of_nodes(graph.node_ids, problem.T_world_node_true)
            write_tum(args.gt, truth, comment=f"ground truth of {problem.name} (timestamp = node id)")
    except OSError as error:
        raise ConfigError("--output/--gt", str(error.filename), f"cannot write: {error.strerror}") from None
    loops = int(graph.is_loop.sum())
    print(f"wrote {args.output}: {problem.name}, {graph.num_nodes} poses, {graph.num_edges} edges "
          f"({loops} loop closures){', edges only' if args.edges_only else ''}", file=sys.stderr)
    return 0


def _generate(args: argparse.Namespace) -> SyntheticPoseGraph:
    """The synthetic problem ``args`` describe (options checked first)."""
    if args.poses < 4:
        raise ConfigError("--poses", args.poses, "must be at least 4")
    dim = args.dim if args.dim is not None else _FIXED_DIM.get(args.kind, 3)
    if args.kind in _FIXED_DIM and dim != _FIXED_DIM[args.kind]:
        raise ConfigError("--dim", dim, f"the {args.kind} world is {_FIXED_DIM[args.kind]}-D only")
    for flag in ("sigma_t", "sigma_r", "loop_sigma_t", "loop_sigma_r"):
        value = getattr(args, flag)
        if value is not None and value <= 0.0:
            raise ConfigError("--" + flag.replace("_", "-"), value, "must be positive")
    if args.odometry_scale_bias <= -1.0:
        raise ConfigError("--odometry-scale-bias", args.odometry_scale_bias, "must be > -1")
    if args.initial != "odometry" and args.kind in ("city", "garage", "tiny"):
        raise ConfigError("--initial", args.initial, f"the {args.kind} world starts from odometry only")
    if args.indefinite_fraction and args.kind != "garage":
        raise ConfigError("--indefinite-fraction", args.indefinite_fraction, "only the garage world has it")
    if not 0.0 <= args.indefinite_fraction <= 1.0:
        raise ConfigError("--indefinite-fraction", args.indefinite_fraction, "must be in [0, 1]")
    base = _DEFAULT_NOISE.get(args.kind, GraphNoise())
    noise = replace(
        base, translation_m=args.sigma_t or base.translation_m, rotation_rad=args.sigma_r or base.rotation_rad,
        loop_translation_m=args.loop_sigma_t, loop_rotation_rad=args.loop_sigma_r,
        odometry_scale_bias=args.odometry_scale_bias, odometry_yaw_bias_rad=args.odometry_yaw_bias,
    )
    common = {"seed": args.seed, "noise": noise}
    if args.kind == "city":
        return city_graph(args.poses, **common)
    if args.kind == "garage":
        return garage_graph(args.poses, indefinite_fraction=args.indefinite_fraction, **common)
    if args.kind == "tiny":
        return tiny_graph(args.poses, dim=dim, **common)
    if args.kind == "sphere":
        return sphere_graph(args.poses, initial=args.initial, **common)
    if args.kind == "grid":
        return grid_graph(args.poses, dim=dim, initial=args.initial, **common)
    return household_graph(args.poses, dim=dim, initial=args.initial, **common)
