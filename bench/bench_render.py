"""Render speed of the household simulator at 640x480 (frames/s), checked before timed.

Side by side in one run: the renderer on all numba threads vs one thread, the full per-frame
generator work (render + ToF depth + encoding + CDR serialization) and a stereo pair.
Before timing, every pixel's depth is compared with the analytic ray/plane depth of the quad it
shows (the answer must be exact), then frames along a real trajectory are timed.

    PYTHONPATH=. .venv/bin/python bench/bench_render.py [--frames 60] [--seed 0]

Writes results/bench_render/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numba
import numpy as np

from mp_slam_ros.io.bags import TYPESTORE
from mp_slam_ros.sim import messages
from mp_slam_ros.sim.config import SequenceConfig
from mp_slam_ros.sim.house import generate_house
from mp_slam_ros.sim.render import RenderResult, render
from mp_slam_ros.sim.rig import make_rig
from mp_slam_ros.sim.sensors import encode_depth, tof_depth
from mp_slam_ros.sim.trajectory import plan_trajectory


def check_depth(view: RenderResult, scene, camera, T_world_cam: np.ndarray) -> float:
    """Max relative error between rendered depth and the analytic depth of each pixel's quad."""
    rows, cols = np.nonzero(view.surface >= 0)
    quads = view.surface[rows, cols]
    rays = np.stack([(cols - camera.cx) / camera.fx, (rows - camera.cy) / camera.fy, np.ones(rows.size)], 1)
    R, t = T_world_cam[:3, :3], T_world_cam[:3, 3]
    origin_c = (scene.origin_w[quads] - t) @ R
    normal_c = scene.normal_w[quads] @ R
    expected = np.sum(normal_c * origin_c, axis=1) / np.sum(normal_c * rays, axis=1)
    return float(np.max(np.abs(view.depth_m[rows, cols] - expected) / expected))


def time_frames(fn, poses: np.ndarray) -> float:
    """Frames per second of ``fn(T)`` over ``poses`` (after one warm-up call)."""
    fn(poses[0])
    start = time.perf_counter()
    for T in poses:
        fn(T)
    return len(poses) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/bench_render"))
    args = parser.parse_args()

    cfg = SequenceConfig(seed=args.seed)
    tick = time.perf_counter()
    house = generate_house(cfg.house, cfg.seed)
    house_s = time.perf_counter() - tick
    rig = make_rig(cfg.camera)
    traj = plan_trajectory(house, cfg.robot, 60.0, cfg.seed)
    T_world_cam = traj.T_world_base(np.linspace(5.0, 55.0, args.frames)) @ rig.T_base_cam
    scene, camera = house.scene, rig.camera

    worst = max(check_depth(render(scene, camera, T), scene, camera, T) for T in T_world_cam[:: max(1, args.frames // 10)])
    assert worst < 1e-5, f"rendered depth is not the analytic plane depth (max rel error {worst:.2e})"

    def full_frame(T: np.ndarray) -> None:
        view = render(scene, camera, T)
        rng = np.random.default_rng(0)
        depth = encode_depth(tof_depth(view, cfg.depth, rng), "16UC1")
        for pixels in (view.rgb, depth):
            TYPESTORE.serialize_cdr(messages.image_msg(pixels, 0, "cam"), "sensor_msgs/msg/Image")

    threads = numba.get_num_threads()
    results = {}
    results["render_fps"] = time_frames(lambda T: render(scene, camera, T), T_world_cam)
    numba.set_num_threads(1)
    results["render_fps_1_thread"] = time_frames(lambda T: render(scene, camera, T), T_world_cam)
    numba.set_num_threads(threads)
    results["full_frame_fps"] = time_frames(full_frame, T_world_cam)
    right_offset = np.eye(4)
    right_offset[0, 3] = 0.12  # T_cam_right of a 12 cm stereo baseline
    results["stereo_pair_fps"] = time_frames(lambda T: (render(scene, camera, T), render(scene, camera, T @ right_offset)), T_world_cam)
    summary = {
        "image": f"{camera.width}x{camera.height}",
        "frames": args.frames,
        "quads": scene.n_quads,
        "house_setup_s": round(house_s, 3),
        "numba_threads": threads,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "max_rel_depth_error": worst,
        **{k: round(v, 1) for k, v in results.items()},
        "thread_speedup": round(results["render_fps"] / results["render_fps_1_thread"], 2),
    }
    print(f"640x480 render: {summary['render_fps']} frames/s on {threads} numba threads, "
          f"{summary['render_fps_1_thread']} on 1 thread (x{summary['thread_speedup']}); "
          f"full frame (render+ToF depth+CDR): {summary['full_frame_fps']} frames/s; stereo pair: {summary['stereo_pair_fps']} pairs/s; "
          f"depth max rel error {worst:.1e}; {scene.n_quads} quads")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
