"""``mp-slam demo``: the whole system on a generated household sequence, over real topics.

1. generate (once; cached) a household RGB-D sequence whose route revisits its rooms;
2. per precision mode: start vo_node + loop_closure_node (one process, multithreaded executor),
   replay the bag into them with ``/clock`` and collect odometry, keyframes and the final pose graph;
3. evaluate with evo against the ground truth: VO alone (odometry) and with loop closure (odometry
   corrected by the optimised keyframes), print the ATE table, write plots and a JSON summary.

    mp-slam demo                      # fp64 and mixed, 60 s sequence (<= 10 min on 2 cores)
    mp-slam demo --quick              # mixed, 30 s sequence (<= 2 min)
    mp-slam demo --precision fp16 fp32 -o demo_out --record demo_out/bag
"""

from __future__ import annotations

import argparse
import os
import threading
import uuid
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from mp_slam_interfaces.msg import Keyframe, PoseGraph
from nav_msgs.msg import Odometry
from tqdm import tqdm

from mp_slam_ros.cli.progress import frame_progress
from mp_slam_ros.cli.demo import DEFAULT_SEQUENCE, QUICK_SEQUENCE, DemoSequence, ate_table, cached_sequence, summary_json, trajectory_with_corrections, write_demo_plots
from mp_slam_ros.eval.metrics import ErrorStats, Evaluation, evaluate
from mp_slam_ros.geometry.lie import se3_from_translation_quat
from mp_slam_ros.io.bags import BagReader
from mp_slam_ros.io.tum import TumTrajectory, read_tum
from mp_slam_ros.nodes.vo_inputs import INPUT_TOPICS
from mp_slam_ros.ros.bringup import BringupOptions, SlamProcess, bag_camera_topics
from mp_slam_ros.ros.conversions import ns_from_stamp, pose_from_msg
from mp_slam_ros.ros.messages import pose_graph_from_msg
from mp_slam_ros.presets import CONFIG_DIR, LOOP_CLOSURE_NODE, VO_NODE
from mp_slam_ros.ros.qos import KEYFRAME_QOS, POSE_GRAPH_QOS, reliable_qos

#: every frame tracked however loaded the CPU is (reliable inputs, no busy drops): the demo
#: measures accuracy, not what a slow machine drops
EVERY_FRAME = {"qos.reliability": "reliable", "qos.depth": 100, "max_pending_frames": 100_000}
#: The generated sequences' wheel odometry (with drift), fed to vo_node as ``wheel_odom``: a
#: household robot has it, and it carries the VO through the textureless view the quick sequence
#: has at 27 s (without it the VO restarted its map from a constant-velocity guess there, and one
#: run in four ended 2.9 m off with no loop closed).
WHEEL_ODOMETRY_TOPIC = "/odom"
QUIET_S = 4.0
DRAIN_TIMEOUT_S = 600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mp-slam demo``."""
    parser.add_argument("--precision", nargs="+", choices=("fp64", "fp32", "fp16", "mixed"), help="modes to run (default: fp64 mixed; --quick: mixed)")
    parser.add_argument("-o", "--output", type=Path, default=Path("demo_out"), help="folder of the plots and summary.json (default demo_out)")
    parser.add_argument("--quick", action="store_true", help=f"a {QUICK_SEQUENCE.duration_s:g} s sequence instead of {DEFAULT_SEQUENCE.duration_s:g} s")
    parser.add_argument("--seed", type=int, help="sequence seed (default 1)")
    parser.add_argument("--params", type=Path, default=CONFIG_DIR / "household_rgbd.yaml", help="parameter file of both nodes")
    parser.add_argument("--cache", type=Path, default=_default_cache(), help="where generated sequences are kept")
    parser.add_argument("-r", "--rate", type=float, default=1.0, help="replay speed factor (default 1.0)")
    parser.add_argument("--record", type=Path, metavar="OUT_BAG", help="record the nodes' outputs (one bag per mode: OUT_BAG_<precision>)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mp_slam_ros" / "demo"


@dataclass
class Collected:
    """What the demo reads from the nodes' topics during one run."""

    odometry: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (stamp ns, T_odom_base)
    keyframes: dict[int, tuple[int, np.ndarray]] = field(default_factory=dict)  # id -> (stamp ns, T_odom_cam)
    pose_graph: PoseGraph | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_odometry(self, msg: Odometry) -> None:
        pose = pose_from_msg(msg.pose.pose, "odometry.pose.pose")
        with self.lock:
            self.odometry.append((ns_from_stamp(msg.header.stamp), se3_from_translation_quat(pose[:3], pose[3:])[0]))

    def on_keyframe(self, msg: Keyframe) -> None:
        pose = pose_from_msg(msg.pose_odom_cam.pose, "keyframe.pose_odom_cam.pose")
        with self.lock:
            self.keyframes[int(msg.keyframe_id)] = (ns_from_stamp(msg.header.stamp), se3_from_translation_quat(pose[:3], pose[3:])[0])

    def on_pose_graph(self, msg: PoseGraph) -> None:
        with self.lock:
            self.pose_graph = msg


def run_mode(sequence_dir: Path, precision: str, sequence: DemoSequence, args: argparse.Namespace) -> Collected:
    """Both nodes over the replayed sequence in ``precision``; the collected outputs."""
    collected = Collected()
    with BagReader(sequence_dir / "bag") as bag:
        mode, camera_topics = bag_camera_topics(bag, None)
        vo_extra = dict(EVERY_FRAME)
        if WHEEL_ODOMETRY_TOPIC in bag.counts:  # the robot's wheel odometry: the VO's motion prior
            camera_topics = {**camera_topics, "wheel_odom": WHEEL_ODOMETRY_TOPIC}
            vo_extra["use_wheel_odom"] = True
        options = BringupOptions(
            args.params, mode.value, precision, True, f"/mp_slam_demo_{uuid.uuid4().hex[:6]}", camera_topics,
            extra={VO_NODE: vo_extra, LOOP_CLOSURE_NODE: {"loop.min_age_s": sequence.loop_min_age_s}},
        )
        process = SlamProcess(options)
        try:
            helper = process.helper
            helper.create_subscription(Odometry, "odometry", collected.on_odometry, reliable_qos(1000))
            helper.create_subscription(Keyframe, "keyframes", collected.on_keyframe, KEYFRAME_QOS)
            helper.create_subscription(PoseGraph, "pose_graph", collected.on_pose_graph, POSE_GRAPH_QOS)
            record = args.record.with_name(f"{args.record.name}_{precision}") if args.record else None
            with process.record(record) if record else nullcontext() as recorder:
                image_topic = camera_topics[INPUT_TOPICS[mode][0][0]]
                with tqdm(total=bag.counts[image_topic], unit="frame", desc=f"{precision}: replaying", disable=args.no_progress) as bar:
                    process.play(bag, args.rate, lambda message: bar.update(message.topic == image_topic),
                                 outputs=[process.vo_node.outputs.odometry])
                process.wait_until_quiet(QUIET_S, DRAIN_TIMEOUT_S)
            if recorder is not None:
                print(f"{precision}: recorded {sum(recorder.counts.values())} output messages to {record}")
        finally:
            process.close()
    return collected


def trajectories(collected: Collected) -> tuple[TumTrajectory, TumTrajectory]:
    """VO alone (T_odom_base per frame) and with loop closure (final keyframe corrections)."""
    odometry = sorted(collected.odometry, key=lambda item: item[0])
    stamps = np.array([s for s, _ in odometry], np.int64)
    T_odom_base = np.array([T for _, T in odometry]).reshape(-1, 4, 4)
    vo = TumTrajectory.from_matrices(stamps * 1e-9, T_odom_base)
    if collected.pose_graph is None:
        return vo, vo
    graph = pose_graph_from_msg(collected.pose_graph)
    kf_ids = [int(i) for i in graph.node_ids if int(i) in collected.keyframes]
    by_id = {int(i): pose for i, pose in zip(graph.node_ids, graph.node_poses)}
    kf_stamps = np.array([collected.keyframes[i][0] for i in kf_ids], np.int64)
    order = np.argsort(kf_stamps)
    T_odom_cam = np.array([collected.keyframes[kf_ids[k]][1] for k in order]).reshape(-1, 4, 4)
    T_map_cam = np.array([se3_from_translation_quat(by_id[kf_ids[k]][:3], by_id[kf_ids[k]][3:])[0] for k in order]).reshape(-1, 4, 4)
    return vo, trajectory_with_corrections(stamps, T_odom_base, kf_stamps[order], T_odom_cam, T_map_cam)


def run(args: argparse.Namespace) -> int:
    """Generate or reuse the sequence, run every mode, print the table and the plots' paths."""
    sequence = QUICK_SEQUENCE if args.quick else DEFAULT_SEQUENCE
    if args.seed is not None:
        sequence = replace(sequence, seed=args.seed)
    precisions = args.precision or (["mixed"] if args.quick else ["fp64", "mixed"])
    with frame_progress("generating the sequence", args.no_progress) as progress:
        sequence_dir = cached_sequence(sequence, args.cache, progress)
    ground_truth = read_tum(sequence_dir / "groundtruth.tum")
    rows: list[tuple[str, str, ErrorStats]] = []
    evaluations: dict[str, list[Evaluation]] = {}
    runs: dict[str, dict[str, int]] = {}
    for precision in precisions:
        collected = run_mode(sequence_dir, precision, sequence, args)
        vo, slam = trajectories(collected)
        pair = [evaluate(ground_truth, vo, f"{precision}: VO alone", max_time_diff_s=0.005),
                evaluate(ground_truth, slam, f"{precision}: with loop closure", max_time_diff_s=0.005)]
        evaluations[precision] = pair
        rows += [(precision, "VO alone", pair[0].ate_m), (precision, "with loop closure", pair[1].ate_m)]
        graph = None if collected.pose_graph is None else pose_graph_from_msg(collected.pose_graph)
        loops = 0 if graph is None else int(np.count_nonzero(graph.edge_kinds == PoseGraph.EDGE_KIND_LOOP))
        runs[precision] = {"frames": len(collected.odometry), "keyframes": len(collected.keyframes), "loop_edges": loops}
    print(ate_table(rows))
    for precision, counts in runs.items():
        print(f"{precision}: {counts['frames']} frames tracked, {counts['keyframes']} keyframes, {counts['loop_edges']} loop edges in the final graph")
    paths = write_demo_plots(sequence_dir, evaluations, args.output)
    summary = args.output / "summary.json"
    summary.write_text(summary_json(sequence, rows, {"sequence_dir": str(sequence_dir), "runs": runs}) + "\n")
    for path in [*paths, summary]:
        print(f"wrote {path}")
    return 0
