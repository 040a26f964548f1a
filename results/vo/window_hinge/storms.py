"""Bursts of keyframes in kept runs: >= 5 keyframes within 0.25 s, extended while the next comes
within 0.1 s; when, how many, and the fewest depth-bearing features of a keyframe in the burst.

    PYTHONPATH=. python results/vo/window_hinge/storms.py /tmp/lc/runs/*.pkl
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np


def bursts(t_s: np.ndarray) -> list[tuple[int, int]]:
    """The bursts among keyframe times ``t_s`` (s, sorted), as (first, last) keyframe indices."""
    found, i = [], 0
    while i < len(t_s) - 4:
        if t_s[i + 4] - t_s[i] > 0.25:
            i += 1
            continue
        j = i + 4
        while j + 1 < len(t_s) and t_s[j + 1] - t_s[j] <= 0.1:
            j += 1
        found.append((i, j))
        i = j + 1
    return found


def main() -> None:
    for path in map(Path, sys.argv[1:]):
        kept = pickle.loads(path.read_bytes())  # written by bench_loop_closure.py --runs: a trusted local cache
        keyframes = kept["keyframes"]
        t_s = np.array([k.stamp_ns for k in keyframes]) * 1e-9 - kept["vo"].stamps_s[0]
        features = np.array([int(np.isfinite(np.asarray(k.points_cam)[:, 2]).sum()) for k in keyframes])
        found = bursts(t_s)
        in_bursts = sum(j - i + 1 for i, j in found)
        print(f"{path.stem}: {len(t_s)} keyframes, {len(found)} bursts holding {in_bursts}: " + "; ".join(
            f"{t_s[i]:.1f}-{t_s[j]:.1f} s x{j - i + 1} (fewest {features[i:j + 1].min()})" for i, j in found))


if __name__ == "__main__":
    main()
