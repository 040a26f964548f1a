"""``mp-slam vo``: visual odometry over a rosbag2 offline (no DDS), TUM trajectory + JSON summary."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mp_slam_ros.cli.progress import frame_progress
from mp_slam_ros.config import options_from, read_options, with_updates
from mp_slam_ros.errors import ConfigError
from mp_slam_ros.io.tum import write_tum
from mp_slam_ros.pipelines.vo_config import VOConfig
from mp_slam_ros.pipelines.vo_run import run_vo
from mp_slam_ros.presets import VO_NODE, pipeline_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mp-slam vo``."""
    parser.add_argument("bag", type=Path, help="rosbag2 directory (RGB-D or rectified stereo topics)")
    parser.add_argument("--tum", type=Path, required=True, help="output TUM file: base_link in odom, image stamps")
    parser.add_argument("--params", type=Path, help="YAML options (config/vo.yaml keys), or a ROS 2 parameter file "
                        "(e.g. config/household_rgbd.yaml: its vo_node options of the pipeline)")
    parser.add_argument("--precision", choices=("fp64", "fp32", "fp16", "mixed"), help="ba.precision")
    parser.add_argument("--mode", choices=("rgbd", "stereo"), help="mode (default: from --params, else rgbd; stereo if the bag has no depth)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any option by dotted key, e.g. ba.window_size=30")
    parser.add_argument("--synchronous", action="store_true", help="solve each window BA before the next frame (deterministic)")
    parser.add_argument("--wheel-odom", metavar="TOPIC", help="nav_msgs/Odometry topic of the bag used as a motion prior "
                        "(as vo_node's use_wheel_odom), e.g. /odom")
    parser.add_argument("--json", action="store_true", help="print only the JSON summary")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> VOConfig:
    """Options: defaults <- --params <- --precision/--mode/--synchronous <- --set."""
    config = _params(args.params) if args.params else VOConfig()
    updates: dict[str, object] = {}
    if args.precision:
        updates["ba.precision"] = args.precision
    if args.mode:
        updates["mode"] = args.mode
    if args.synchronous:
        updates["ba.synchronous"] = True
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("--set", item, "expected KEY=VALUE")
        updates[key.strip()] = value.strip()
    return with_updates(config, updates)


def _params(path: Path) -> VOConfig:
    """The pipeline options of a YAML file; of a ROS 2 parameter file, those of ``vo_node``'s
    block, validated as the node validates them (the node's own, e.g. ``publish_tf``, are named on
    stderr: they do not apply offline)."""
    values, node_file = read_options(path, VO_NODE)
    if not node_file:
        return options_from(VOConfig, values, path)
    config, own = pipeline_options(VO_NODE, values, path)
    report_unused("mp-slam vo", path, VO_NODE, own)
    return config  # type: ignore[return-value]


def report_unused(command: str, path: Path, node: str, unused: list[str]) -> None:
    """Name on stderr the node's own parameters of a parameter file that an offline run ignores."""
    if unused:
        print(f"{command}: {path}: offline, {node}'s own parameters do not apply: {', '.join(unused)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Track every frame, write the TUM file, print the summary."""
    config = config_from_args(args)
    with frame_progress("vo", args.no_progress or args.json) as progress:
        result = run_vo(args.bag, config, progress, wheel_topic=args.wheel_odom)
    args.tum.parent.mkdir(parents=True, exist_ok=True)
    write_tum(args.tum, result.trajectory(), comment=f"mp-slam vo {args.bag}: T_odom_base_link")
    summary = {"bag": str(args.bag), "tum": str(args.tum), **result.summary()}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    tracking, ba = summary["tracking_ms"] or {}, summary["ba_ms"] or {}
    print(
        f"{summary['frames']} frames ({summary['mode']}), {summary['keyframes']} keyframes, {summary['lost']} lost; "
        f"tracking p50 {tracking.get('p50', 0):.1f} ms p95 {tracking.get('p95', 0):.1f} ms; "
        f"BA p50 {ba.get('p50', 0):.1f} ms p95 {ba.get('p95', 0):.1f} ms ({summary['ba_solves']} solves); "
        f"real-time factor {summary['real_time_factor'] or 0:.2f}"
    )
    print(json.dumps(summary))
    print(f"wrote {args.tum}")
    return 0
