"""The global BA of a kept run under several robust losses (a measurement script).

Replays a run kept by ``bench/bench_loop_closure.py --runs`` through the loop closure
(``../depth_weight/floor.py``: global BA off), then runs the global BA from the PGO's poses once
per ``LOSS:SCALE`` given (``huber:2.0`` was the default before this study, ``cauchy:0.6`` is it
now), everything else as configured, and prints ATE RMSE (cm) of the keyframes and of every
tracked frame.

    PYTHONPATH=. .venv/bin/python results/loop_closure/robust_loss/loss_sweep.py RUN.pkl SEQUENCE_DIR huber:2.0 cauchy:0.6 ...
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "depth_weight"))
from floor import replayed  # noqa: E402

from mp_slam_ros.backend import global_ba as gba  # noqa: E402
from mp_slam_ros.solvers.robust import LossKind  # noqa: E402


def main() -> None:
    r = replayed(Path(sys.argv[1]), Path(sys.argv[2]))
    r.report("PGO", r.T_pgo)
    for spec in sys.argv[3:]:
        loss, scale = spec.split(":")
        config = replace(r.config.loop_closure.global_ba, loss=LossKind(loss), loss_scale=float(scale))
        started = time.perf_counter()
        result = gba.refine_keyframes(r.keyframes, r.graph.with_poses(r.T_pgo), config)
        s = result.summary
        r.report(f"{spec} ({s.termination.value}, {s.num_iterations} it, {time.perf_counter() - started:.0f} s)", result.T_map_cam)


if __name__ == "__main__":
    main()
