"""Replay kept runs (``bench_loop_closure.py --runs``) through loop-closure variants; print the frame
ATE RMSE (cm), its ratio to the VO alone, and the accepted and wrong loops per variant. A variant is
``key=value[;key=value...]`` of the slam config (empty: the defaults).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python results/loop_closure/robust_pgo/variants.py \
        KEPT_DIR CACHE_DIR twin-s4-180s-x1-stereo-stereo \
        "loop_closure.consistency.unchecked_max_chi2=1e12" \
        "loop_closure.consistency.unchecked_max_chi2=1e12;loop_closure.pgo.loss=none"
"""
import sys, pickle, time
from pathlib import Path
sys.path.insert(0, "bench")
from bench_loop_closure import replay, offline_config, keyframe_truth, judge_loops
from mp_slam_ros.cli.slam import SlamRun
from mp_slam_ros.config import with_updates
from mp_slam_ros.io.tum import read_tum
from mp_slam_ros.eval.metrics import evaluate
runs = Path(sys.argv[1]); cache = Path(sys.argv[2]); names = sys.argv[3].split(","); variants = sys.argv[4:]
for name in names:   # e.g. twin-s4-180s-x1-stereo-rgbd
    seqname, mode = name.rsplit("-", 1)
    kept = pickle.load(open(runs / f"{name}.pkl", "rb"))
    gt = read_tum(cache / seqname / "groundtruth.tum")
    vo = evaluate(gt, kept["vo"].trajectory(), "vo").ate_m.rmse
    line = [f"{seqname} {mode}: VO {100*vo:.2f}"]
    for v in variants:
        updates = dict(kv.split("=", 1) for kv in v.split(";") if kv)
        cfg = with_updates(offline_config(mode), updates)
        t = time.perf_counter()
        lc, results = replay(kept["keyframes"], cfg.loop_closure)
        run = SlamRun(kept["vo"], lc, kept["frame_nodes"], kept["keyframes"], kept["T_base_cam"])
        ate = evaluate(gt, run.trajectory_map(), "lc").ate_m.rmse
        T = keyframe_truth(run, cache / seqname / "groundtruth.tum")
        loops = judge_loops(lc, T, 20.0, results)
        line.append(f"[{v or 'base'}] {100*ate:.2f} cm ({ate/vo:.2f}) loops {loops['accepted']} wrong {loops['wrong']} ({time.perf_counter()-t:.0f}s)")
    print(" | ".join(line), flush=True)
