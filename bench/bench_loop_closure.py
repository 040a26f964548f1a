"""Loop-closure benchmark: accuracy on generated household sequences, false loops in twin-room
houses, place-recognition precision/recall, and latency (place query, incremental PGO).

Answers first: per sequence (RGB-D and a 0.1 m stereo pair in one bag) and VO mode (``--modes``,
``vo.mode``) the VO runs once (synchronous BA), its keyframes go through the loop closure in
``mixed`` and in ``fp64`` (cholesky), each followed by the global BA (``loop_closure.global_ba``,
as ``mp-slam slam``; fp64: the direct Schur solver); ATE (evo, SE(3) alignment) of the VO alone,
of the PGO alone (``ate_pgo``: before the global BA) and of both final trajectories against the
generator's ground truth, and ``mixed`` vs ``fp64``; the open
tail after the last loop (what no loop can correct: the VO's drift over it from the true pose).
Loops are judged with the ground truth: a loop is correct when its measured relative pose is
within 0.2 m / 5 deg of the true one; a true revisit is a keyframe with an older one (by
``loop.min_age_s``) within 0.5 m and 30 deg, a recognisable one a revisit of which that older
keyframe's points with depth are re-observed by 30 keypoints at the true relative pose (what
verification needs). Twin-room houses count accepted wrong loops.
Then timings: place query p95 at 1,000 keyframes, incremental PGO p95 at 1,000 and 5,000.

    PYTHONPATH=. .venv/bin/python bench/bench_loop_closure.py [--seeds 1 2 3 4 5] [--twin-seeds ...]
        [--modes rgbd stereo] [--duration 180] [--image-scale 0.5] [--cache DIR] [--out results/loop_closure]
        [--runs DIR [--replay]] [--wheel-odom /odom]

Writes ``OUT/bench_loop_closure.json`` after every run (per-mode summary included). ``--runs``
keeps each run's odometry and keyframes (a local pickle cache); with ``--replay`` the keyframes
kept there go through the loop closure of the current code, without running the VO again, and
each missed true revisit is put in a bucket (``loops.missed``: no place candidate, none at the
place, or why the first one at the place was rejected).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from mp_slam_ros.backend.incremental_pgo import IncrementalPoseGraph, Loop, PGOConfig, solve_snapshot
from mp_slam_ros.backend.keyframe_store import StoredKeyframe
from mp_slam_ros.backend.place_recognition import PlaceRecognizer
from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.cli.slam import SlamConfig, SlamRun, final_refinement, run_slam
from mp_slam_ros.config import with_updates
from mp_slam_ros.eval.metrics import evaluate
from mp_slam_ros.frontend.matching import match_by_projection
from mp_slam_ros.geometry.lie import se3_inverse, se3_log
from mp_slam_ros.io.tum import TumTrajectory, read_tum
from mp_slam_ros.pipelines.loop_closure import CandidateResult, LoopClosure, LoopResult
from mp_slam_ros.pipelines.loop_closure_config import LoopClosureConfig
from mp_slam_ros.pipelines.vo_config import SensorMode
from mp_slam_ros.precision import Precision
from mp_slam_ros.sim.config import SequenceConfig
from mp_slam_ros.sim.pose_graphs import household_graph
from mp_slam_ros.sim.sequence import generate_sequence

REVISIT_M, REVISIT_DEG = 0.5, 30.0
#: a revisit a camera can recognise: an older keyframe (as a revisit) of which the query re-observes
#: SHARED_MIN keypoints with depth (loop.min_matches) by the true poses (:func:`shared_keypoints`)
SHARED_MIN, SHARED_PX, SHARED_HAMMING = 30, 3.0, 64
CORRECT_M, CORRECT_DEG = 0.2, 5.0
STEREO_BASELINE_M = 0.1  # as bench/bench_vo.py


def sequence(cache: Path, seed: int, duration_s: float, image_scale: float, twin: bool) -> Path:
    """The generated sequence directory (reused from ``cache`` when present): RGB-D and a
    ``STEREO_BASELINE_M`` stereo pair in one bag, so both VO modes see the same motion."""
    out = cache / f"{'twin' if twin else 'house'}-s{seed}-{duration_s:g}s-x{image_scale:g}-stereo"
    if not (out / "groundtruth.tum").exists():
        base = SequenceConfig()
        camera = replace(base.camera, image_scale=image_scale, stereo_baseline_m=STEREO_BASELINE_M)
        cfg = replace(base, seed=seed, duration_s=duration_s, camera=camera, house=replace(base.house, twin_rooms=twin))
        generate_sequence(cfg, out)
    return out


def keyframe_truth(run: SlamRun, gt_path: Path) -> np.ndarray:
    """True ``T_world_cam`` ``(N, 4, 4)`` of the loop closure's keyframes."""
    gt = read_tum(gt_path)
    _, stamps_ns, _ = run.loop_closure.poses()
    index = np.clip(np.searchsorted(gt.timestamps_s, stamps_ns * 1e-9 - 1e-6), 0, len(gt) - 1)
    return gt.matrices()[index] @ run.T_base_cam


def edge_errors(graph: PoseGraph, T_world_cam: np.ndarray, chosen: np.ndarray) -> np.ndarray:
    """Tangent error ``(E, 6)`` ``[translation, rotation]`` of the ``chosen`` edges' measurements
    against the true relative poses of their nodes (``T_world_cam`` ``(N, 4, 4)``)."""
    a, b = graph.edge_from[chosen], graph.edge_to[chosen]
    return se3_log(se3_inverse(graph.T_from_to[chosen]) @ se3_inverse(T_world_cam[a]) @ T_world_cam[b])


def judge_loops(
    loop_closure: LoopClosure, T_world_cam: np.ndarray, min_age_s: float, results: list[LoopResult] | None = None,
) -> dict[str, object]:
    """Accepted loops correct/wrong by the ground truth, recall of true revisits and, given the
    loop closure's ``results`` per keyframe, why the missed ones were missed."""
    snapshot = loop_closure.graph.snapshot().graph
    loops = snapshot.is_loop
    correct, wrong_loops = [], []
    errors = edge_errors(snapshot, T_world_cam, loops) if loops.any() else np.zeros((0, 6))
    for a, b, error in zip(snapshot.edge_from[loops], snapshot.edge_to[loops], errors):
        error_m, error_deg = float(np.linalg.norm(error[:3])), float(np.degrees(np.linalg.norm(error[3:])))
        correct.append(error_m < CORRECT_M and error_deg < CORRECT_DEG)
        if not correct[-1]:
            wrong_loops.append({"match": int(a), "query": int(b), "error_m": error_m, "error_deg": error_deg})
    _, stamps_ns, _ = loop_closure.poses()
    stamps_s, P, Z = stamps_ns * 1e-9, T_world_cam[:, :3, 3], T_world_cam[:, :3, 2]
    revisits = [
        q for q in range(len(P))
        if np.any((stamps_s <= stamps_s[q] - min_age_s) & (np.linalg.norm(P - P[q], axis=1) < REVISIT_M)
                  & (Z @ Z[q] > np.cos(np.radians(REVISIT_DEG))))
    ]
    closed = set(snapshot.edge_to[loops].tolist())
    found = sum(q in closed for q in revisits)
    seen = [q for q in revisits if recognisable(loop_closure, T_world_cam, q, stamps_s <= stamps_s[q] - min_age_s)]
    # keyframes with fewer keypoints than loop.min_inliers cannot be verified as a query (reported, still counted)
    few = [q for q in revisits if len(loop_closure.store[q].keypoints_px) < loop_closure.config.loop.min_inliers]
    accepted = int(loops.sum())
    missed = None if results is None else missed_revisits(results, [q for q in revisits if q not in closed], P, Z)
    return {
        "accepted": accepted, "wrong": int(accepted - sum(correct)), "wrong_loops": wrong_loops, "missed": missed,
        "precision": float(np.mean(correct)) if correct else None,
        "true_revisits": len(revisits), "revisits_closed": found,
        "revisits_few_keypoints": len(few), "few_keypoints_closed": sum(q in closed for q in few),
        "recall": found / len(revisits) if revisits else None,
        "recognisable_revisits": len(seen), "recognisable_closed": sum(q in closed for q in seen),
        "proposed": loop_closure.counts["candidates"], "verified": loop_closure.counts["verified"],
        "rejected_consistency": loop_closure.counts["rejected_consistency"],
        "rejected_verification": loop_closure.counts["rejected_verification"],
        "rejected_degenerate": loop_closure.counts["rejected_degenerate"],
    }


def shared_keypoints(query: StoredKeyframe, old: StoredKeyframe, T_old_query: np.ndarray) -> int:
    """How many keypoints with depth of ``old`` the ``query`` re-observes (true relative pose
    ``T_old_query``): projected within ``SHARED_PX`` of a query keypoint whose descriptor is within
    ``SHARED_HAMMING`` bits (each keypoint once): the matches a verification could find at best."""
    with_depth = np.all(np.isfinite(old.points_cam), axis=1)
    T_query_old = se3_inverse(T_old_query)
    in_query = old.points_cam[with_depth].astype(np.float64) @ T_query_old[:3, :3].T + T_query_old[:3, 3]
    ahead = in_query[:, 2] > 1e-3
    uv = in_query[ahead, :2] / in_query[ahead, 2:] * np.diag(query.K)[:2] + query.K[:2, 2]
    matched = match_by_projection(query.keypoints_px, query.descriptors, uv, old.descriptors[with_depth][ahead], SHARED_PX, SHARED_HAMMING)
    return int(np.sum(matched >= 0))


def recognisable(loop_closure: LoopClosure, T_world_cam: np.ndarray, q: int, older: np.ndarray) -> bool:
    """Whether revisit ``q`` has an ``older`` keyframe (mask ``(N,)``) within the revisit distance
    and angle that re-observes ``SHARED_MIN`` of its keypoints (:func:`shared_keypoints`)."""
    P, Z = T_world_cam[:, :3, 3], T_world_cam[:, :3, 2]
    near = np.flatnonzero(older & (np.linalg.norm(P - P[q], axis=1) < REVISIT_M) & (Z @ Z[q] > np.cos(np.radians(REVISIT_DEG))))
    store = loop_closure.store
    return any(shared_keypoints(store[q], store[int(n)], se3_inverse(T_world_cam[n]) @ T_world_cam[q]) >= SHARED_MIN for n in near)


def missed_revisits(results: list[LoopResult], missed: list[int], P: np.ndarray, Z: np.ndarray) -> dict[str, int]:
    """Buckets of the ``missed`` true revisit nodes (true positions ``P`` and optical axes ``Z``
    ``(N, 3)``): ``no candidate`` (place recognition returned none), ``no candidate at the
    place`` (none within the revisit distance and angle), else what became of the first one
    there: its verification's reason (numbers as N) or ``verified, rejected by consistency``."""
    by_node = {r.node: r for r in results if r.node is not None}
    buckets: Counter[str] = Counter()
    for q in missed:
        candidates = by_node[q].candidates if q in by_node else []
        at_place = [c for c in candidates if np.linalg.norm(P[c.match_node] - P[q]) < REVISIT_M
                    and Z[c.match_node] @ Z[q] > np.cos(np.radians(REVISIT_DEG))]
        if not candidates:
            buckets["no candidate"] += 1
        elif not at_place:
            buckets["no candidate at the place"] += 1
        else:
            buckets[_fate(at_place[0])] += 1
    return dict(buckets.most_common())


def _fate(candidate: CandidateResult) -> str:
    if candidate.verified:
        return "verified, rejected by consistency"
    return re.sub(r"\d+(\.\d+)?", "N", candidate.reason.split(" (")[0])


def open_tail(run: SlamRun, T_world_cam: np.ndarray, gt: TumTrajectory) -> dict[str, object] | None:
    """What no loop can correct: the stretch after the last keyframe with an accepted loop.
    ``tail_s`` its length; ``vo_tail_drift_m`` the odometry alone over it, started at the true
    pose of that keyframe (position error at the last keyframe); ``ate_until_last_loop`` the ATE
    of the corrected frames up to that keyframe (None without loops)."""
    snapshot = run.loop_closure.graph.snapshot().graph
    if not snapshot.is_loop.any():
        return None
    last = int(snapshot.edge_to[snapshot.is_loop].max())
    _, stamps_ns, _ = run.loop_closure.poses()
    T_odom_cam = np.array([k.T_odom_cam for k in run.loop_closure.store.keyframes])
    T_chained = T_world_cam[last] @ se3_inverse(T_odom_cam[last]) @ T_odom_cam[-1]
    corrected = run.trajectory_map()
    until = corrected.timestamps_s <= stamps_ns[last] * 1e-9
    ate = None
    if until.sum() >= 3:
        subset = TumTrajectory(corrected.timestamps_s[until], corrected.positions_m[until], corrected.quats_xyzw[until])
        ate = asdict(evaluate(gt, subset, "until last loop").ate_m)
    return {"tail_s": float((stamps_ns[-1] - stamps_ns[last]) * 1e-9),
            "vo_tail_drift_m": float(np.linalg.norm(T_chained[:3, 3] - T_world_cam[-1][:3, 3])), "ate_until_last_loop": ate}


def replay(keyframes: list, config: LoopClosureConfig) -> tuple[LoopClosure, list[LoopResult]]:
    """``keyframes`` through a new loop closure of ``config``; its result per keyframe."""
    loop_closure = LoopClosure(config)
    return loop_closure, [loop_closure.add_keyframe(keyframe) for keyframe in keyframes]


def offline_config(mode: str) -> SlamConfig:
    """Default options in VO mode ``mode`` with the offline run's synchronous BA and PGO (as
    ``mp-slam slam``: deterministic, every keyframe's window solved before the next frame)."""
    return with_updates(SlamConfig(), {"vo.mode": mode, "vo.ba.synchronous": True, "loop_closure.pgo.synchronous": True})


def slam_run(
    seq: Path, config: SlamConfig, runs: Path | None, replay_runs: bool, wheel_topic: str | None = None,
) -> tuple[SlamRun, list[LoopResult] | None]:
    """VO (with the bag's ``wheel_topic`` odometry as its prior) + loop closure on ``seq`` (kept
    as ``runs/<sequence>-<mode>.pkl`` when ``runs`` is given), or with ``replay_runs`` the kept
    run's keyframes through a new loop closure (with its results per keyframe)."""
    path = runs / f"{seq.name}-{config.vo.mode.value}.pkl" if runs is not None else None
    if replay_runs and path is not None:
        with path.open("rb") as f:  # written by this bench: a trusted local cache
            kept = pickle.load(f)
        loop_closure, results = replay(kept["keyframes"], config.loop_closure)
        global_ba = final_refinement(loop_closure)
        return SlamRun(kept["vo"], loop_closure, kept["frame_nodes"], kept["keyframes"], kept["T_base_cam"], global_ba), results
    run = run_slam(seq / "bag", config, wheel_topic=wheel_topic)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = {"vo": run.vo, "frame_nodes": run.frame_nodes, "keyframes": run.keyframes, "T_base_cam": run.T_base_cam}
        with path.open("wb") as f:
            pickle.dump(kept, f)
    return run, None


def accuracy(
    seq: Path, config: SlamConfig, runs: Path | None = None, replay_runs: bool = False, wheel_topic: str | None = None,
) -> tuple[dict[str, object], list]:
    """VO alone vs loop closure (mixed, fp64) on one sequence; loops judged by the ground truth.
    Returns the row and the run's keyframes."""
    started = time.perf_counter()
    run, results = slam_run(seq, config, runs, replay_runs, wheel_topic)
    gt = read_tum(seq / "groundtruth.tum")
    fp64_config = with_updates(config.loop_closure, {"pgo.precision": "fp64", "pgo.solver": "cholesky", "global_ba.precision": "fp64", "global_ba.solver": "schur"})
    fp64 = replay(run.keyframes, fp64_config)[0]
    fp64_ba = final_refinement(fp64)
    out: dict[str, object] = {"sequence": seq.name, "mode": run.vo.mode, "frames": len(run.vo.statuses), "keyframes": len(run.keyframes)}
    trajectories = [("vo", run.vo.trajectory()), ("mixed", run.trajectory_map()), ("fp64", run.trajectory_map(fp64))]
    if run.global_ba is not None:
        trajectories.append(("pgo", run.trajectory_map(T_map_cam=run.global_ba.T_map_cam_before)))
    for name, trajectory in trajectories:
        out[f"ate_{name}"] = asdict(evaluate(gt, trajectory, name).ate_m)
    out["global_ba"] = run.global_ba.as_dict() if run.global_ba else None
    out["global_ba_fp64"] = fp64_ba.as_dict() if fp64_ba else None
    T_world_cam = keyframe_truth(run, seq / "groundtruth.tum")
    out["loops"] = judge_loops(run.loop_closure, T_world_cam, config.loop_closure.loop.min_age_s, results)
    out["open_tail"] = open_tail(run, T_world_cam, gt)
    pgo_ms = [1e3 * s.timings.total_s for s in run.loop_closure.solve_summaries]
    out["pgo_ms"] = {"p50": float(np.percentile(pgo_ms, 50)), "p95": float(np.percentile(pgo_ms, 95))} if pgo_ms else None
    out["converged"] = all(s.converged for s in run.loop_closure.solve_summaries) and (run.global_ba is None or run.global_ba.summary.converged)
    out["wall_s"] = time.perf_counter() - started
    return out, run.keyframes


def place_query_latency(run_keyframes: list, config: SlamConfig, size: int = 1000, queries: int = 100) -> dict[str, float]:
    """Query p50/p95 (ms, wall and process CPU time, and the load average: on a shared machine
    the wall time includes waiting for a core) with ``size`` keyframes in the database (the
    run's descriptors, cycled with bit noise so no two are equal)."""
    rng = np.random.default_rng(0)
    recognizer = PlaceRecognizer(config.loop_closure.places)
    times, cpu_times = [], []
    for k in range(size + queries):
        descriptors = run_keyframes[k % len(run_keyframes)].descriptors.copy()
        flip = rng.integers(0, descriptors.size, descriptors.size // 50)
        descriptors.reshape(-1)[flip] ^= 1
        started, cpu_started = time.perf_counter(), time.process_time()
        recognizer.query_and_add(k, descriptors, k - 20)
        if k >= size:
            times.append(1e3 * (time.perf_counter() - started))
            cpu_times.append(1e3 * (time.process_time() - cpu_started))
    return {"keyframes": size, "p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "cpu_p50_ms": float(np.percentile(cpu_times, 50)), "cpu_p95_ms": float(np.percentile(cpu_times, 95)),
            "load_average": os.getloadavg()[0]}


def pgo_latency(num_poses: int, precision: str, solves: int = 12) -> dict[str, object]:
    """Incremental solves on a household graph: the first ``N - tail`` poses solved once, then
    poses appended one at a time with a warm-started solve after each new loop (timed)."""
    problem = household_graph(num_poses, dim=3, seed=1)
    graph = problem.graph
    odometry = ~graph.is_loop
    order = np.argsort(graph.edge_to[odometry])
    o_from, o_to = graph.edge_from[odometry][order], graph.edge_to[odometry][order]
    o_T, o_info = graph.T_from_to[odometry][order], graph.information[odometry][order]
    loops = [Loop(int(a), int(b), T, I) for a, b, T, I, is_loop in zip(graph.edge_from, graph.edge_to, graph.T_from_to, graph.information, graph.is_loop) if is_loop]
    loop_nodes = sorted({loop.query for loop in loops})
    start = loop_nodes[-solves] if len(loop_nodes) >= solves else loop_nodes[0]
    pgo = IncrementalPoseGraph()
    config = PGOConfig(precision=Precision(precision))
    pgo.add_node(graph.T_world_node[0])
    times, iterations, converged = [], [], True
    for a, b, T, information in zip(o_from, o_to, o_T, o_info):
        pgo.add_node(None, int(a), T, information)
        if b < start or b not in loop_nodes:
            continue
        pgo.set_loops([loop for loop in loops if loop.query <= b])
        snapshot = pgo.snapshot()
        result, summary = solve_snapshot(snapshot, config)
        pgo.apply(snapshot, result.graph.T_world_node)
        if b > start:  # the first solve (from dead reckoning) is the warm-up
            times.append(1e3 * summary.timings.total_s)
            iterations.append(summary.num_iterations)
            converged &= summary.converged
    return {"poses": num_poses, "precision": precision, "solves": len(times), "p50_ms": float(np.percentile(times, 50)),
            "p95_ms": float(np.percentile(times, 95)), "iterations_p50": float(np.median(iterations)), "converged": bool(converged)}


def summarize(rows: list[dict[str, object]]) -> dict[str, dict[str, object]]:
    """Per VO mode over all sequences: worst ATE RMSE with loop closure and worst ratio to the
    VO alone, worst ``mixed`` / ``fp64``, wrong loops, recall of true revisits."""
    def rmse(row: dict[str, object], name: str) -> float:
        return float(row[f"ate_{name}"]["rmse"])  # type: ignore[index]

    out: dict[str, dict[str, object]] = {}
    for mode in sorted({str(r["mode"]) for r in rows}):
        group = [r for r in rows if r["mode"] == mode]
        revisits = sum(int(r["loops"]["true_revisits"]) for r in group)  # type: ignore[index]
        closed = sum(int(r["loops"]["revisits_closed"]) for r in group)  # type: ignore[index]
        out[mode] = {
            "sequences": len(group),
            "ate_mixed_max_m": max(rmse(r, "mixed") for r in group),
            "ate_pgo_max_m": max(rmse(r, "pgo" if "ate_pgo" in r else "mixed") for r in group),
            "ate_ratio_to_vo_max": max(rmse(r, "mixed") / rmse(r, "vo") for r in group),
            "mixed_over_fp64_max": max(rmse(r, "mixed") / rmse(r, "fp64") for r in group),
            "wrong_loops": sum(int(r["loops"]["wrong"]) for r in group),  # type: ignore[index]
            "accepted_loops": sum(int(r["loops"]["accepted"]) for r in group),  # type: ignore[index]
            "recall": closed / revisits if revisits else None, "revisits": revisits, "revisits_closed": closed,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    parser.add_argument("--twin-seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5])
    parser.add_argument("--modes", nargs="+", choices=[m.value for m in SensorMode], default=["rgbd", "stereo"],
                        help="VO modes (vo.mode), each run on the same sequences")
    parser.add_argument("--duration", type=float, default=180.0)
    parser.add_argument("--image-scale", type=float, default=0.5)
    parser.add_argument("--pgo-sizes", type=int, nargs="*", default=[1000, 5000])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/mp_slam_bench_loop_closure"))
    parser.add_argument("--out", type=Path, default=Path("results/loop_closure"))
    parser.add_argument("--runs", type=Path, help="keep each run's odometry and keyframes here (pickle)")
    parser.add_argument("--replay", action="store_true", help="the keyframes kept in --runs through the current loop closure (no VO)")
    parser.add_argument("--wheel-odom", metavar="TOPIC", help="the bags' wheel odometry (the generator's: /odom) as the VO's motion prior")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="options of every run by dotted SlamConfig key (e.g. vo.tracking.sideways_sigma_m=0.0005)")
    args = parser.parse_args()
    if any("=" not in item for item in args.set):
        parser.error("--set takes KEY=VALUE items")
    updates = dict(item.split("=", 1) for item in args.set)
    if args.replay and args.runs is None:
        parser.error("--replay needs --runs")
    args.cache.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {"args": {k: str(v) for k, v in vars(args).items()}, "load_average": [os.getloadavg()[0]],
                                 "houses": [], "twins": []}
    keyframes: list = []
    out = args.out / "bench_loop_closure.json"
    for twin, seeds in ((False, args.seeds), (True, args.twin_seeds)):
        for seed in seeds:
            seq = sequence(args.cache, seed, args.duration, args.image_scale, twin)
            for mode in args.modes:
                config = with_updates(offline_config(mode), updates)
                result, run_keyframes = accuracy(seq, config, args.runs, args.replay, args.wheel_odom)
                keyframes = keyframes or run_keyframes
                report["twins" if twin else "houses"].append(result)  # type: ignore[union-attr]
                report["load_average"].append(os.getloadavg()[0])  # type: ignore[union-attr]
                report["summary"] = {k: summarize(report[k]) for k in ("houses", "twins") if report[k]}  # type: ignore[arg-type]
                out.write_text(json.dumps(report, indent=1))  # after every run: a partial run is kept
                print(json.dumps(result), flush=True)
    print(json.dumps(report.get("summary")), flush=True)
    if keyframes:
        report["place_query"] = place_query_latency(keyframes, offline_config(args.modes[0]))
        print(json.dumps(report["place_query"]), flush=True)
    report["pgo"] = [pgo_latency(n, p) for n in args.pgo_sizes for p in ("mixed", "fp64")]
    for row in report["pgo"]:  # type: ignore[union-attr]
        print(json.dumps(row), flush=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
