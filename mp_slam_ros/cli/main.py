"""Entry point of the ``mp-slam`` command.

Each subcommand lives in its own module ``mp_slam_ros.cli.<name>`` that defines
``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported lazily so that
``mp-slam --help`` stays fast and one subcommand's heavy dependencies never slow another.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from mp_slam_ros.errors import MpSlamError

#: subcommand name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "pgo": ("mp_slam_ros.cli.pgo", "optimize a pose graph (.g2o) in a chosen precision"),
    "graph": ("mp_slam_ros.cli.graph", "write a seeded synthetic pose graph (.g2o) and its ground truth"),
    "ba": ("mp_slam_ros.cli.ba", "bundle-adjust a BAL problem in a chosen precision"),
    "generate": ("mp_slam_ros.cli.generate", "render a synthetic household RGB-D/stereo sequence"),
    "play": ("mp_slam_ros.ros.play_cli", "replay a rosbag2 into the live ROS 2 graph"),
    "eval": ("mp_slam_ros.cli.eval", "evaluate trajectories (ATE/RPE) with evo"),
    "vo": ("mp_slam_ros.cli.vo", "visual odometry (RGB-D or stereo) over a rosbag2, offline"),
    "import": ("mp_slam_ros.cli.import_", "convert a dataset (kitti, tum) into a rosbag2 + ground truth"),
    "places": ("mp_slam_ros.cli.places", "place recognition + 2-D verification over a folder of images"),
    "slam": ("mp_slam_ros.cli.slam", "visual odometry + loop closure over a rosbag2, offline"),
    "run": ("mp_slam_ros.ros.run_cli", "both nodes in one process, optionally replaying a bag (--bag) and recording (--record)"),
    "param": ("mp_slam_ros.ros.param_cli", "list/get/set/dump a running node's parameters (as ros2 param)"),
    "demo": ("mp_slam_ros.ros.demo_cli", "generate a household sequence, run both nodes over it, print ATE before/after loop closure"),
}


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mp-slam", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = sys.argv[1] if len(sys.argv) > 1 else None
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            importlib.import_module(module_name).add_arguments(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mp-slam``; known errors become a one-line message on stderr and exit code 1."""
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    args = _build_parser().parse_args()
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except MpSlamError as error:
        print(f"mp-slam {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"mp-slam {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
