"""``mp-slam graph KIND -o OUT.g2o``: write a seeded synthetic pose graph (and its ground truth).

The worlds are those of :mod:`mp_slam_ros.sim.pose_graphs`: ``household`` (a robot touring a
corridor and its rooms, closing loops on revisits), ``sphere`` (``sphere2500``-like) and ``grid``
(``M3500``-like). The initial estimate is the dead-reckoning chain of the noisy odometry (or the
truth perturbed per pose with ``--initial perturbed``). With ``--gt`` the true poses are written
as a TUM file whose timestamps are the node ids, for ``mp-slam eval``. ``--loop-sigma-t/-r`` give
loop closures their own noise (and information); ``--odometry-scale-bias``/``--odometry-yaw-bias``
add a systematic odometry error that the written information does not model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.io.g2o import write_g2o
from mp_slam_ros.io.tum import trajectory_of_nodes, write_tum
from mp_slam_ros.sim.pose_graphs import GraphNoise, grid_graph, household_graph, sphere_graph

KINDS = ("household", "sphere", "grid")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mp-slam graph``."""
    parser.add_argument("kind", choices=KINDS, help="world shape")
    parser.add_argument("-o", "--output", type=Path, required=True, help="pose graph to write (.g2o)")
    parser.add_argument("-n", "--poses", type=int, default=2000, help="number of poses (default: 2000)")
    parser.add_argument("--dim", type=int, choices=(2, 3), default=3, help="2-D or 3-D (sphere: 3 only)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--initial", choices=("odometry", "perturbed"), default="odometry",
                        help="initial estimate: dead reckoning (default) or perturbed truth")
    parser.add_argument("--sigma-t", type=float, default=GraphNoise.translation_m,
                        help=f"edge translation noise in m (default: {GraphNoise.translation_m:g})")
    parser.add_argument("--sigma-r", type=float, default=GraphNoise.rotation_rad,
                        help=f"edge rotation noise in rad (default: {GraphNoise.rotation_rad:g})")
    parser.add_argument("--loop-sigma-t", type=float, default=None,
                        help="loop-closure translation noise in m (default: as --sigma-t)")
    parser.add_argument("--loop-sigma-r", type=float, default=None,
                        help="loop-closure rotation noise in rad (default: as --sigma-r)")
    parser.add_argument("--odometry-scale-bias", type=float, default=0.0,
                        help="systematic relative error of odometry translations, not in the information (default: 0)")
    parser.add_argument("--odometry-yaw-bias", type=float, default=0.0,
                        help="systematic yaw in rad added to every odometry edge, not in the information (default: 0)")
    parser.add_argument("--gt", type=Path, help="also write the true poses as TUM (timestamp = node id)")


def run(args: argparse.Namespace) -> int:
    """Generate the graph of ``args`` and write it (and the ground truth)."""
    if args.poses < 10:
        raise ConfigError("--poses", args.poses, "must be at least 10")
    if args.kind == "sphere" and args.dim != 3:
        raise ConfigError("--dim", args.dim, "the sphere world is 3-D only")
    for flag in ("sigma_t", "sigma_r", "loop_sigma_t", "loop_sigma_r"):
        value = getattr(args, flag)
        if value is not None and value <= 0.0:
            raise ConfigError("--" + flag.replace("_", "-"), value, "must be positive")
    if args.odometry_scale_bias <= -1.0:
        raise ConfigError("--odometry-scale-bias", args.odometry_scale_bias, "must be > -1")
    noise = GraphNoise(translation_m=args.sigma_t, rotation_rad=args.sigma_r, loop_translation_m=args.loop_sigma_t,
                       loop_rotation_rad=args.loop_sigma_r, odometry_scale_bias=args.odometry_scale_bias,
                       odometry_yaw_bias_rad=args.odometry_yaw_bias)
    common = {"seed": args.seed, "noise": noise, "initial": args.initial}
    if args.kind == "sphere":
        problem = sphere_graph(args.poses, **common)
    elif args.kind == "grid":
        problem = grid_graph(args.poses, dim=args.dim, **common)
    else:
        problem = household_graph(args.poses, dim=args.dim, **common)
    graph = problem.graph
    try:
        write_g2o(args.output, graph)
        if args.gt is not None:
            truth = trajectory_of_nodes(graph.node_ids, problem.T_world_node_true)
            write_tum(args.gt, truth, comment=f"ground truth of {problem.name} (timestamp = node id)")
    except OSError as error:
        raise ConfigError("--output/--gt", str(error.filename), f"cannot write: {error.strerror}") from None
    loops = int(graph.is_loop.sum())
    print(f"wrote {args.output}: {problem.name}, {graph.num_nodes} poses, {graph.num_edges} edges "
          f"({loops} loop closures)", file=sys.stderr)
    return 0
