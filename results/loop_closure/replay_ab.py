"""A/B replay of kept runs (``bench_loop_closure.py --runs``): each run's keyframes through the current
loop closure with dotted ``--set`` overrides, mixed only (no fp64 re-solve, no latency), judged by the
bench's own functions (``replay``, ``judge_loops``: wrong loops, recall, recognisable revisits, buckets
of the missed ones). One line per run, totals at the end.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python results/loop_closure/replay_ab.py \
        --set loop.guided_radius_px=0 --out /tmp/ab.json [--runs house-s5 ...]
"""
import argparse, json, pickle, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(ROOT / "bench"))
import bench_loop_closure as B
from mp_slam_ros.cli.slam import SlamRun
from mp_slam_ros.config import with_updates
from mp_slam_ros.eval.metrics import evaluate
from mp_slam_ros.io.tum import read_tum

p = argparse.ArgumentParser()
p.add_argument("--runs", nargs="*", default=None)
p.add_argument("--set", nargs="*", default=[])
p.add_argument("--out", required=True)
p.add_argument("--kept", default="/tmp/lc/runsH", help="the bench's --runs directory")
p.add_argument("--cache", default="/tmp/lc/bench180", help="the bench's --cache directory")
a = p.parse_args()
updates = {}
for kv in a.set:
    k, v = kv.split("=", 1)
    try: v = json.loads(v)
    except Exception: pass
    updates[k] = v
runs = sorted(Path(a.kept).glob("*.pkl"))
if a.runs:
    runs = [r for r in runs if any(s in r.name for s in a.runs)]
rows = []
for path in runs:
    t0 = time.perf_counter()
    mode = path.stem.rsplit("-", 1)[1]
    seq = Path(a.cache) / path.stem.rsplit("-", 1)[0]
    config = B.offline_config(mode)
    lc_config = with_updates(config.loop_closure, {f"{k}": v for k, v in updates.items()}) if updates else config.loop_closure
    kept = pickle.load(path.open("rb"))
    lc, results = B.replay(kept["keyframes"], lc_config)
    run = SlamRun(kept["vo"], lc, kept["frame_nodes"], kept["keyframes"], kept["T_base_cam"])
    gt = read_tum(seq / "groundtruth.tum")
    ate = evaluate(gt, run.trajectory_map(), "mixed").ate_m.rmse
    Tw = B.keyframe_truth(run, seq / "groundtruth.tum")
    loops = B.judge_loops(lc, Tw, lc_config.loop.min_age_s, results)
    row = {"run": path.stem.replace("-180s-x0.5-stereo", ""), "ate": ate, "acc": loops["accepted"], "wrong": loops["wrong"],
           "closed": loops["revisits_closed"], "rev": loops["true_revisits"], "rclosed": loops["recognisable_closed"], "rrev": loops["recognisable_revisits"], "missed": loops["missed"],
           "wrong_loops": loops["wrong_loops"], "s": time.perf_counter() - t0}
    rows.append(row)
    print(f"{row['run']:18s} ate {ate*100:6.2f} cm  acc {row['acc']:4d} wrong {row['wrong']}  recall {row['closed']}/{row['rev']} recog {row['rclosed']}/{row['rrev']}  {row['s']:.0f}s  {row['missed']}", flush=True)
    Path(a.out).write_text(json.dumps(rows, indent=1))
tc = sum(r["closed"] for r in rows); tr = sum(r["rev"] for r in rows)
rc = sum(r["rclosed"] for r in rows); rr = sum(r["rrev"] for r in rows)
print(f"recognisable {rc}/{rr} = {rc/max(rr,1):.3f}")
print(f"TOTAL wrong {sum(r['wrong'] for r in rows)} recall {tc}/{tr} = {tc/tr:.3f}")
