"""vo_node over DDS: does it keep up with a 30 Hz 640x480 RGB-D replay? (issue 10)

What a robot runs, process for process: ``vo_node`` in its own process (sensor QoS, BA in its
worker thread), the bag replayed at its recorded rate by ``mp-slam play --clock`` in a second one
(``use_sim_time``), and this process listening to the node's ``/diagnostics``, ``odometry`` and
``solver_stats``.
After the replay it waits until the node has processed everything it got, then reports: colour
frames in the bag, frames the node processed, frames it dropped (by reason, as the node counts
them: busy, unsynchronised, ...), frames missing upstream (sequence gaps: lost in DDS before the
node saw them), odometry messages received here, and the node's own rate. Answers first: the
trajectory the node published is scored against the ground truth (ATE) before any count is
reported. Each run uses its own ``ROS_DOMAIN_ID`` so that other ROS processes on the machine
neither see nor disturb it.

Side by side in one run: the node's ``qos.reliability`` (best effort, reliable) and Fast DDS's
builtin transports (its default: UDP plus shared memory with small segments, where a ~1 MB image
travels as UDP fragments that a full socket buffer drops; ``LARGE_DATA``: shared memory and TCP
for data, eProsima's setting for large messages), set in every process's environment.

    OPENBLAS_NUM_THREADS=1 python bench/bench_vo_dds.py               # seed 2, 20 s, 640x480
    OPENBLAS_NUM_THREADS=1 python bench/bench_vo_dds.py --rate 0.5    # half speed
    OPENBLAS_NUM_THREADS=1 python bench/bench_vo_dds.py --params config/household_rgbd.yaml \
        --transports LARGE_DATA --output results/vo_dds/household_preset   # as the launch files start it

Writes ``results/vo_dds/summary.json`` and ``summary.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_vo import sequence  # noqa: E402

from mp_slam_ros.eval.metrics import evaluate  # noqa: E402
from mp_slam_ros.io.bags import BagReader  # noqa: E402
from mp_slam_ros.io.tum import TumTrajectory, read_tum  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
COLOR_TOPIC = "/camera/color/image_raw"
#: the node is done when its processed-frame count has not changed for this long (s)
QUIET_S = 4.0
#: give up waiting for the node to start (first /diagnostics) after this long (s)
START_TIMEOUT_S = 120.0
#: the player waits this long before the first message, so that the node's subscriptions match
#: and the transports' connections and /tf_static are up: with 2 s, on an idle 2-core machine,
#: the first 8-13 frames of every replay were lost (never reached the node, or came before the
#: camera extrinsics); with 6 s, 600 of 600 were processed with either QoS
PLAY_DELAY_S = 6.0
#: Fast DDS's choice of builtin transports (eProsima: ``LARGE_DATA`` for large messages) and
#: the name meaning "leave it unset"
TRANSPORTS_VARIABLE = "FASTDDS_BUILTIN_TRANSPORTS"
DEFAULT = "default"


class Listener:
    """This process's subscriber: the node's latest diagnostics and every odometry pose."""

    def __init__(self) -> None:
        import rclpy  # noqa: PLC0415
        from diagnostic_msgs.msg import DiagnosticArray  # noqa: PLC0415
        from nav_msgs.msg import Odometry  # noqa: PLC0415
        from rclpy.qos import qos_profile_sensor_data  # noqa: PLC0415

        from mp_slam_interfaces.msg import SolverStats  # noqa: PLC0415
        from mp_slam_ros.ros.qos import SOLVER_STATS_QOS  # noqa: PLC0415

        rclpy.init()
        self._rclpy = rclpy
        self.node = rclpy.create_node("bench_vo_dds_listener")
        self.values: dict[str, str] = {}
        self.stamps_ns: list[int] = []
        self.poses: list[list[float]] = []  # x y z qx qy qz qw of base_link in odom
        self.ba_s: list[float] = []  # total_time_s of every window solve
        self.ba_time_limited = 0  # window solves stopped by ba.max_solve_time_ms
        self._time_limit = SolverStats.TERMINATION_TIME_LIMIT
        self._lock = threading.Lock()
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.node.create_subscription(Odometry, "odometry", self._on_odometry, qos_profile_sensor_data)
        self.node.create_subscription(SolverStats, "solver_stats", self._on_solver_stats, SOLVER_STATS_QOS)
        self._thread = threading.Thread(target=rclpy.spin, args=(self.node,), daemon=True)
        self._thread.start()

    def _on_diagnostics(self, message: object) -> None:
        for status in message.status:  # type: ignore[attr-defined]
            if status.name.endswith("visual odometry"):
                with self._lock:
                    self.values = {kv.key: kv.value for kv in status.values}

    def _on_odometry(self, message: object) -> None:
        stamp = message.header.stamp  # type: ignore[attr-defined]
        p = message.pose.pose.position  # type: ignore[attr-defined]
        q = message.pose.pose.orientation  # type: ignore[attr-defined]
        with self._lock:
            self.stamps_ns.append(stamp.sec * 1_000_000_000 + stamp.nanosec)
            self.poses.append([p.x, p.y, p.z, q.x, q.y, q.z, q.w])

    def _on_solver_stats(self, message: object) -> None:
        with self._lock:
            self.ba_s.append(float(message.total_time_s))  # type: ignore[attr-defined]
            self.ba_time_limited += int(message.termination == self._time_limit)  # type: ignore[attr-defined]

    def processed(self) -> int:
        """Frames the node says it processed (-1 before its first diagnostics)."""
        with self._lock:
            return int(self.values.get("frames_processed", -1))

    def close(self) -> None:
        self.node.destroy_node()
        self._rclpy.shutdown()


def _wait_for(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def _wait_until_quiet(listener: Listener) -> None:
    last, since = listener.processed(), time.monotonic()
    while time.monotonic() - since < QUIET_S:
        time.sleep(0.5)
        now = listener.processed()
        if now != last:
            last, since = now, time.monotonic()


def run(
    bag: Path, truth: Path, rate: float, node_parameters: tuple[str, ...] = (), transports: str = DEFAULT,
    params_file: Path | None = None,
) -> dict:
    """One replay into a fresh vo_node (``params_file``: its ROS 2 parameter file, e.g. a
    preset; ``node_parameters``: extra ``name:=value`` ROS parameters, applied after it;
    ``transports``: Fast DDS builtin transports of every process, or :data:`DEFAULT` for Fast
    DDS's own default); the counts, the window-solve times and the ATE of what it published."""
    env = {**os.environ, "ROS_DOMAIN_ID": str(random.randint(100, 200)), "OPENBLAS_NUM_THREADS": "1"}
    env.pop(TRANSPORTS_VARIABLE, None)
    if transports != DEFAULT:
        env[TRANSPORTS_VARIABLE] = transports
    os.environ.clear()
    os.environ.update(env)  # this process's listener joins with the same domain and transports
    with BagReader(bag) as reader:
        frames_in_bag = int(reader.counts.get(COLOR_TOPIC, 0))
    parameters = [item for assignment in ("use_sim_time:=true", "mode:=rgbd", *node_parameters) for item in ("-p", assignment)]
    preset = ["--params-file", str(params_file)] if params_file is not None else []
    node = subprocess.Popen([str(VENV_BIN / "vo_node"), "--ros-args", *preset, *parameters],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    listener = Listener()
    try:
        if not _wait_for(lambda: listener.processed() >= 0, START_TIMEOUT_S):
            raise RuntimeError("vo_node published no /diagnostics within "
                               f"{START_TIMEOUT_S:g} s: {node.stderr.read() if node.poll() is not None else ''}")
        started = time.monotonic()
        subprocess.run([str(VENV_BIN / "mp-slam"), "play", str(bag), "--clock", "--rate", f"{rate:g}",
                        "--delay", f"{PLAY_DELAY_S:g}", "--no-progress"],
                       env=env, check=True, stdout=subprocess.DEVNULL)
        replay_s = time.monotonic() - started
        _wait_until_quiet(listener)
        values, stamps, poses = dict(listener.values), list(listener.stamps_ns), list(listener.poses)
        ba_ms, ba_time_limited = 1e3 * np.array(listener.ba_s), listener.ba_time_limited
    finally:
        listener.close()
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=20)
        except subprocess.TimeoutExpired:
            node.kill()
    if not stamps:
        raise RuntimeError("no odometry received from vo_node")
    pose_array = np.array(poses)
    trajectory = TumTrajectory(np.array(stamps, dtype=np.float64) * 1e-9, pose_array[:, :3], pose_array[:, 3:])
    ate = evaluate(read_tum(truth), trajectory, bag.parent.name).ate_m
    dropped = {key.removeprefix("dropped."): int(value) for key, value in values.items() if key.startswith("dropped.")}
    return {
        "bag": str(bag), "rate": rate, "params_file": str(params_file) if params_file else None,
        "node_parameters": list(node_parameters), "transports": transports,
        "replay_s": replay_s - PLAY_DELAY_S, "frames_in_bag": frames_in_bag,
        "frames_processed": int(values.get("frames_processed", 0)),
        "frames_dropped": int(values.get("frames_dropped", 0)),
        "frames_dropped_unsynchronised": int(values.get("frames_dropped_unsynchronised", 0)),
        "frames_missing_upstream": int(values.get("frames_missing_upstream", 0)),
        "dropped_by_reason": dropped,
        "frames_never_seen": frames_in_bag - int(values.get("frames_processed", 0)) - int(values.get("frames_dropped", 0)),
        "odometry_received": len(stamps), "lost_frames": int(values.get("lost_frames", 0)),
        "node_rate_hz": float(values.get("rate_hz", 0.0)), "ate_rmse_m": ate.rmse, "ba_solves": int(ba_ms.size),
        "ba_time_limited": ba_time_limited,
        "ba_ms": dict(zip(("p50", "p95", "max"), np.percentile(ba_ms, [50, 95, 100]).tolist())) if ba_ms.size else None,
    }


def _row(result: dict) -> str:
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(result["dropped_by_reason"].items())) or "none"
    ba = result["ba_ms"]
    solves = f"{result['ba_solves']}: {ba['p50']:.1f} / {ba['p95']:.1f} / {ba['max']:.1f}" if ba else "none"
    solves += f" ({result.get('ba_time_limited', 0)} time-limited)" if result.get("ba_time_limited") else ""
    return (
        f"| {result['transports']} | {' '.join(result['node_parameters']) or '(defaults)'} | {result['frames_in_bag']} | "
        f"{result['frames_processed']} | {result['frames_dropped']} ({reasons}) | "
        f"{result['frames_dropped_unsynchronised']} | {result['frames_missing_upstream']} | {result['frames_never_seen']} | "
        f"{result['odometry_received']} | {result['lost_frames']} | {result['node_rate_hz']:.1f} | {solves} | "
        f"{result['ate_rmse_m']:.4f} |"
    )


def markdown(results: list[dict], command: str) -> str:
    """The summary table of one run of the bench (a row per configuration)."""
    return "\n".join([
        "# vo_node over DDS: 640x480 RGB-D replay", "", f"    {command}", "",
        f"Node parameters: {results[0]['params_file'] or 'the defaults'}, then those of each row.", "",
        f"| Fast DDS transports ({TRANSPORTS_VARIABLE}) | node parameters | frames in bag | processed | dropped by the node (reasons) | unsynchronised | missing upstream | never seen | odometry received | lost | node rate Hz | window solves: p50 / p95 / max ms | ATE RMSE m |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---:|",
        *[_row(result) for result in results],
        "", f"Replay rate x{results[0]['rate']:g} ({results[0]['replay_s']:.1f} s wall, after a {PLAY_DELAY_S:g}-s "
        f"discovery delay); machine: {platform.node()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the end.", "",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=1.0, help="replay speed factor")
    parser.add_argument("-p", "--node-parameter", action="append", default=[], metavar="NAME:=VALUE",
                        help="extra vo_node parameter, e.g. qos.reliability:=reliable (repeatable)")
    parser.add_argument("--transports", nargs="+", default=[DEFAULT, "LARGE_DATA"],
                        help=f"Fast DDS builtin transports to compare ({TRANSPORTS_VARIABLE}; {DEFAULT}: unset)")
    parser.add_argument("--reliability", nargs="+", choices=["best_effort", "reliable"], default=["best_effort", "reliable"],
                        help="the node's qos.reliability values to compare")
    parser.add_argument("--compare", nargs="+", default=[""], metavar="'NAME:=VALUE ...'",
                        help="node parameter sets compared side by side, one row each (space-separated "
                             "assignments; '' for none), e.g. '' 'ba.max_solve_time_ms:=40'")
    parser.add_argument("--repeats", type=int, default=1, help="run every row this many times, alternating")
    parser.add_argument("--params", type=Path, default=None, metavar="YAML",
                        help="the node's ROS 2 parameter file, e.g. config/household_rgbd.yaml (default: none, the node's defaults)")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mp_slam_bench_vo"))
    parser.add_argument("--output", type=Path, default=ROOT / "results" / "vo_dds")
    args = parser.parse_args()
    path = sequence(args.cache, args.seed, args.duration, 1.0)
    results = []
    rows = [(transports, (f"qos.reliability:={reliability}", *args.node_parameter, *compared.split()))
            for transports in args.transports for reliability in args.reliability for compared in args.compare]
    for _ in range(args.repeats):
        for transports, parameters in rows:
            results.append(run(path / "bag", path / "groundtruth.tum", args.rate, parameters, transports, args.params))
            print(_row(results[-1]), flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "summary.json").write_text(json.dumps(results, indent=1))
    command = "OPENBLAS_NUM_THREADS=1 python bench/bench_vo_dds.py " + shlex.join(sys.argv[1:])
    (args.output / "summary.md").write_text(markdown(results, command.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
