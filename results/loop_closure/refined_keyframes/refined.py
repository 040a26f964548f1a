"""Would loop closure gain from keyframe poses refined by the VO's window BA? (Not kept.)

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. .venv/bin/python results/loop_closure/refined_keyframes/refined.py \
        SEQUENCE_DIR MODE KEPT.pkl [--run]

``--run``: VO + loop closure over ``SEQUENCE_DIR/bag`` (bench_loop_closure's offline config and the
README's ``--set``), recording each keyframe's pose after every window solve that contained it,
kept in ``KEPT.pkl``. Then the kept keyframes are replayed through the loop closure with their
pose taken after K window solves (0: as published, the pose tracking gave the frame; 1000: the
last), printing the ATE of every frame (the VO's online poses corrected by their keyframe, as
map -> odom does on a robot) and of the keyframes alone.
"""

from __future__ import annotations

import pickle
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from bench_loop_closure import offline_config, replay  # noqa: E402

from mp_slam_ros.cli.slam import SlamRun, run_slam  # noqa: E402
from mp_slam_ros.config import with_updates  # noqa: E402
from mp_slam_ros.eval.metrics import evaluate  # noqa: E402
from mp_slam_ros.geometry.lie import se3_to_translation_quat  # noqa: E402
from mp_slam_ros.io.tum import TumTrajectory, read_tum  # noqa: E402
from mp_slam_ros.pipelines import vo as vo_module  # noqa: E402

SETS = {"vo.tracking.sideways_sigma_m": 0.0005, "vo.tracking.vertical_sigma_m": 0.0005}


def record(seq: Path, mode: str, out: Path) -> None:
    """VO + loop closure with every window solve's keyframe poses recorded."""
    refined: dict[int, list[np.ndarray]] = defaultdict(list)
    apply = vo_module.VisualOdometry._apply

    def recording(self, solution):  # noqa: ANN001, ANN202
        if solution.generation == self._window.generation:
            for k, T in zip(solution.keyframe_ids, solution.T_odom_cam):
                refined[int(k)].append(np.array(T))
        return apply(self, solution)

    vo_module.VisualOdometry._apply = recording
    run = run_slam(seq / "bag", with_updates(offline_config(mode), SETS))
    with out.open("wb") as f:
        pickle.dump({"vo": run.vo, "frame_nodes": run.frame_nodes, "keyframes": run.keyframes,
                     "T_base_cam": run.T_base_cam, "refined": dict(refined)}, f)


def main() -> None:
    """Record (``--run``) and compare."""
    seq, mode, path = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    if "--run" in sys.argv:
        record(seq, mode, path)
    with path.open("rb") as f:  # written above: a trusted local file
        kept = pickle.load(f)
    gt = read_tum(seq / "groundtruth.tum")
    config = with_updates(offline_config(mode), SETS)
    vo_ate = evaluate(gt, kept["vo"].trajectory(), "vo").ate_m.rmse
    print(f"{seq.name} {mode}: VO alone {100 * vo_ate:.2f} cm, {len(kept['keyframes'])} keyframes")
    for K in (0, 1, 2, 3, 5, 10, 20, 1000):
        keyframes = []
        for k in kept["keyframes"]:
            poses = kept["refined"].get(k.keyframe_id, [])
            if K and poses:
                t, q = se3_to_translation_quat(poses[min(K, len(poses)) - 1])
                k = replace(k, pose_odom_cam=np.concatenate([t[0], q[0]]))
            keyframes.append(k)
        loop_closure, _ = replay(keyframes, config.loop_closure)
        run = SlamRun(kept["vo"], loop_closure, kept["frame_nodes"], keyframes, kept["T_base_cam"])
        frames = evaluate(gt, run.trajectory_map(), "frames").ate_m.rmse
        _, stamps_ns, T_map_cam = loop_closure.poses()
        T_map_base = T_map_cam @ np.linalg.inv(kept["T_base_cam"])
        keys = evaluate(gt, TumTrajectory.from_matrices(stamps_ns * 1e-9, T_map_base), "keyframes").ate_m.rmse
        print(f"K={K:4d}: every frame {100 * frames:.2f} cm (ratio to the VO {frames / vo_ate:.2f}), keyframes {100 * keys:.2f} cm")


if __name__ == "__main__":
    main()
