"""Frame by frame through a stretch of a generated run: tracking and what each window solve moved.

Runs the VO (synchronous BA, the loop-closure bench's options plus ``--set``) over a generated
sequence up to ``--until`` s and prints, for each frame from ``--since`` s: status, tracks,
PnP inliers, keyframe and its reason, the frame's step against the true step; at each keyframe
the window solve (termination, iterations, cost), how far it moved the window's landmarks and
keyframes (cm, deg; oldest keyframe first, with its time and observations), the landmarks
spanning each split of the window (seen on both sides) and the next frame's PnP outliers among
the landmarks made at the last keyframe.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python results/vo/window_hinge/frames.py \\
        /tmp/lc/cache/house-s1-180s-x1-stereo --since 41.95 --until 42.25 --set frontend.fuse_depth=true
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from household_run import run_until, vo_config

from mp_slam_ros.geometry.lie import so3_log
from mp_slam_ros.io.tum import read_tum
from mp_slam_ros.pipelines import vo as vo_module
from mp_slam_ros.pipelines.window import WindowSolution


def spans(obs_cam: np.ndarray, obs_point: np.ndarray, num_keyframes: int) -> np.ndarray:
    """Landmarks seen on both sides of each split ``(num_keyframes - 1,)`` of a window problem."""
    first = np.full(obs_point.max() + 1, num_keyframes)
    last = np.full(obs_point.max() + 1, -1)
    np.minimum.at(first, obs_point, obs_cam)
    np.maximum.at(last, obs_point, obs_cam)
    seen = last >= 0
    return np.cumsum(np.bincount(first[seen], minlength=num_keyframes) - np.bincount(last[seen], minlength=num_keyframes))[:-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sequence", type=Path)
    parser.add_argument("--mode", default="rgbd", choices=["rgbd", "stereo"])
    parser.add_argument("--since", type=float, required=True)
    parser.add_argument("--until", type=float, required=True)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="VO options (e.g. ba.free_keyframes=0)")
    args = parser.parse_args()
    config = vo_config(args.mode, dict(item.split("=", 1) for item in args.set))
    truth = read_tum(args.sequence / "groundtruth.tum")
    state: dict[str, object] = {"now": 0.0, "lines": [], "landmarks_before_kf": 0, "landmarks": 0}

    def inside() -> bool:
        return args.since <= float(state["now"]) <= args.until

    track_estimate = vo_module.VisualOdometry._estimate_pose

    def estimate(self, uv, tracked, T_pred, *rest):  # type: ignore[no-untyped-def]
        pnp = track_estimate(self, uv, tracked, T_pred, *rest)
        state["vo"] = self
        if pnp is not None and inside():
            outliers = self._track_ids[tracked & ~pnp.inliers]
            made = int(np.sum(outliers >= int(state["landmarks_before_kf"])))
            state["inliers"] = int(pnp.inliers.sum())
            state["lines"].append(f"    PnP outliers {len(outliers)}, {made} of them made at the last keyframe")
        return pnp

    apply_solution = vo_module.VisualOdometry._apply

    def apply(self, solution: WindowSolution):  # type: ignore[no-untyped-def]
        if inside():
            moved_cm = 100 * np.linalg.norm(solution.points_odom - self._window.positions(solution.landmark_ids), axis=1)
            step = np.einsum("nji,njk->nik", solution.T_odom_cam_before[:, :3, :3], solution.T_odom_cam[:, :3, :3])
            turn_deg = np.degrees(np.linalg.norm(so3_log(step), axis=1))
            shift_cm = 100 * np.linalg.norm(solution.T_odom_cam[:, :3, 3] - solution.T_odom_cam_before[:, :3, 3], axis=1)
            by_id = {kf.keyframe_id: kf for kf in self._window.keyframes}
            summary = solution.summary
            state["lines"].append(
                f"    window solve: {summary.termination.name} after {len(summary.iterations)} iterations, cost "
                f"{summary.initial_cost:.1f} -> {summary.final_cost:.1f}; landmarks moved p50 {np.median(moved_cm):.2f} cm, "
                f"{int(np.sum(moved_cm > 5))} of {len(moved_cm)} > 5 cm")
            state["lines"].append("    keyframes (s/observations: cm, deg): " + " ".join(
                f"{(by_id[k].stamp_ns * 1e-9 - float(state['t0_s'])):.2f}/{len(by_id[k].landmark_ids)}:{c:.2f},{d:.2f}"
                for k, c, d in zip(solution.keyframe_ids, shift_cm, turn_deg) if k in by_id))
        return apply_solution(self, solution)

    window_problem = vo_module.SlidingWindow.problem

    def problem(self, camera, ba_config):  # type: ignore[no-untyped-def]
        job = window_problem(self, camera, ba_config)
        if job is not None and inside():
            fixed = int(np.sum(job.problem.fixed_cams))
            state["lines"].append(f"    window: {len(self.keyframes)} keyframes, {fixed} fixed; landmarks spanning each split: "
                                  + " ".join(map(str, spans(job.problem.obs_cam, job.problem.obs_point, len(self.keyframes)))))
        return job

    vo_module.VisualOdometry._estimate_pose = estimate
    vo_module.VisualOdometry._apply = apply
    vo_module.SlidingWindow.problem = problem
    previous: list[np.ndarray] = []

    def on_result(result: vo_module.TrackResult, elapsed_s: float) -> None:
        stamp_s = result.stamp_ns * 1e-9
        state.setdefault("t0_s", stamp_s)
        i = min(int(np.searchsorted(truth.timestamps_s, stamp_s - 1e-4)), len(truth.timestamps_s) - 1)
        position, true_position = result.T_odom_base[:3, 3].copy(), np.asarray(truth.positions_m)[i]
        if inside() and previous:
            keyframe = f"keyframe ({state.get('reason')})" if result.keyframe is not None else "-"
            print(f"{float(state['now']):.3f} s {result.status.name} tracks {result.num_tracked} inliers {state.get('inliers')} {keyframe}: "
                  f"step {100 * np.linalg.norm(position - previous[0]):.1f} cm, true {100 * np.linalg.norm(true_position - previous[1]):.1f} cm")
            print("\n".join(state["lines"]))
        state["lines"], state["inliers"] = [], None
        previous[:] = [position, true_position]
        landmarks = state["vo"]._window.num_landmarks if "vo" in state else 0
        if result.keyframe is not None:
            state["landmarks_before_kf"] = state["landmarks"]
        state["landmarks"] = landmarks
        state["now"] = elapsed_s + 1.0 / 30.0  # the next frame's time, for the hooks

    keyframe_reason = vo_module.keyframe_reason

    def reason(*a, **k):  # type: ignore[no-untyped-def]
        state["reason"] = keyframe_reason(*a, **k)
        return state["reason"]

    vo_module.keyframe_reason = reason
    run_until(args.sequence, config, args.until, on_result)


if __name__ == "__main__":
    main()
