"""How the global BA's keypoint errors are distributed (a measurement script).

Replays a run kept by ``bench/bench_loop_closure.py --runs`` (``../depth_weight/floor.py``), forms
the global BA's landmarks and observations at the *true* keyframe poses (each landmark at the mean
of its observers' 3-D points) and prints their pixel residuals: the standard deviation against a
robust one (1.4826 x the median absolute deviation), then split by the image structure at each
keypoint on its keyframe's own image (the 9x9 structure tensor of Sobel gradients, eigenvalues
l1 >= l2): the residual along the strong and the weak direction, by the ratio l2 / l1 (near 0: an
edge, along which a keypoint can slide; near 1: a corner).

    PYTHONPATH=. .venv/bin/python results/loop_closure/robust_loss/residual_tails.py RUN.pkl SEQUENCE_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "depth_weight"), str(HERE.parent / "measurement_noise")]
from floor import replayed, truth_residuals  # noqa: E402
from trials import keyframe_images  # noqa: E402

#: side of the structure tensor's window (px)
WINDOW_PX = 9
#: residuals beyond this (px) are wrong matches, not keypoint noise (the BA's outlier threshold)
OUTLIER_PX = 3.0


def robust_sigma(x: np.ndarray) -> float:
    """1.4826 x the median absolute deviation: the standard deviation of a Gaussian core."""
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def structure_tensors(grey: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """``(M, 3)`` [gxx, gxy, gyy] summed over a ``WINDOW_PX`` window at the keypoints ``uv`` ``(M, 2)``
    of the 8-bit image ``grey`` (intensities in [0, 1])."""
    g = grey.astype(np.float32) / 255.0
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    window = (WINDOW_PX, WINDOW_PX)
    sums = [cv2.boxFilter(p, -1, window, normalize=False) for p in (gx * gx, gx * gy, gy * gy)]
    px = np.clip(np.rint(uv).astype(np.int64), 0, [g.shape[1] - 1, g.shape[0] - 1])
    return np.stack([s[px[:, 1], px[:, 0]] for s in sums], axis=1)


def main() -> None:
    run_path, sequence = Path(sys.argv[1]), Path(sys.argv[2])
    r = replayed(run_path, sequence)
    lm, residual, _ = truth_residuals(r.keyframes, r.graph, r.T_true, r.config.loop_closure.global_ba)
    grey, _ = keyframe_images(r, sequence)
    tensor = np.full((len(residual), 3), np.nan)
    for k in np.unique(lm.obs_keyframe):
        if k in grey:
            sel = np.flatnonzero(lm.obs_keyframe == k)
            tensor[sel] = structure_tensors(grey[k], lm.obs_uv[sel])
    ok = np.isfinite(tensor).all(axis=1) & (np.abs(residual).max(axis=1) < OUTLIER_PX)
    res, (a, b, c) = residual[ok], tensor[ok].T
    half_gap = np.sqrt(np.maximum((a - c) ** 2 / 4 + b * b, 0.0))
    l1, l2 = (a + c) / 2 + half_gap, (a + c) / 2 - half_gap
    theta = 0.5 * np.arctan2(2 * b, a - c)  # the strong direction
    strong = res[:, 0] * np.cos(theta) + res[:, 1] * np.sin(theta)
    weak = -res[:, 0] * np.sin(theta) + res[:, 1] * np.cos(theta)
    print(f"{run_path.stem}: {ok.sum()} of {len(ok)} observations within {OUTLIER_PX:g} px")
    print(f"  std u / v {res[:, 0].std():.3f} / {res[:, 1].std():.3f} px; robust sigma u / v "
          f"{robust_sigma(res[:, 0]):.3f} / {robust_sigma(res[:, 1]):.3f} px")
    for q in (50, 90, 99):
        print(f"  |residual| p{q} {np.percentile(np.linalg.norm(res, axis=1), q):.3f} px")
    ratio = l2 / np.maximum(l1, 1e-12)
    edges = np.percentile(ratio, [0, 10, 25, 50, 75, 90, 100])
    print("  l2/l1 range        count   std strong / weak   robust sigma strong / weak")
    for low, high in zip(edges[:-1], edges[1:]):
        s = (ratio >= low) & (ratio <= high)
        print(f"  {low:7.4f}-{high:6.4f} {s.sum():8d}   {strong[s].std():.3f} / {weak[s].std():.3f}"
              f"        {robust_sigma(strong[s]):.3f} / {robust_sigma(weak[s]):.3f}")


if __name__ == "__main__":
    main()
