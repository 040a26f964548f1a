"""Generated RGB-D household sequences, rendered once into a cache (bench_vo_precision, bench_vo_memory)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mp_slam_ros.sim.config import SequenceConfig
from mp_slam_ros.sim.sequence import generate_sequence


def rgbd_sequence(cache: Path, seed: int, duration_s: float, image_scale: float) -> Path:
    """The RGB-D sequence (no right image) of ``seed``: ``bag/`` and ``groundtruth.tum`` under the
    returned folder, rendered into ``cache`` on first use."""
    out = cache / f"seed{seed}_{duration_s:g}s_{image_scale:g}_rgbd"
    if not (out / "groundtruth.tum").exists():
        base = SequenceConfig()
        generate_sequence(replace(base, seed=seed, duration_s=duration_s,
                                  camera=replace(base.camera, image_scale=image_scale)), out)
    return out
