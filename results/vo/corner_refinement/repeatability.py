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

from mp_slam_ros.frontend.depth import depth_at
from mp_slam_ros.frontend.features import FeatureDetector
from mp_slam_ros.geometry.camera import PinholeCamera
from mp_slam_ros.geometry.lie import se3_at
from mp_slam_ros.io.bags import BagReader, image_array, stamp_ns
from mp_slam_ros.io.tum import read_tum
from mp_slam_ros.pipelines.vo_bag import depth_metres
from mp_slam_ros.pipelines.vo_config import FrontendConfig

#: corners further apart than this (px) are taken to be different corners
SAME_CORNER_PX = 2.0
#: A's depth at a corner: its nearest pixel, from the VO's nearest usable depth on (no edge test)
DEPTH = FrontendConfig(depth_edge_ratio=0.0, max_depth_m=1000.0)


def frame_pairs(sequence: Path, step: int, gap: int, detector: FeatureDetector) -> list[tuple[dict, dict]]:
    """(A, B) frames ``{"stamp_ns", "grey", "depth_m", "uv"}`` (``uv``: the detector's new
    corners ``(N, 2)``): A every ``step``-th frame, B ``gap`` later."""
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
            frame = frames.setdefault(index, {"stamp_ns": now_ns})
            if topics[message.topic] == "grey":
                image = image_array(msg)
                frame["grey"] = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
                frame["uv"] = detector.detect(frame["grey"], detector.config.max_features).uv
            else:
                frame["depth_m"] = depth_metres(msg)
    return [(frames[i], frames[i + gap]) for i in sorted(frames) if i % step == 0 and i + gap in frames]


def refined(frame: dict, cap_px: float) -> np.ndarray:
    """The ``frame``'s corners ``(N, 2)``, each moved by ``cornerSubPix`` (7x7 window) unless
    that moves it more than ``cap_px`` (0: none moved)."""
    uv = frame["uv"]
    if cap_px <= 0.0 or len(uv) == 0:
        return uv
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.01)
    moved = cv2.cornerSubPix(frame["grey"], uv.reshape(-1, 1, 2).copy(), (3, 3), (-1, -1), criteria).reshape(-1, 2)
    return np.where((np.linalg.norm(moved - uv, axis=1) <= cap_px)[:, None], moved, uv)


def offsets(cap_px: float, a: dict, b: dict, camera: PinholeCamera, T_world_cam) -> np.ndarray:
    """Offsets ``(M, 2)`` (px) from A's corners, projected into B, to B's nearest corners."""
    uv_a, uv_b = refined(a, cap_px), refined(b, cap_px)
    z = depth_at(a["depth_m"], uv_a, DEPTH)
    ok = np.isfinite(z)
    T_b_a = np.linalg.solve(T_world_cam(b["stamp_ns"]), T_world_cam(a["stamp_ns"]))
    p_b = camera.unproject(uv_a[ok], z[ok]) @ T_b_a[:3, :3].T + T_b_a[:3, 3]
    diff = uv_b[None] - camera.project(p_b)[:, None]
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
    camera = PinholeCamera.from_matrix(K)
    truth = read_tum(args.sequence / "groundtruth.tum")
    truth_ns = np.rint(truth.timestamps_s * 1e9).astype(np.int64).tolist()
    T_world_base, T_base_cam = truth.matrices(), np.asarray(meta["T_base_cam"], np.float64)

    def T_world_cam(at_ns: int) -> np.ndarray:
        return se3_at(truth_ns, T_world_base, at_ns) @ T_base_cam

    pairs = frame_pairs(args.sequence, args.step, args.gap, FeatureDetector(FrontendConfig()))
    print(f"{args.sequence.name}: {len(pairs)} frame pairs, {args.gap} frames apart")
    for cap in args.caps:
        found = np.concatenate([offsets(cap, a, b, camera, T_world_cam) for a, b in pairs])
        length = np.linalg.norm(found, axis=1)
        print(f"cap {cap:g} px: {len(found)} corners, offset mean {found.mean(0).round(3)} std {found.std(0).round(3)} px, "
              f"length median / p75 / p90 {np.median(length):.3f} / {np.percentile(length, 75):.3f} / {np.percentile(length, 90):.3f} px")


if __name__ == "__main__":
    main()
