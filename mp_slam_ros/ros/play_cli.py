"""``mp-slam play``: replay a rosbag2 into the live ROS 2 graph, with /clock for use_sim_time.

This subcommand is ROS-side by nature, so it lives under ``mp_slam_ros.ros`` (the core stays
rclpy-free); ``mp_slam_ros.cli.main`` imports it only when ``play`` runs.

The rclpy work lives in :mod:`mp_slam_ros.ros.player`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

#: ``--clock`` without a value publishes at this rate (Hz), like ``ros2 bag play --clock``
DEFAULT_CLOCK_HZ = 40.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mp-slam play``."""
    parser.add_argument("bag", type=Path, help="rosbag2 directory (or .mcap/.db3 file)")
    parser.add_argument("-r", "--rate", type=float, default=1.0, help="playback speed factor (default 1.0)")
    parser.add_argument("--clock", type=float, nargs="?", const=DEFAULT_CLOCK_HZ, default=0.0, metavar="HZ",
                        help=f"publish /clock (bag time) at HZ (default {DEFAULT_CLOCK_HZ:g}) for use_sim_time")
    parser.add_argument("-l", "--loop", action="store_true", help="play again from the start when the bag ends (Ctrl-C stops)")
    parser.add_argument("--start-offset", type=float, default=0.0, metavar="S", help="skip the first S seconds")
    parser.add_argument("-d", "--delay", type=float, default=0.0, metavar="S",
                        help="wait S seconds before playing (each loop), so that subscribers are matched first")
    parser.add_argument("--topics", nargs="+", default=None, help="only these topics")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Replay with a progress bar; 0 on success."""
    from mp_slam_ros.ros.player import BagPlayer, PlayOptions, play_bag

    options = PlayOptions(args.rate, args.clock, args.loop, args.start_offset,
                          tuple(args.topics) if args.topics else None, args.delay).validate()
    bars: list[tqdm] = []

    def on_start(player: BagPlayer) -> Callable[[object], None]:
        for topic, msgtype in player.skipped.items():
            print(f"mp-slam play: skipping {topic}: message package of {msgtype} is not installed", file=sys.stderr)
        total = sum(player.bag.counts[topic] for topic in player.publishers)  # upper bound with --start-offset
        bars.append(tqdm(total=total, unit="msg", desc=f"playing {args.bag.name}", disable=args.no_progress))

        def advance(_message: object) -> None:
            if bars[0].n >= total:  # next pass of --loop
                bars[0].reset()
            bars[0].update(1)

        return advance

    try:
        published = play_bag(args.bag, options, on_start)
    finally:
        for bar in bars:
            bar.close()
    print(f"published {published} messages from {args.bag}")
    return 0
