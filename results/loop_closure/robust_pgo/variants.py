"""Replay kept runs (``bench_loop_closure.py --runs``) through loop-closure variants; print the frame
ATE RMSE (cm), its ratio to the VO alone, and the accepted and wrong loops per variant. A variant is
``key=value[;key=value...]`` of the slam config (empty: the defaults).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python results/loop_closure/robust_pgo/variants.py \
        KEPT_DIR CACHE_DIR twin-s4-180s-x1-stereo-stereo \
        "loop_closure.consistency.unchecked_max_chi2=1e12" \
        "loop_closure.consistency.unchecked_max_chi2=1e12;loop_closure.pgo.loss=none"
"""
import pickle
import sys
import time
from pathlib import Path

sys.path.insert(0, "bench")
from bench_loop_closure import replay, offline_config, keyframe_truth, judge_loops  # noqa: E402
from mp_slam_ros.cli.slam import SlamRun  # noqa: E402
from mp_slam_ros.config import with_updates  # noqa: E402
from mp_slam_ros.eval.metrics import evaluate  # noqa: E402
from mp_slam_ros.io.tum import read_tum  # noqa: E402


def judged_replay(kept: dict, sequence: Path, loop_closure_config) -> tuple[float, dict]:
    """Frame ATE RMSE (m) with loop closure and the loops judged by the truth (``judge_loops``) of
    the kept run ``kept`` replayed through ``loop_closure_config``; ``sequence``: its cache folder."""
    lc, results = replay(kept["keyframes"], loop_closure_config)
    run = SlamRun(kept["vo"], lc, kept["frame_nodes"], kept["keyframes"], kept["T_base_cam"])
    ate = evaluate(read_tum(sequence / "groundtruth.tum"), run.trajectory_map(), "lc").ate_m.rmse
    return ate, judge_loops(lc, keyframe_truth(run, sequence / "groundtruth.tum"), 20.0, results)


def vo_ate(kept: dict, sequence: Path) -> float:
    """Frame ATE RMSE (m) of the kept run's VO alone."""
    return evaluate(read_tum(sequence / "groundtruth.tum"), kept["vo"].trajectory(), "vo").ate_m.rmse


if __name__ == "__main__":
    runs, cache, names, variants = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(","), sys.argv[4:]
    for name in names:  # e.g. twin-s4-180s-x1-stereo-rgbd
        seqname, mode = name.rsplit("-", 1)
        kept = pickle.load(open(runs / f"{name}.pkl", "rb"))
        vo = vo_ate(kept, cache / seqname)
        line = [f"{seqname} {mode}: VO {100*vo:.2f}"]
        for v in variants:
            updates = dict(kv.split("=", 1) for kv in v.split(";") if kv)
            t = time.perf_counter()
            ate, loops = judged_replay(kept, cache / seqname, with_updates(offline_config(mode), updates).loop_closure)
            line.append(f"[{v or 'base'}] {100*ate:.2f} cm ({ate/vo:.2f}) loops {loops['accepted']} wrong {loops['wrong']} ({time.perf_counter()-t:.0f}s)")
        print(" | ".join(line), flush=True)
