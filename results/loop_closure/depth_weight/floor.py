"""What bounds the loop-closed error where the VO alone is already good (a measurement script).

Replays a run kept by ``bench/bench_loop_closure.py --runs`` through the loop closure (global BA
off), then prints ATE RMSE (cm, SE(3)-aligned) of the keyframes and of every tracked frame for:
the VO's keyframes, the PGO, the true keyframe poses (the floor of placing frames between
keyframes), and the global BA started from the PGO and from the truth, with and without the
odometry's virtual points, each with ``global_ba.virtual_baseline_m`` at every value given.
Then the residuals at the truth: mean pixel residual and depth residual by depth, where a
calibration or depth bias would show.

    PYTHONPATH=. .venv/bin/python results/loop_closure/depth_weight/floor.py RUN.pkl SEQUENCE_DIR [BASELINE_M ...]
"""

from __future__ import annotations

import pickle
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from bench_loop_closure import keyframe_truth, offline_config, replay  # noqa: E402

from mp_slam_ros.backend import global_ba as gba  # noqa: E402
from mp_slam_ros.cli.slam import SlamRun  # noqa: E402
from mp_slam_ros.config import with_updates  # noqa: E402
from mp_slam_ros.eval.metrics import evaluate  # noqa: E402
from mp_slam_ros.geometry.camera import matrix_intrinsics, project  # noqa: E402
from mp_slam_ros.geometry.lie import se3_inverse  # noqa: E402
from mp_slam_ros.io.tum import TumTrajectory, read_tum  # noqa: E402
from mp_slam_ros.precision import Precision  # noqa: E402

DEPTH_BINS_M = [(0, 1), (1, 1.5), (1.5, 2), (2, 3), (3, 4), (4, 7)]


@dataclass
class Replayed:
    """A kept run replayed through the loop closure with the global BA off: its keyframes, pose
    graph, PGO and true keyframe poses, and the ground truth to score poses against."""

    run: SlamRun
    keyframes: list
    graph: object
    stamps_ns: np.ndarray
    T_pgo: np.ndarray
    T_true: np.ndarray
    gt: TumTrajectory
    T_cam_base: np.ndarray
    config: object

    def report(self, name: str, T_map_cam: np.ndarray) -> None:
        """Print the ATE RMSE (cm) of the keyframes at ``T_map_cam`` and of every tracked frame."""
        kf = TumTrajectory.from_matrices(self.stamps_ns * 1e-9, T_map_cam @ self.T_cam_base)
        kf_cm = 100 * evaluate(self.gt, kf, name).ate_m.rmse
        frame_cm = 100 * evaluate(self.gt, self.run.trajectory_map(T_map_cam=T_map_cam), name).ate_m.rmse
        print(f"{name:46s} keyframes {kf_cm:.3f} cm  frames {frame_cm:.3f} cm", flush=True)


def replayed(run_path: Path, sequence: Path) -> Replayed:
    """The run kept at ``run_path`` (its mode from the name) on the generated ``sequence``."""
    kept = pickle.loads(run_path.read_bytes())  # written by the bench: a trusted local cache
    mode = "rgbd" if run_path.stem.endswith("rgbd") else "stereo"
    config = with_updates(offline_config(mode), {"loop_closure.global_ba.enabled": False})
    loop_closure, _ = replay(kept["keyframes"], config.loop_closure)
    run = SlamRun(kept["vo"], loop_closure, kept["frame_nodes"], kept["keyframes"], kept["T_base_cam"])
    _, stamps_ns, T_pgo = loop_closure.poses()
    return Replayed(
        run, list(loop_closure.store.keyframes), loop_closure.graph.snapshot().graph, stamps_ns, T_pgo,
        keyframe_truth(run, sequence / "groundtruth.tum"), read_tum(sequence / "groundtruth.tum"),
        se3_inverse(kept["T_base_cam"]), config,
    )


def main() -> None:
    run_path, sequence = Path(sys.argv[1]), Path(sys.argv[2])
    baselines = [float(b) for b in sys.argv[3:]] or [0.8]
    r = replayed(run_path, sequence)
    r.report("VO keyframes", np.array([k.T_odom_cam for k in r.keyframes]))
    r.report("PGO", r.T_pgo)
    r.report("true keyframes (frames placed between them)", r.T_true)
    base = replace(r.config.loop_closure.global_ba, precision=Precision.FP64, solver="schur")
    for baseline in baselines:
        for start, T0 in (("PGO", r.T_pgo), ("truth", r.T_true)):
            for odometry in (base.odometry_sigma_px, 0.0):
                options = replace(base, virtual_baseline_m=baseline, odometry_sigma_px=odometry)
                result = gba.refine_keyframes(r.keyframes, r.graph.with_poses(T0), options)
                label = f"global BA from {start}, baseline {baseline:g} m{'' if odometry else ', no odometry'}"
                r.report(label, result.T_map_cam)
    residuals_at_truth(r.keyframes, r.graph, r.T_true, base)


def truth_residuals(keyframes: list, graph, T_true: np.ndarray, options: gba.GlobalBAConfig) -> tuple:
    """The global BA's landmarks and observations (:func:`~mp_slam_ros.backend.global_ba.associate`)
    at the true poses ``T_true`` ``(N, 4, 4)``, each landmark at the mean of its observers' 3-D
    points, and their residuals (predicted - measured): pixel ``(M, 2)`` and depth ``(M,)``."""
    _, _, landmarks = gba.associate(keyframes, T_true, graph, options)
    T_cam_map = se3_inverse(T_true)[landmarks.obs_keyframe]
    p_cam = np.einsum("nij,nj->ni", T_cam_map[:, :3, :3], landmarks.points_map[landmarks.obs_landmark]) + T_cam_map[:, :3, 3]
    uv = project(matrix_intrinsics(np.array([keyframes[k].K for k in landmarks.obs_keyframe])), p_cam)[0]
    return landmarks, uv - landmarks.obs_uv, p_cam[:, 2] - landmarks.obs_depth


def residuals_at_truth(keyframes: list, graph, T_true: np.ndarray, options: gba.GlobalBAConfig) -> None:
    """:func:`truth_residuals` summed up: mean pixel residual, depth residual by depth."""
    landmarks, pixel, depth = truth_residuals(keyframes, graph, T_true, options)
    ok = np.isfinite(depth) & (np.abs(pixel).max(axis=1) < 3.0)
    print(f"observations {len(ok)}, within 3 px {ok.mean():.3f}: pixel residual mean {pixel[ok].mean(axis=0)} px, std {pixel[ok].std(axis=0)} px")
    for low, high in DEPTH_BINS_M:
        sel = ok & (landmarks.obs_depth >= low) & (landmarks.obs_depth < high)
        if sel.sum() > 10:
            print(f"  depth {low}-{high} m: {sel.sum():6d} observations, depth residual mean {1e3 * depth[sel].mean():+.2f} mm, "
                  f"median {1e3 * np.median(depth[sel]):+.2f} mm, std {1e3 * depth[sel].std():.2f} mm")


if __name__ == "__main__":
    main()
