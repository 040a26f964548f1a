"""The loop closure's PGO solves of kept runs, captured once and solved again by this checkout.

    snapshots.py capture RUN.pkl MODE OUT.pkl    # replay a kept run (bench_loop_closure --runs), keep every solve's graph
    snapshots.py solve OUT.json SNAP.pkl ...     # solve each kept graph again (solve_snapshot); one line per run

``solve`` takes ``pgo.max_iterations`` from the environment variable ``MAX_ITERATIONS`` when set,
else this checkout's default (the rest of the config is the captured run's). Each solve gets a fresh preconditioner cache, so solves compare
one to one across checkouts. Run from the checkout to measure (``PYTHONPATH=.``).
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import sys
import time
from dataclasses import replace

import numpy as np

sys.path.insert(0, ".")
from bench import bench_loop_closure as bench  # noqa: E402
import mp_slam_ros.pipelines.loop_closure as loop_closure_module  # noqa: E402
from mp_slam_ros.backend.incremental_pgo import GraphSnapshot, PGOConfig, solve_snapshot  # noqa: E402
from mp_slam_ros.config import with_updates  # noqa: E402
from mp_slam_ros.solvers.pgo import PreconditionerCache  # noqa: E402

#: the VO options of the kept runs (bench_loop_closure's --set in ../five_seeds/README.md)
RUN_OPTIONS = {"vo.tracking.sideways_sigma_m": 0.0005, "vo.tracking.vertical_sigma_m": 0.0005}


def capture(run_path: str, mode: str, out_path: str) -> None:
    """Replay the kept run's keyframes; pickle ``(graph, num_nodes, PGOConfig)`` of every solve."""
    with open(run_path, "rb") as f:
        kept = pickle.load(f)
    config = with_updates(bench.offline_config(mode), RUN_OPTIONS)
    solve, captured = loop_closure_module.solve_snapshot, []

    def keep(snapshot: GraphSnapshot, pgo_config: object) -> object:
        captured.append((copy.deepcopy(snapshot.graph), snapshot.num_nodes, pgo_config))
        return solve(snapshot, pgo_config)

    loop_closure_module.solve_snapshot = keep
    bench.replay(kept["keyframes"], config.loop_closure)
    with open(out_path, "wb") as f:
        pickle.dump(captured, f)
    print(out_path, "solves", len(captured))


def solve_all(out_json: str, snapshot_paths: list[str]) -> None:
    """Solve every kept graph again; print LM iterations and non-converged solves per run."""
    rows = []
    max_iterations = int(os.environ.get("MAX_ITERATIONS", PGOConfig().max_iterations))
    for path in snapshot_paths:
        with open(path, "rb") as f:
            captured = pickle.load(f)
        iterations, failed = [], 0
        for graph, num_nodes, config in captured:
            config = replace(config, max_iterations=max_iterations)
            started = time.perf_counter()
            result, summary = solve_snapshot(GraphSnapshot(graph, num_nodes, PreconditionerCache()), config)
            if summary is None:
                continue
            iterations.append(len(summary.iterations))
            failed += not summary.converged
            rows.append({"run": os.path.basename(path), "nodes": num_nodes, "iterations": len(summary.iterations),
                         "termination": summary.termination.value, "final_cost": summary.final_cost,
                         "seconds": time.perf_counter() - started})
        its = np.array(iterations)
        print(f"{os.path.basename(path):16s} solves {its.size:4d} LM iterations mean {its.mean():5.2f} "
              f"p95 {np.percentile(its, 95):4.0f} max {its.max():3d} not converged {failed}", flush=True)
    with open(out_json, "w") as f:
        json.dump(rows, f)


if __name__ == "__main__":
    if sys.argv[1] == "capture":
        capture(*sys.argv[2:5])
    else:
        solve_all(sys.argv[2], sys.argv[3:])
