"""The tracks PnP rejects in a burst of keyframes: residuals at the solved pose and corner strength.

For every frame in ``[SINCE, UNTIL]`` s of a generated RGB-D run (the loop-closure bench's VO
options, synchronous BA): the PnP outliers' pixel residuals (and some residual vectors), their
depth against their landmark's, and the Shi-Tomasi minimum eigenvalue and Harris response at the
track's pixel in its keyframe's image, against the inliers'.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python results/vo/window_hinge/burst_outliers.py \\
        /tmp/lc/cache/house-s5-180s-x1-stereo 26.86 26.96
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from household_run import run_until, vo_config

from mp_slam_ros.geometry.lie import se3_inverse
from mp_slam_ros.pipelines import vo as vo_module


def spread(values: np.ndarray, scale: float = 1.0) -> str:
    """p10 / p50 / p90 of the finite ``values`` times ``scale``."""
    values = values[np.isfinite(values)] * scale
    return " / ".join(f"{v:.2f}" for v in np.percentile(values, [10, 50, 90])) if len(values) else "-"


def report(odometry: vo_module.VisualOdometry, uv: np.ndarray, tracked: np.ndarray, pnp: vo_module.PnPResult, depth_m: np.ndarray) -> str:
    """The outliers of one frame's PnP against its inliers."""
    T_cam_odom = se3_inverse(pnp.T_odom_cam)
    points_cam = odometry._window.positions(odometry._track_ids) @ T_cam_odom[:3, :3].T + T_cam_odom[:3, 3]
    K = odometry._K
    residual = points_cam[:, :2] / points_cam[:, 2:3] * np.diag(K)[:2] + K[:2, 2] - uv
    pixel = np.linalg.norm(residual, axis=1)
    out, inl = tracked & ~pnp.inliers, pnp.inliers
    reference = odometry._tracker._reference
    at = np.clip(np.round(odometry._track_uv_keyframe).astype(int), 0, [reference.shape[1] - 1, reference.shape[0] - 1])
    eigen = cv2.cornerMinEigenVal(reference, 7, 3)[at[:, 1], at[:, 0]]
    harris = cv2.cornerHarris(reference.astype(np.float32), 7, 3, 0.04)[at[:, 1], at[:, 0]]
    largest = np.argsort(-pixel[out])[:: max(1, int(out.sum()) // 12)]
    return "\n".join([
        f"  tracked {int(tracked.sum())}, outliers {int(out.sum())}: pixel residual {spread(pixel[out])} px (inliers {spread(pixel[inl])})",
        "    outlier residual vectors (px): " + " ".join(f"({x:.1f},{y:.1f})" for x, y in residual[out][largest]),
        f"    depth - landmark z (cm): outliers {spread(np.abs(depth_m[out] - points_cam[out, 2]), 100)}, inliers {spread(np.abs(depth_m[inl] - points_cam[inl, 2]), 100)}",
        f"    landmark z (m): outliers {spread(points_cam[out, 2])}, inliers {spread(points_cam[inl, 2])}; v (px) of outliers {spread(uv[out, 1])}",
        f"    min eigenvalue (1e-3): outliers {spread(eigen[out], 1e3)}, inliers {spread(eigen[inl], 1e3)}",
        f"    Harris response (1e5): outliers {spread(harris[out], 1e-5)}, inliers {spread(harris[inl], 1e-5)}",
    ])


def main() -> None:
    sequence, since_s, until_s = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
    clock = {"next_s": 0.0}  # the next frame's time since the first, for the hook
    estimate_pose = vo_module.VisualOdometry._estimate_pose

    def estimate(self, uv, tracked, T_pred, images):  # type: ignore[no-untyped-def]
        pnp = estimate_pose(self, uv, tracked, T_pred, images)
        if pnp is not None and since_s <= clock["next_s"] <= until_s:
            print(f"{clock['next_s']:.3f} s\n" + report(self, uv, tracked, pnp, self._depth(uv, images)))
        return pnp

    def on_result(_result: vo_module.TrackResult, elapsed_s: float) -> None:
        clock["next_s"] = elapsed_s + 1.0 / 30.0

    vo_module.VisualOdometry._estimate_pose = estimate
    run_until(sequence, vo_config("rgbd"), until_s, on_result)


if __name__ == "__main__":
    main()
