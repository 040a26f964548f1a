"""How well two detections of one corner agree, as the VO detects them and refined by OpenCV's
``cornerSubPix`` (the trial of README.md here, not in the VO: a refinement moving a corner further
than the cap is not used).

Over a generated sequence (true poses and depth), every ``--step``-th frame A is paired with the
frame ``--gap`` frames later, B. The corners the VO's detector finds in A are projected into B with
the true relative pose and A's depth image, and each is compared with the nearest corner the
detector finds in B (pairs over 2 px apart are different corners, not counted). Printed per cap (0: the VO's detector as it is):
the mean and std of that offset (px, u and v) and its length's median / p75 / p90.

    PYTHONPATH=. .venv/bin/python results/vo/corner_refinement/repeatability.py SEQUENCE_DIR \\
        [--step 100] [--gap 15] [--caps 0 1 2 3 5]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from mp_slam_ros.frontend.features import FeatureDetector
from mp_slam_ros.io.bags import BagReader, image_array, stamp_ns
from mp_slam_ros.io.tum import read_tum
from mp_slam_ros.pipelines.vo_config import FrontendConfig

#: corners further apart than this (px) are taken to be different corners
SAME_CORNER_PX = 2.0


def frame_pairs(sequence: Path, step: int, gap: int) -> list[tuple[dict, dict]]:
    """(A, B) frames ``{"stamp_ns", "grey", "depth_m"}``: A every ``step``-th frame, B ``gap`` later."""
    meta = json.loads((sequence / "sequence.json").read_text())
    topics = {meta["topics"]["rgb"]: "grey", meta["topics"]["depth"]: "depth_m"}
    frames: dict[int, dict] = {}
    index, last_ns = -1, None
    with BagReader(sequence / "bag") as bag:
        for message, msg in bag.decoded(topics):
            now_ns = stamp_ns(msg.header)
            if now_ns != last_ns:
                index, last_ns = index + 1, now_ns
            if index % step not in (0, gap):
                continue
            image = image_array(msg)
            frame = frames.setdefault(index, {"stamp_ns": now_ns})
            if topics[message.topic] == "grey":
                frame["grey"] = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
            else:
                frame["depth_m"] = image.astype(np.float64) * (1e-3 if image.dtype == np.uint16 else 1.0)
    return [(frames[i], frames[i + gap]) for i in sorted(frames) if i % step == 0 and i + gap in frames]


def refined_corners(detector: FeatureDetector, grey: np.ndarray, cap_px: float) -> np.ndarray:
    """The detector's new corners ``(N, 2)`` in ``grey``, each moved by ``cornerSubPix`` (7x7
    window) unless that moves it more than ``cap_px`` (0: none moved)."""
    uv = detector.detect(grey, detector.config.max_features).uv
    if cap_px <= 0.0 or len(uv) == 0:
        return uv
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.01)
    refined = cv2.cornerSubPix(grey, uv.reshape(-1, 1, 2).copy(), (3, 3), (-1, -1), criteria).reshape(-1, 2)
    return np.where((np.linalg.norm(refined - uv, axis=1) <= cap_px)[:, None], refined, uv)


def offsets(detector: FeatureDetector, cap_px: float, a: dict, b: dict, K: np.ndarray, T_world_cam) -> np.ndarray:
    """Offsets ``(M, 2)`` (px) from A's corners, projected into B, to B's nearest corners."""
    uv_a, uv_b = (refined_corners(detector, frame["grey"], cap_px) for frame in (a, b))
    z = a["depth_m"][np.round(uv_a[:, 1]).astype(int), np.round(uv_a[:, 0]).astype(int)]
    ok = np.isfinite(z) & (z > 0.2)
    p_a = np.linalg.solve(K, np.vstack([uv_a[ok].T, np.ones(ok.sum())])) * z[ok]
    T_b_a = np.linalg.solve(T_world_cam(b["stamp_ns"]), T_world_cam(a["stamp_ns"]))
    p_b = T_b_a[:3, :3] @ p_a + T_b_a[:3, 3:4]
    projected = ((K @ p_b)[:2] / p_b[2]).T
    diff = uv_b[None] - projected[:, None]
    nearest = diff[np.arange(len(diff)), np.argmin(np.linalg.norm(diff, axis=2), axis=1)]
    return nearest[np.linalg.norm(nearest, axis=1) < SAME_CORNER_PX]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sequence", type=Path, help="a generated sequence directory (mp-slam generate)")
    parser.add_argument("--step", type=int, default=100, help="frames between pairs")
    parser.add_argument("--gap", type=int, default=15, help="frames from A to B")
    parser.add_argument("--caps", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 5.0], help="largest move of a refined corner (px; 0: not refined)")
    args = parser.parse_args()
    meta = json.loads((args.sequence / "sequence.json").read_text())
    K = np.asarray(meta["camera"]["K"], np.float64)
    truth = read_tum(args.sequence / "groundtruth.tum")
    T_world_base, T_base_cam = truth.matrices(), np.asarray(meta["T_base_cam"], np.float64)

    def T_world_cam(at_ns: int) -> np.ndarray:
        return T_world_base[int(np.argmin(np.abs(truth.timestamps_s - at_ns * 1e-9)))] @ T_base_cam

    pairs = frame_pairs(args.sequence, args.step, args.gap)
    print(f"{args.sequence.name}: {len(pairs)} frame pairs, {args.gap} frames apart")
    detector = FeatureDetector(FrontendConfig())
    for cap in args.caps:
        found = np.concatenate([offsets(detector, cap, a, b, K, T_world_cam) for a, b in pairs])
        length = np.linalg.norm(found, axis=1)
        print(f"cap {cap:g} px: {len(found)} corners, offset mean {found.mean(0).round(3)} std {found.std(0).round(3)} px, "
              f"length median / p75 / p90 {np.median(length):.3f} / {np.percentile(length, 75):.3f} / {np.percentile(length, 90):.3f} px")


if __name__ == "__main__":
    main()
