"""Two trials at the global BA's measurements, where the VO alone is already good (a measurement
script; neither is in the product, see README.md here).

``--trial klt`` / ``affine``: each landmark's observations re-measured against its earliest one,
by OpenCV's pyramidal KLT (translation only) or by the VO's affine-warped patch alignment
(:mod:`mp_slam_ros.frontend.alignment`, the warp from the PGO poses and the reference depth), on
the keyframes' own images from the sequence's bag; the keypoints moved (RGB-D: their depth read
again there), then the global BA solved on them.

``--trial depth``: the depth of each observation weighed by a depth-noise model
``sigma(z) = s0 + s1 z + s2 z^2`` (``--models s0,s1,s2 ...``) instead of one virtual baseline for
all: the BA's virtual baseline times 4, each depth observation split into a pixel+depth
observation whose depth row errs by one pixel where the depth errs by ``sigma(z)`` and a
pixel-only one that restores the pixels' full weight (their weights' squares sum to one).

Each prints ATE RMSE (cm) of the keyframes and of every tracked frame: the PGO, the product's
global BA and the trial's.

    PYTHONPATH=. .venv/bin/python results/loop_closure/measurement_noise/trials.py RUN.pkl SEQUENCE_DIR \\
        --trial {klt,affine,depth} [--models 0.001,0.0015,0.0005 ...]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "depth_weight"))
from floor import Replayed, replayed  # noqa: E402

from mp_slam_ros.backend import global_ba as gba  # noqa: E402
from mp_slam_ros.frontend.alignment import affine_warps, align_patches  # noqa: E402
from mp_slam_ros.frontend.depth import depth_at  # noqa: E402
from mp_slam_ros.geometry.camera import PinholeCamera  # noqa: E402
from mp_slam_ros.geometry.lie import se3_inverse  # noqa: E402
from mp_slam_ros.io.bags import BagReader, image_array, stamp_ns  # noqa: E402
from mp_slam_ros.pipelines.vo_bag import depth_metres  # noqa: E402
from mp_slam_ros.solvers.ba import ba_solver_options, bundle_adjust  # noqa: E402
from mp_slam_ros.solvers.ba_problem import BAProblem  # noqa: E402

#: patch side (px), iterations and largest move (px) of a re-measured observation
PATCH_PX, ITERATIONS, MAX_MOVE_PX = 9, 30, 1.5
#: the depth trial's virtual baseline, times the product's (so that no depth row needs more weight than a pixel's)
BASELINE_FACTOR = 4.0


def keyframe_images(r: Replayed, sequence: Path) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """Grey images and depth images (metres) of the keyframes, by keyframe index, from the bag."""
    meta = json.loads((sequence / "sequence.json").read_text())
    index = {int(k.stamp_ns): i for i, k in enumerate(r.keyframes)}
    topics = {meta["topics"]["rgb"]: "grey", meta["topics"]["depth"]: "depth"}
    grey: dict[int, np.ndarray] = {}
    depth: dict[int, np.ndarray] = {}
    with BagReader(sequence / "bag") as bag:
        for message, msg in bag.decoded(topics):
            k = index.get(stamp_ns(msg.header))
            if k is None:
                continue
            if topics[message.topic] == "grey":
                image = image_array(msg)
                grey[k] = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
            else:
                depth[k] = depth_metres(msg)
    return grey, depth


def remeasured(r: Replayed, sequence: Path, method: str) -> list:
    """The keyframes with each landmark's observations aligned to its earliest one (module doc)."""
    grey, depth = keyframe_images(r, sequence)
    images = grey if method == "klt" else {k: image.astype(np.float32) for k, image in grey.items()}  # KLT: 8-bit; the aligner: float32
    _, _, lm = gba.associate(r.keyframes, r.T_pgo, r.graph, r.config.loop_closure.global_ba)
    row = np.empty(len(lm.obs_keyframe), np.int64)  # each observation's keypoint in its keyframe
    for k in np.unique(lm.obs_keyframe):
        sel = np.flatnonzero(lm.obs_keyframe == k)
        keypoints = np.asarray(r.keyframes[k].keypoints_px, np.float64)
        row[sel] = np.linalg.norm(keypoints[None] - lm.obs_uv[sel][:, None], axis=2).argmin(axis=1)
    order = np.lexsort((lm.obs_keyframe, lm.obs_landmark))
    first = np.r_[True, lm.obs_landmark[order][1:] != lm.obs_landmark[order][:-1]]
    reference = np.empty(len(lm.points_map), np.int64)
    reference[lm.obs_landmark[order][first]] = order[first]
    ref = reference[lm.obs_landmark]
    others = np.flatnonzero(ref != np.arange(len(ref)))
    uv, moved = lm.obs_uv.copy(), np.zeros(len(ref), bool)
    pair = lm.obs_keyframe[ref[others]] * len(r.keyframes) + lm.obs_keyframe[others]
    for key in np.unique(pair):
        sel = others[pair == key]
        a, b = int(lm.obs_keyframe[ref[sel[0]]]), int(lm.obs_keyframe[sel[0]])
        found, ok = align(method, images, a, b, lm.obs_uv[ref[sel]], lm.obs_uv[sel],
                          np.asarray(r.keyframes[a].points_cam, np.float64)[row[ref[sel]]], r.T_pgo, r.keyframes[a].K)
        uv[sel[ok]], moved[sel[ok]] = found[ok], True
    shift = np.linalg.norm(uv - lm.obs_uv, axis=1)[moved]
    print(f"{len(others)} observations aligned to another, {moved.sum()} moved: median {np.median(shift):.3f} px, "
          f"p90 {np.percentile(shift, 90):.3f} px", flush=True)
    keyframes = list(r.keyframes)
    for k in np.unique(lm.obs_keyframe[moved]):
        sel = np.flatnonzero((lm.obs_keyframe == k) & moved)
        kf = keyframes[k]
        keypoints, points = np.asarray(kf.keypoints_px, np.float64).copy(), np.asarray(kf.points_cam, np.float64).copy()
        z = points[row[sel], 2]
        if k in depth and r.config.vo.mode.value == "rgbd":
            again = depth_at(depth[k], uv[sel], r.config.vo.frontend)
            z = np.where(np.isfinite(again) & np.isfinite(z), again, z)
        keypoints[row[sel]] = uv[sel]
        has = np.isfinite(z)
        points[row[sel][has]] = PinholeCamera.from_matrix(kf.K).unproject(uv[sel][has], z[has])
        keyframes[k] = replace(kf, keypoints_px=keypoints.astype(np.float32), points_cam=points.astype(np.float32))
    return keyframes


def align(method: str, images: dict, a: int, b: int, uv_a: np.ndarray, uv_b: np.ndarray, points_a: np.ndarray,
          T_map_cam: np.ndarray, K_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``uv_b`` ``(M, 2)`` in keyframe ``b`` re-measured against ``uv_a`` in ``a`` (``images``: grey,
    uint8 for KLT, float32 for the aligner); which moved."""
    if method == "klt":
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ITERATIONS, 0.003)
        flow = dict(winSize=(PATCH_PX + 2, PATCH_PX + 2), maxLevel=0, criteria=criteria, flags=cv2.OPTFLOW_USE_INITIAL_FLOW)
        p_a, p_b = uv_a.astype(np.float32).reshape(-1, 1, 2), uv_b.astype(np.float32).reshape(-1, 1, 2)
        forward, status, _ = cv2.calcOpticalFlowPyrLK(images[a], images[b], p_a, p_b.copy(), **flow)
        back, status_back, _ = cv2.calcOpticalFlowPyrLK(images[b], images[a], forward.copy(), p_a.copy(), **flow)
        forward, back = forward.reshape(-1, 2), back.reshape(-1, 2)
        ok = (status.ravel() == 1) & (status_back.ravel() == 1) & (np.linalg.norm(back - uv_a, axis=1) < 0.1)
        return forward, ok & (np.linalg.norm(forward - uv_b, axis=1) < MAX_MOVE_PX)
    has = np.isfinite(points_a).all(axis=1)
    found, ok = uv_b.copy(), np.zeros(len(uv_b), bool)
    if has.any():
        warps = affine_warps(points_a[has], uv_a[has], se3_inverse(T_map_cam[b]) @ T_map_cam[a], PinholeCamera.from_matrix(K_a))
        found[has], ok[has] = align_patches(images[a], images[b], uv_a[has], warps,
                                            uv_b[has], PATCH_PX // 2, ITERATIONS, MAX_MOVE_PX)
    return found, ok


def depth_weighted(problem: BAProblem, num_real: int, model: tuple[float, float, float]) -> BAProblem:
    """``problem`` with its depths weighed by ``model`` (module doc); the virtual odometry points
    (observations from ``num_real`` on) weigh as before."""
    fx_baseline = problem.fx_baseline[problem.obs_cam]
    has = np.isfinite(problem.obs_u_right)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = fx_baseline / (problem.obs_uv[:, 0] - problem.obs_u_right)
    s0, s1, s2 = model
    sigma_row_px = BASELINE_FACTOR * fx_baseline * (s0 + s1 * z + s2 * z * z) / (z * z)
    w = problem.obs_weight
    real = np.arange(len(w)) < num_real
    depth_w = np.where(has, np.where(real, np.minimum(w, 1.0 / sigma_row_px), w / BASELINE_FACTOR), w)
    pixel_w = np.sqrt(np.maximum(w * w - depth_w * depth_w, 0.0))
    split = has & (pixel_w > 1e-6 * w)
    return BAProblem(
        T_world_cam=problem.T_world_cam, points_world=problem.points_world, intrinsics=problem.intrinsics,
        obs_cam=np.r_[problem.obs_cam, problem.obs_cam[split]], obs_point=np.r_[problem.obs_point, problem.obs_point[split]],
        obs_uv=np.r_[problem.obs_uv, problem.obs_uv[split]],
        obs_u_right=np.r_[np.where(has, problem.obs_uv[:, 0] - BASELINE_FACTOR * fx_baseline / z, np.nan), np.full(split.sum(), np.nan)],
        obs_weight=np.r_[depth_w, pixel_w[split]], fx_baseline=problem.fx_baseline * BASELINE_FACTOR,
        fixed_cams=problem.fixed_cams, loss=problem.loss,
    )


def depth_model_ba(r: Replayed, model: tuple[float, float, float]) -> np.ndarray:
    """The product's two-pass global BA (:func:`~mp_slam_ros.backend.global_ba.refine_keyframes`)
    with each pass solved on :func:`depth_weighted`; the refined keyframe poses."""
    cfg = r.config.loop_closure.global_ba
    odometry = gba._odometry_links(r.graph, cfg.odometry_max_sigma_m)
    _, _, landmarks = gba.associate(r.keyframes, r.T_pgo, r.graph, cfg)
    options = ba_solver_options(cfg.precision, max_iterations=cfg.max_iterations)
    T = r.T_pgo
    for first_pass in (True, False):
        problem, in_ba, _ = gba._problem(r.keyframes, T, landmarks, odometry, cfg)
        result = bundle_adjust(depth_weighted(problem, len(landmarks.obs_keyframe), model), options,
                               solver=cfg.solver, preconditioner_band=cfg.preconditioner_band)
        T = gba._with_refined(T, result.state.T_world_cam, in_ba)
        inliers = gba._inliers(landmarks, problem, result.state, cfg.outlier_threshold_px) if first_pass else None
        if inliers is None or (landmarks := gba._usable(inliers, len(r.keyframes), cfg.min_observations)) is None:
            break
    print(f"  {result.summary.termination.value}, {result.summary.num_iterations} iterations", flush=True)
    return T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run kept by bench_loop_closure.py --runs")
    parser.add_argument("sequence", type=Path, help="its generated sequence directory")
    parser.add_argument("--trial", choices=["klt", "affine", "depth"], required=True)
    parser.add_argument("--models", nargs="+", default=["0.001,0.0015,0.0005"], help="depth noise s0,s1,s2 (m, -, 1/m)")
    args = parser.parse_args()
    r = replayed(args.run, args.sequence)
    cfg = r.config.loop_closure.global_ba
    r.report("PGO", r.T_pgo)
    r.report("global BA (the product's)", gba.refine_keyframes(r.keyframes, r.graph.with_poses(r.T_pgo), cfg).T_map_cam)
    if args.trial == "depth":
        for text in args.models:
            model = tuple(float(x) for x in text.split(","))
            r.report(f"global BA, depth noise {text}", depth_model_ba(r, model))  # type: ignore[arg-type]
        return
    keyframes = remeasured(r, args.sequence, args.trial)
    r.report(f"global BA on {args.trial}-aligned observations", gba.refine_keyframes(keyframes, r.graph.with_poses(r.T_pgo), cfg).T_map_cam)


if __name__ == "__main__":
    main()
