"""Where along a run is the loop-closed trajectory wrong? Error over time of a kept run.

Replays the keyframes that ``bench_loop_closure.py --runs DIR`` kept for one sequence through the
current loop closure, aligns the corrected trajectory to the ground truth (SE(3), as the bench's
ATE) and prints, per time bin: the mean and max position error, the loop edges whose query
keyframe falls in the bin, the VO's lost frames and the keyframes. Then the loops as (query,
match) times and the odometry edges the graph weighs least (where the VO started a new map after
lost tracking), and how far the loop and odometry edges' measurements are from the ground truth,
in metres and degrees and in their own sigmas (a consistent edge errs ~1 sigma per axis; one that
errs 10 sigmas is weighted 100 times too much). It answers "is the error where no loop reaches,
where tracking was lost, or in edges the graph trusts more than they deserve?".

    OPENBLAS_NUM_THREADS=1 python bench/lc_error_over_time.py /tmp/lc/bench180/twin-s3-180s-x0.5-stereo \\
        /tmp/lc/runs_t3/twin-s3-180s-x0.5-stereo-stereo.pkl --mode stereo
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_loop_closure import edge_errors, keyframe_truth, offline_config, replay  # noqa: E402

from mp_slam_ros.backend.pose_graph import PoseGraph  # noqa: E402
from mp_slam_ros.cli.slam import SlamRun  # noqa: E402
from mp_slam_ros.eval.metrics import evaluate  # noqa: E402
from mp_slam_ros.io.tum import read_tum  # noqa: E402
from mp_slam_ros.pipelines.vo import TrackingStatus  # noqa: E402


def edge_summary(graph: PoseGraph, T_world_cam: np.ndarray, loops: bool) -> str:
    """Percentiles of the loop (or odometry) edges' errors against the true relative poses of
    their keyframes: translation (m), rotation (deg), and the whitened error norm per axis
    ``sqrt(e^T I e / 6)`` (~1 for an edge whose information matches its error)."""
    chosen = graph.is_loop if loops else ~graph.is_loop
    if not chosen.any():
        return f"{'loop' if loops else 'odometry'} edges: none"
    error = edge_errors(graph, T_world_cam, chosen)
    whitened = np.sqrt(np.einsum("ei,eij,ej->e", error, graph.information[chosen], error) / 6.0)
    rows = (("m", np.linalg.norm(error[:, :3], axis=1)), ("deg", np.degrees(np.linalg.norm(error[:, 3:], axis=1))), ("sigmas", whitened))
    return f"{'loop' if loops else 'odometry'} edges ({int(chosen.sum())}) against the ground truth, p50 / p90 / max: " + "; ".join(
        f"{' / '.join(f'{v:.3g}' for v in np.percentile(values, [50, 90, 100]))} {unit}" for unit, values in rows)


def _in_bin(times_s: np.ndarray, start_s: float, bin_s: float) -> np.ndarray:
    """Mask of the ``times_s`` in ``[start_s, start_s + bin_s)``."""
    return (times_s >= start_s) & (times_s < start_s + bin_s)


def report(run: SlamRun, groundtruth: Path, bin_s: float, weakest: int) -> str:
    """The per-bin table, the loops and the weakest odometry edges, as text."""
    trajectory = run.trajectory_map()
    ate = evaluate(read_tum(groundtruth), trajectory, "loop closure")  # SE(3)-aligned, as the bench's ATE
    origin_s = trajectory.timestamps_s[0]
    t_s, error_m = ate.timestamps_s - origin_s, ate.ate_errors_m
    graph = run.loop_closure.graph.snapshot().graph
    keyframe_s = run.loop_closure.poses()[1] * 1e-9 - origin_s
    loop_s = keyframe_s[graph.edge_to[graph.is_loop]]
    frame_s = np.array(run.vo.stamps_s) - origin_s
    lost = np.array([status is TrackingStatus.LOST for status in run.vo.statuses])
    lines = [f"ATE rmse {np.sqrt(np.mean(error_m**2)):.3f} m, max {error_m.max():.3f} m at {t_s[error_m.argmax()]:.1f} s", "",
             "| time s | error mean / max m | loops | lost frames | keyframes |", "|---|---|---:|---:|---:|"]
    for start in np.arange(0.0, t_s[-1] + 1e-9, bin_s):
        inside = _in_bin(t_s, start, bin_s)
        errors = f"{error_m[inside].mean():.3f} / {error_m[inside].max():.3f}" if inside.any() else "-"
        lines.append(f"| {start:.0f}-{start + bin_s:.0f} | {errors} | {_in_bin(loop_s, start, bin_s).sum()} | "
                     f"{(lost & _in_bin(frame_s, start, bin_s)).sum()} | {_in_bin(keyframe_s, start, bin_s).sum()} |")
    pairs = sorted({(round(keyframe_s[q]), round(keyframe_s[m])) for q, m in zip(graph.edge_to[graph.is_loop], graph.edge_from[graph.is_loop])})
    lines += ["", "loops (query s, match s): " + ", ".join(f"({q}, {m})" for q, m in pairs)]
    odometry = np.flatnonzero(~graph.is_loop)
    rotation_variance = np.array([np.trace(np.linalg.inv(graph.information[e])[3:, 3:]) for e in odometry])
    for e in odometry[np.argsort(-rotation_variance)[:weakest]]:
        sigmas = np.sqrt(np.diag(np.linalg.inv(graph.information[e])))
        lines.append(f"weak odometry edge into {keyframe_s[graph.edge_to[e]]:.1f} s: sigma {sigmas[:3].max():.3f} m, {np.degrees(sigmas[3:].max()):.1f} deg")
    T_world_cam = keyframe_truth(run, groundtruth)
    lines += ["", edge_summary(graph, T_world_cam, loops=True), edge_summary(graph, T_world_cam, loops=False)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sequence", type=Path, help="the generated sequence (its groundtruth.tum)")
    parser.add_argument("run", type=Path, help="the run kept by bench_loop_closure.py --runs (.pkl)")
    parser.add_argument("--mode", choices=["rgbd", "stereo"], required=True, help="the run's VO mode")
    parser.add_argument("--bin-s", type=float, default=5.0, help="time bin (s)")
    parser.add_argument("--weakest", type=int, default=5, help="odometry edges to list, least certain rotation first")
    args = parser.parse_args()
    with args.run.open("rb") as f:  # written by bench_loop_closure.py: a trusted local cache
        kept = pickle.load(f)
    loop_closure, _ = replay(kept["keyframes"], offline_config(args.mode).loop_closure)
    run = SlamRun(kept["vo"], loop_closure, kept["frame_nodes"], kept["keyframes"], kept["T_base_cam"])
    print(report(run, args.sequence / "groundtruth.tum", args.bin_s, args.weakest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
