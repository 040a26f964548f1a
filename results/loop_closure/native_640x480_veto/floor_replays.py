"""Kept runs replayed with separate sigma floors for odometry and loop edges (an experiment).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python results/loop_closure/native_640x480_veto/floor_replays.py \
        RUNS_DIR SEQUENCE_CACHE twin-s4-180s-x1-stereo-rgbd,... "0.003,0.1,0.003,0.1" "0.001,0.03,0.003,0.1" ...

Each variant is ``odometry_m,odometry_deg,loop_m,loop_deg``: the loop closure's ``edge_information``
is wrapped so that odometry edges (called with ``gap_s``) and loop edges get their own
``odometry.min_sigma_*`` floor (the option sets both). Prints ATE RMSE (cm) with loop closure, its
ratio to the VO alone, accepted (L) and wrong (W) loops per variant. Run at 378645e's parent (no
veto of unchecked loops). Since 33ad006 the replay and judging come from ``../robust_pgo/variants.py``.
"""
import pickle
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, "results/loop_closure/robust_pgo")
from variants import judged_replay, offline_config, vo_ate  # noqa: E402
import mp_slam_ros.pipelines.loop_closure as lcmod  # noqa: E402
from mp_slam_ros.pipelines.loop_closure_input import edge_information  # noqa: E402

FLOORS = {}


def patched(covariance, config, restart=False, gap_s=None):
    if gap_s is None:  # a loop edge
        return edge_information(covariance, replace(config, min_sigma_m=FLOORS["loop"][0], min_sigma_deg=FLOORS["loop"][1]))
    return edge_information(covariance, replace(config, min_sigma_m=FLOORS["odo"][0], min_sigma_deg=FLOORS["odo"][1]), restart=restart, gap_s=gap_s)


lcmod.edge_information = patched
runs, cache, names, variants = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(","), sys.argv[4:]
for name in names:
    seqname, mode = name.rsplit("-", 1)
    kept = pickle.load(open(runs / f"{name}.pkl", "rb"))
    vo = vo_ate(kept, cache / seqname)
    line = [f"{seqname} {mode}: VO {100*vo:.2f}"]
    for v in variants:
        a, b, c, d = map(float, v.split(","))
        FLOORS["odo"], FLOORS["loop"] = (a, b), (c, d)
        ate, loops = judged_replay(kept, cache / seqname, offline_config(mode).loop_closure)
        line.append(f"[{v}] {100*ate:.2f} ({ate/vo:.2f}) L{loops['accepted']} W{loops['wrong']}")
    print(" | ".join(line), flush=True)
