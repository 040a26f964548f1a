"""Replay each kept run (``bench_loop_closure.py --runs``) through the loop closure of the checkout;
print the frame ATE RMSE (cm) of its final graph and of robust re-weightings of it (IRLS, 6 rounds
of fp64 Cholesky solves from the replay's optimum, ``oracle.irls``; no ground truth used):
Cauchy or Huber on the odometry edges (scale 3 or 5 sigma) or Cauchy on every edge.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python results/loop_closure/robust_pgo/irls_sweep.py \
        KEPT_DIR CACHE_DIR [NAME_SUBSTRING,...]
"""
import sys, pickle
from pathlib import Path
import numpy as np
sys.path.insert(0, "results/loop_closure"); sys.path.insert(0, "bench")
import oracle as O
import bench_loop_closure as B
from mp_slam_ros.cli.slam import SlamRun
from mp_slam_ros.io.tum import read_tum
from mp_slam_ros.eval.metrics import evaluate
kept_dir, cache = Path(sys.argv[1]), Path(sys.argv[2])
for path in sorted(kept_dir.glob("*.pkl")):
    if len(sys.argv) > 3 and not any(s in path.name for s in sys.argv[3].split(",")):
        continue
    mode = path.stem.rsplit("-", 1)[1]; seq = cache / path.stem.rsplit("-", 1)[0]
    kept = pickle.load(path.open("rb"))
    lc, _ = B.replay(kept["keyframes"], B.offline_config(mode).loop_closure)
    run = SlamRun(kept["vo"], lc, kept["frame_nodes"], kept["keyframes"], kept["T_base_cam"])
    gt = read_tum(seq / "groundtruth.tum")
    vo = evaluate(gt, kept["vo"].trajectory(), "vo").ate_m.rmse
    g = lc.graph.snapshot().graph
    odo = ~g.is_loop
    out = [f"{path.stem}: VO {100*vo:.2f} replay {100*O.frame_ate(run, g.T_world_node, gt):.2f}"]
    for name, edges, kernel, k in (("cauchy_odo3", odo, "cauchy", 3.0), ("cauchy_odo5", odo, "cauchy", 5.0),
                                   ("huber_odo3", odo, "huber", 3.0), ("cauchy_all3", np.ones_like(odo), "cauchy", 3.0)):
        T = O.irls(g, edges, kernel, k)
        out.append(f"{name} {100*O.frame_ate(run, T, gt):.2f}")
    print(" | ".join(out), flush=True)
