"""A kept run's chain pieces and what joins them: where PCM cannot check a loop.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python results/loop_closure/native_640x480_veto/pieces.py \
        RUN.pkl --mode stereo [--unchecked-max-chi2 1e12]

Replays the keyframes kept by ``bench/bench_loop_closure.py --runs`` through the loop closure
(``--unchecked-max-chi2 1e12``: without the veto of unchecked loops, as before it existed) and
prints the VO restarts that break the odometry chains, the accepted and rejected loops per pair of
chain pieces, the loops no check could see, and the largest residuals (chi2 under their own
covariance) of the accepted loops in the final optimised graph.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from bench_loop_closure import offline_config, replay  # noqa: E402

from mp_slam_ros.config import with_updates  # noqa: E402
from mp_slam_ros.geometry.lie import se3_inverse, se3_log  # noqa: E402


def main() -> None:
    """Print the pieces, the loops between them and the residuals."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--mode", choices=("rgbd", "stereo"), required=True)
    parser.add_argument("--unchecked-max-chi2", type=float, default=None)
    args = parser.parse_args()
    with args.run.open("rb") as f:  # written by bench_loop_closure.py: a trusted local cache
        kept = pickle.load(f)
    config = offline_config(args.mode).loop_closure
    if args.unchecked_max_chi2 is not None:
        config = with_updates(config, {"consistency.unchecked_max_chi2": args.unchecked_max_chi2})
    loop_closure, _ = replay(kept["keyframes"], config)
    piece = np.array(loop_closure.chains.segment)
    t0 = kept["keyframes"][0].stamp_ns
    starts = np.flatnonzero(np.diff(piece)) + 1
    print("chain pieces start at nodes", [0, *starts.tolist()], "(s:", [0.0, *[round((kept["keyframes"][n].stamp_ns - t0) * 1e-9, 1) for n in starts]], ")")
    print("nodes per piece", sorted(Counter(piece.tolist()).items()))
    pcm = loop_closure.consistency
    accepted = pcm.accepted()
    for name, mask in (("accepted", accepted), ("rejected", ~accepted & ~pcm.vetoed), ("vetoed", pcm.vetoed)):
        pairs = Counter((int(piece[loop.match]), int(piece[loop.query])) for loop, m in zip(pcm.loops, mask) if m)
        print(f"{name} loops per (match piece, query piece):", sorted(pairs.items()))
    print("unchecked accepted loops (match, query):", [(pcm.loops[k].match, pcm.loops[k].query) for k in np.flatnonzero(pcm.unchecked(accepted))])
    graph = loop_closure.graph.snapshot().graph
    T = loop_closure.poses()[2]
    edges = np.flatnonzero(graph.is_loop)
    a, b = graph.edge_from[edges], graph.edge_to[edges]
    errors = se3_log(se3_inverse(graph.T_from_to[edges]) @ se3_inverse(T[a]) @ T[b])
    chi2 = np.einsum("ei,eij,ej->e", errors, graph.information[edges], errors)
    top = np.argsort(-chi2)[:6]
    print("largest loop residuals (match, query, chi2, pieces):",
          [(int(a[k]), int(b[k]), round(float(chi2[k]), 1), (int(piece[a[k]]), int(piece[b[k]]))) for k in top])
    print("loop residual chi2 p50 / p90 / p99:", np.percentile(chi2, [50, 90, 99]).round(1).tolist())


if __name__ == "__main__":
    main()
