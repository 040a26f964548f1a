"""The global BA's losses where keypoint errors are Gaussian (a measurement script).

The unit tests' synthetic rooms (``test/unit/test_loop_world.py``: Gaussian pixel noise of 0.5 px,
depth 0.2%, no tail) closed by the loop closure, then the global BA from the PGO's poses with the
default loss (Cauchy 0.6), a Cauchy at 1.2 px (2.4 sigmas of that noise) and the Huber at 2 px
of before; position RMSE (mm) of the keyframes, aligned at the first.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python results/loop_closure/robust_loss/gaussian_keypoints.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "test" / "unit"))
from test_global_ba import _loop_closed_run  # noqa: E402
from test_loop_world import position_errors  # noqa: E402

from mp_slam_ros.backend.global_ba import GlobalBAConfig, refine_keyframes  # noqa: E402
from mp_slam_ros.solvers.robust import LossKind  # noqa: E402

LOSSES = {
    "cauchy 0.6 (default)": GlobalBAConfig(),
    "cauchy 1.2": GlobalBAConfig(loss_scale=1.2),
    "huber 2.0 (before)": GlobalBAConfig(loss=LossKind.HUBER, loss_scale=2.0),
}


def main() -> None:
    for seed in (1, 2, 3):
        lc, truth, _ = _loop_closed_run(seed)
        _, _, T_pgo = lc.poses()
        graph = lc.graph.snapshot().graph
        cells = [f"PGO {1e3 * np.sqrt(np.mean(position_errors(T_pgo, truth) ** 2)):.2f}"]
        for name, config in LOSSES.items():
            result = refine_keyframes(lc.store.keyframes, graph, config)
            assert result is not None
            rms_mm = 1e3 * np.sqrt(np.mean(position_errors(result.T_map_cam, truth) ** 2))
            cells.append(f"{name} {rms_mm:.2f}{'' if result.summary.converged else ' (not converged)'}")
        print(f"seed {seed}: " + ", ".join(cells) + " mm", flush=True)


if __name__ == "__main__":
    main()
