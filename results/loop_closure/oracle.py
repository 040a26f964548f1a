"""What limits the ATE after loop closure: oracle experiments on kept runs (``bench_loop_closure.py
--runs``). Each run's keyframes go through the current loop closure once (as ``--replay``); its final
graph is then re-solved (fp64, cholesky, 100 LM iterations, from the replay's poses) with one thing
made ideal or changed at a time:

- ``refine``: the graph as it is (a final global refinement);
- ``fresh``: the same, started from the odometry chain (is the incremental solve in a worse minimum?);
- ``loops_gt``: every accepted loop measures the true relative pose (its covariance kept);
- ``all_rev_gt``: besides, a true loop for every true revisit not closed (nearest older keyframe
  within 0.5 m / 30 deg, information the median of the accepted loops');
- ``loops_gt_m2>9`` / ``loops_gt_m2<=9``: only the loops whose error exceeds (stays within) 3 sigma of
  their covariance (Mahalanobis^2 9 at the truth) made true;
- ``covisible_gt`` (``--covisible``): the measured loops plus a true loop for every 4th keyframe and up to 3
  older ones at any distance up to 4 m / 60 deg that share 30 keypoints at the true pose (what a
  wider-baseline loop search could add);
- ``odo_x0.25`` / ``odo_x4`` / ``odo_x16``: odometry information scaled (covariances x4 / x0.25 / x1/16);
- ``odo_gt_m2>100``: only the odometry edges beyond Mahalanobis^2 100 at the truth made true (VO failures);
- ``irls_huber`` / ``irls_cauchy`` / ``irls_loops_huber``: robust re-weighting (k 3, 6 rounds) of the
  odometry (or loop) edges by their residual at the solution (no oracle);
- ``odo_gt``: odometry edges measure the true relative poses (covariances kept), loops as measured;
- ``kf_gt``: keyframe poses set to the truth (the frame ATE no keyframe correction can beat: the
  VO between a frame and its keyframe).

Prints the frame ATE RMSE (cm, as the bench) and the keyframe ATE RMSE of each variant, and the
loop and odometry edges' errors against the truth (p50 / p90 / max: m, deg, Mahalanobis^2).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python results/loop_closure/oracle.py \
        --kept /tmp/lc/runs_final --runs house-s2-180s-x0.5-stereo-rgbd --out /tmp/oracle.json
"""
import argparse
import json
import pickle
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import bench_loop_closure as B  # noqa: E402
from mp_slam_ros.backend.pose_graph import PoseGraph  # noqa: E402
from mp_slam_ros.cli.slam import SlamRun  # noqa: E402
from mp_slam_ros.config import with_updates  # noqa: E402
from mp_slam_ros.eval.metrics import evaluate  # noqa: E402
from mp_slam_ros.geometry.lie import se3_inverse, se3_log  # noqa: E402
from mp_slam_ros.io.tum import TumTrajectory, read_tum  # noqa: E402
from mp_slam_ros.precision import Precision  # noqa: E402
from mp_slam_ros.solvers.pgo import default_options, optimize_pose_graph  # noqa: E402


def frame_ate(run: SlamRun, T_map_cam: np.ndarray, gt: TumTrajectory) -> float:
    """Frame ATE RMSE (as the bench: ``SlamRun.trajectory_map``) with keyframe poses ``T_map_cam``."""
    graph = run.loop_closure.graph
    kept = graph.T_map_node.copy()
    graph.set_poses(np.arange(graph.num_nodes), T_map_cam)
    try:
        return evaluate(gt, run.trajectory_map(), "f").ate_m.rmse
    finally:
        graph.set_poses(np.arange(graph.num_nodes), kept)


def keyframe_ate(run: SlamRun, T_map_cam: np.ndarray, gt: TumTrajectory) -> float:
    """Keyframe (base_link) ATE RMSE of ``T_map_cam``."""
    _, stamps_ns, _ = run.loop_closure.poses()
    T = T_map_cam @ se3_inverse(run.T_base_cam)
    return evaluate(gt, TumTrajectory.from_matrices(stamps_ns * 1e-9, T), "k").ate_m.rmse


def solve(graph: PoseGraph) -> np.ndarray:
    options = replace(default_options(precision=Precision.FP64), max_iterations=100)
    return optimize_pose_graph(graph, options, solver="cholesky").graph.T_world_node


def edge_errors(graph: PoseGraph, T_true: np.ndarray, edges: np.ndarray) -> dict[str, list[float]]:
    """p50 / p90 / max of the ``edges``' errors against the truth: metres, degrees, Mahalanobis^2."""
    r = se3_log(se3_inverse(graph.T_from_to[edges]) @ T_true[edges])
    m2 = np.einsum("ei,eij,ej->e", r, graph.information[edges], r)
    q = (50, 90, 100)
    return {"m": np.percentile(np.linalg.norm(r[:, :3], axis=1), q).tolist(),
            "deg": np.percentile(np.degrees(np.linalg.norm(r[:, 3:], axis=1)), q).tolist(), "m2": np.percentile(m2, q).tolist()}


def irls(graph: PoseGraph, edges: np.ndarray, kernel: str, k: float = 3.0, rounds: int = 6) -> np.ndarray:
    """Robust re-weighting of ``edges`` (Huber or Cauchy on the whitened residual norm, scale ``k``):
    solve, re-weight each edge's information by its residual at the solution, solve again."""
    T = graph.T_world_node
    for _ in range(rounds):
        r = se3_log(se3_inverse(graph.T_from_to) @ se3_inverse(T[graph.edge_from]) @ T[graph.edge_to])
        m2 = np.einsum("ei,eij,ej->e", r, graph.information, r)
        w = np.minimum(1.0, k / np.sqrt(np.maximum(m2, 1e-12))) if kernel == "huber" else 1.0 / (1.0 + m2 / k**2)
        w = np.where(edges, w, 1.0)
        T = solve(replace(graph, T_world_node=T, information=graph.information * w[:, None, None]))
    return T


def covisible_pairs(lc, Tw: np.ndarray, stamps_s: np.ndarray, min_age_s: float, step: int = 4, per_query: int = 3) -> list[tuple[int, int]]:
    """Every ``step``-th keyframe with up to ``per_query`` older ones (by ``min_age_s``; any distance
    up to 4 m, optical axes within 60 deg, spread over the candidates) sharing ``B.SHARED_MIN``
    keypoints at the true relative pose (:func:`bench_loop_closure.shared_keypoints`)."""
    P, Z = Tw[:, :3, 3], Tw[:, :3, 2]
    out = []
    for q in range(0, len(P), step):
        near = np.flatnonzero((stamps_s <= stamps_s[q] - min_age_s) & (np.linalg.norm(P - P[q], axis=1) < 4.0)
                              & (Z @ Z[q] > np.cos(np.radians(60.0))))
        found = 0
        for n in near[np.argsort(np.linalg.norm(P[near] - P[q], axis=1))][::max(1, len(near) // 12)]:
            if B.shared_keypoints(lc.store[q], lc.store[int(n)], se3_inverse(Tw[n]) @ Tw[q]) >= B.SHARED_MIN:
                out.append((int(n), q))
                found += 1
                if found == per_query:
                    break
    return out


def chain(graph: PoseGraph) -> np.ndarray:
    """Poses chained through the odometry edges from node 0's current pose."""
    T = graph.T_world_node.copy()
    odo = ~graph.is_loop
    for a, b, M in zip(graph.edge_from[odo], graph.edge_to[odo], graph.T_from_to[odo]):
        T[b] = T[a] @ M
    return T


def true_revisit_loops(Tw: np.ndarray, stamps_s: np.ndarray, closed: set[int], min_age_s: float) -> list[tuple[int, int]]:
    P, Z = Tw[:, :3, 3], Tw[:, :3, 2]
    out = []
    for q in range(len(P)):
        if q in closed:
            continue
        d = np.linalg.norm(P - P[q], axis=1)
        ok = (stamps_s <= stamps_s[q] - min_age_s) & (d < B.REVISIT_M) & (Z @ Z[q] > np.cos(np.radians(B.REVISIT_DEG)))
        if ok.any():
            out.append((int(np.flatnonzero(ok)[np.argmin(d[ok])]), q))
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--kept", required=True)
    p.add_argument("--runs", nargs="*", default=None)
    p.add_argument("--cache", default="/tmp/lc/bench180")
    p.add_argument("--set", nargs="*", default=[])
    p.add_argument("--out", required=True)
    p.add_argument("--covisible", action="store_true", help="also the covisible_gt oracle (slow)")
    a = p.parse_args()
    updates = {k: json.loads(v) if v[:1] in "0123456789-[tf" else v for k, v in (kv.split("=", 1) for kv in a.set)}
    rows = []
    for path in sorted(Path(a.kept).glob("*.pkl")):
        if a.runs and not any(s in path.name for s in a.runs):
            continue
        mode = path.stem.rsplit("-", 1)[1]
        seq = Path(a.cache) / path.stem.rsplit("-", 1)[0]
        config = B.offline_config(mode).loop_closure
        config = with_updates(config, updates) if updates else config
        with path.open("rb") as f:
            kept = pickle.load(f)
        lc, _ = B.replay(kept["keyframes"], config)
        run = SlamRun(kept["vo"], lc, kept["frame_nodes"], kept["keyframes"], kept["T_base_cam"])
        gt = read_tum(seq / "groundtruth.tum")
        Tw = B.keyframe_truth(run, seq / "groundtruth.tum")
        _, stamps_ns, _ = lc.poses()
        g = lc.graph.snapshot().graph
        loops, odo = g.is_loop, ~g.is_loop
        T_true = se3_inverse(Tw[g.edge_from]) @ Tw[g.edge_to]
        variants: dict[str, np.ndarray] = {"replay": g.T_world_node}
        variants["refine"] = solve(g)
        variants["fresh"] = solve(replace(g, T_world_node=chain(g)))
        variants["loops_gt"] = solve(replace(g, T_from_to=np.where(loops[:, None, None], T_true, g.T_from_to)))
        extra = true_revisit_loops(Tw, stamps_ns * 1e-9, set(g.edge_to[loops].tolist()), config.loop.min_age_s)
        if extra:
            ef, et = np.array(extra).T
            info = np.median(g.information[loops], axis=0)
            g2 = replace(g, edge_from=np.r_[g.edge_from, ef], edge_to=np.r_[g.edge_to, et],
                         T_from_to=np.concatenate([np.where(loops[:, None, None], T_true, g.T_from_to), se3_inverse(Tw[ef]) @ Tw[et]]),
                         information=np.concatenate([g.information, np.repeat(info[None], len(ef), 0)]),
                         is_loop=np.r_[loops, np.ones(len(ef), bool)])
            variants["all_rev_gt"] = solve(g2)
        for s in (0.25, 4.0, 16.0):
            variants[f"odo_x{s:g}"] = solve(replace(g, information=np.where(odo[:, None, None], g.information * s, g.information)))
        r_true = se3_log(se3_inverse(g.T_from_to) @ T_true)
        bad = odo & (np.einsum("ei,eij,ej->e", r_true, g.information, r_true) > 100)
        row_bad = int(bad.sum())
        variants["odo_gt_m2>100"] = solve(replace(g, T_from_to=np.where(bad[:, None, None], T_true, g.T_from_to)))
        for kernel in ("huber", "cauchy"):
            variants[f"irls_{kernel}"] = irls(g, odo, kernel)
        variants["irls_loops_huber"] = irls(g, loops, "huber")
        off = loops & (np.einsum("ei,eij,ej->e", r_true, g.information, r_true) > 9)
        variants["loops_gt_m2>9"] = solve(replace(g, T_from_to=np.where(off[:, None, None], T_true, g.T_from_to)))
        variants["loops_gt_m2<=9"] = solve(replace(g, T_from_to=np.where((loops & ~off)[:, None, None], T_true, g.T_from_to)))
        if a.covisible:
            pairs = covisible_pairs(lc, Tw, stamps_ns * 1e-9, config.loop.min_age_s)
            if pairs:
                ef, et = np.array(pairs).T
                info = np.median(g.information[loops], axis=0)
                g3 = replace(g, edge_from=np.r_[g.edge_from, ef], edge_to=np.r_[g.edge_to, et],
                             T_from_to=np.concatenate([g.T_from_to, se3_inverse(Tw[ef]) @ Tw[et]]),
                             information=np.concatenate([g.information, np.repeat(info[None], len(ef), 0)]),
                             is_loop=np.r_[loops, np.ones(len(ef), bool)])
                variants["covisible_gt"] = solve(g3)
                row_covis = [len(pairs), float(np.median(np.linalg.norm(Tw[ef, :3, 3] - Tw[et, :3, 3], axis=1)))]
        variants["odo_gt"] = solve(replace(g, T_from_to=np.where(odo[:, None, None], T_true, g.T_from_to)))
        variants["kf_gt"] = Tw
        row = {"run": path.stem.replace("-180s-x0.5-stereo", ""), "loops": int(loops.sum()), "extra_revisits": len(extra), "odo_m2>100": row_bad,
               "covisible_pairs_median_m": row_covis if a.covisible and pairs else None,
               "loop_error": edge_errors(g, T_true, loops), "odometry_error": edge_errors(g, T_true, odo)}
        for name, T in variants.items():
            row[name] = {"frame_cm": 100 * frame_ate(run, T, gt), "kf_cm": 100 * keyframe_ate(run, T, gt)}
        rows.append(row)
        print(row["run"], row["loops"], row["extra_revisits"], {k: np.round(v, 3).tolist() for k, v in row["loop_error"].items()},
              {k: np.round(v, 3).tolist() for k, v in row["odometry_error"].items()})
        print(row["run"], " ".join(f"{k} {v['frame_cm']:.2f}/{v['kf_cm']:.2f}" for k, v in row.items() if isinstance(v, dict) and "frame_cm" in v), flush=True)
        Path(a.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
