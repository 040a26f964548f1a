"""``mp-slam run``: vo_node + loop_closure_node in one process (multithreaded executor), without
launch_ros; optionally replaying a bag into them with ``/clock`` and recording their outputs.

The pip-only user's ``ros2 launch mp_slam_ros slam.launch.py`` + ``ros2 bag play --clock``:

    mp-slam run --params config/household_rgbd.yaml               # live camera topics, Ctrl-C stops
    mp-slam run --bag seq/bag --rate 0.5 --record out/slam_bag    # replay, record, exit when done

ROS-side by nature, so it lives under ``mp_slam_ros.ros`` (the core stays rclpy-free).
"""

from __future__ import annotations

import argparse
import sys
import threading
from contextlib import ExitStack
from pathlib import Path

from tqdm import tqdm

from mp_slam_ros.io.bags import BagReader
from mp_slam_ros.pipelines.vo_config import SensorMode
from mp_slam_ros.ros.bringup import BringupOptions, SlamProcess, bag_camera_topics

#: after the replay, the run ends once no keyframe or pose graph came out for this long (s)
QUIET_S = 3.0
#: ... or after this long, whatever the nodes still do (s)
DRAIN_TIMEOUT_S = 300.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mp-slam run``."""
    parser.add_argument("--params", type=Path, help="ROS 2 parameter file for both nodes (e.g. config/household_rgbd.yaml)")
    parser.add_argument("--mode", choices=("rgbd", "stereo"), help="vo_node mode (default: the parameter file's, or the bag's topics)")
    parser.add_argument("--precision", choices=("fp64", "fp32", "fp16", "mixed"), help="ba.precision and pgo.precision")
    parser.add_argument("--bag", type=Path, help="replay this rosbag2 into the nodes (with /clock, use_sim_time) and exit when done")
    parser.add_argument("-r", "--rate", type=float, default=1.0, help="replay speed factor (default 1.0)")
    parser.add_argument("--record", type=Path, metavar="OUT_BAG", help="record the nodes' outputs to this new MCAP rosbag2")
    parser.add_argument("--namespace", default="", help="namespace of the nodes and their relative topics")
    parser.add_argument("--use-sim-time", action="store_true", help="without --bag: follow /clock of another player")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Start the nodes; replay and drain (``--bag``), or spin until Ctrl-C; print what came out."""
    with ExitStack() as stack:
        if args.bag is None:
            options = BringupOptions(args.params, args.mode, args.precision, args.use_sim_time, args.namespace)
        else:
            bag = stack.enter_context(BagReader(args.bag))
            mode, camera_topics = bag_camera_topics(bag, SensorMode(args.mode) if args.mode else None)
            options = BringupOptions(args.params, mode.value, args.precision, True, args.namespace, camera_topics)
        process = SlamProcess(options)
        stack.callback(process.close)
        recorder = stack.enter_context(process.record(args.record)) if args.record else None
        if args.bag is None:
            _spin_until_interrupted()
        else:
            _replay(process, bag, args)
            print(f"{process.keyframes} keyframes from {args.bag}")
    if recorder is not None:
        print(f"recorded {sum(recorder.counts.values())} messages on {len(recorder.counts)} topics to {args.record}")
    return 0


def _replay(process: SlamProcess, bag: BagReader, args: argparse.Namespace) -> None:
    """Replay with a progress bar, then wait for the nodes to finish their queues."""
    with tqdm(total=sum(bag.counts.values()), unit="msg", desc=f"replaying {args.bag.name}", disable=args.no_progress) as bar:
        process.play(bag, args.rate, lambda _message: bar.update(1))
    if not process.wait_until_quiet(QUIET_S, DRAIN_TIMEOUT_S):
        print(f"mp-slam run: the nodes were still busy {DRAIN_TIMEOUT_S:g} s after the replay; stopping", file=sys.stderr)


def _spin_until_interrupted() -> None:
    """Wait for Ctrl-C (the executor spins in its own thread)."""
    print("vo_node and loop_closure_node running; Ctrl-C stops", file=sys.stderr)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
