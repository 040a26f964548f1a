"""``mp-slam generate``: render a seeded synthetic household RGB-D(/stereo) sequence into a rosbag2."""

from __future__ import annotations

import argparse
from dataclasses import replace

from mp_slam_ros.cli.progress import frame_progress
from mp_slam_ros.sim.config import CameraConfig, DepthConfig, HouseConfig, RobotConfig, SequenceConfig
from mp_slam_ros.sim.sequence import generate_sequence


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mp-slam generate``."""
    house, cam, depth, robot = HouseConfig(), CameraConfig(), DepthConfig(), RobotConfig()
    parser.add_argument("-o", "--output", required=True, help="new (or empty) output directory")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed and options give identical bytes")
    parser.add_argument("--duration", type=float, default=20.0, help="sequence length in seconds (default 20)")
    parser.add_argument("--rooms", type=int, default=house.n_rooms, help=f"number of rooms, 2-9 (default {house.n_rooms})")
    parser.add_argument("--twin-rooms", action="store_true", help="make the first and last room look alike (false-loop trap)")
    parser.add_argument("--plain-wall-fraction", type=float, default=house.plain_wall_fraction, help="fraction of low-texture walls")
    parser.add_argument("--furniture", type=int, default=house.furniture_per_room, help="furniture items per room")
    parser.add_argument("--rate-hz", type=float, default=cam.rate_hz, help=f"camera rate (default {cam.rate_hz:g})")
    parser.add_argument("--image-scale", type=float, default=cam.image_scale, help="scale of the 640x480 images and intrinsics")
    parser.add_argument("--stereo-baseline", type=float, default=0.0, metavar="M", help="add a right camera at this baseline (metres)")
    parser.add_argument("--camera-height", type=float, default=cam.height_m, help=f"camera height, 0.3-1.2 m (default {cam.height_m})")
    parser.add_argument("--camera-offset", type=float, nargs=2, default=cam.offset_m, metavar=("X", "Y"), help="camera x/y in base_link (m)")
    parser.add_argument("--camera-tilt", type=float, default=cam.tilt_deg, help="downward tilt of the camera in degrees")
    parser.add_argument("--image-noise", type=float, default=cam.image_noise_std, help="Gaussian image noise std (8-bit levels)")
    parser.add_argument("--depth-encoding", choices=("16UC1", "32FC1"), default=depth.encoding, help="depth image encoding")
    parser.add_argument("--no-depth-noise", action="store_true", help="exact depth (only range limits applied)")
    parser.add_argument("--speed", type=float, default=robot.max_speed_mps, help="robot top speed in m/s")
    parser.add_argument("--odom-rate-hz", type=float, default=robot.odom_rate_hz, help="wheel odometry rate")
    parser.add_argument("--compression", choices=("zstd", "none"), default="zstd", help="MCAP chunk compression")
    parser.add_argument("--texture-detail", type=float, default=1.0, help="texture resolution factor (<1: faster, blurrier)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> SequenceConfig:
    """Map CLI options onto a :class:`SequenceConfig` (validated later by the generator)."""
    base = SequenceConfig()
    return SequenceConfig(
        seed=args.seed,
        duration_s=args.duration,
        compression=args.compression,
        house=replace(base.house, n_rooms=args.rooms, twin_rooms=args.twin_rooms, plain_wall_fraction=args.plain_wall_fraction, furniture_per_room=args.furniture,
            texture_detail=args.texture_detail,
        ),
        camera=replace(
            base.camera, rate_hz=args.rate_hz, image_scale=args.image_scale, stereo_baseline_m=args.stereo_baseline,
            height_m=args.camera_height, offset_m=tuple(args.camera_offset), tilt_deg=args.camera_tilt, image_noise_std=args.image_noise,
        ),
        depth=replace(base.depth, encoding=args.depth_encoding, enabled_noise=not args.no_depth_noise),
        robot=replace(base.robot, max_speed_mps=args.speed, odom_rate_hz=args.odom_rate_hz),
    )


def run(args: argparse.Namespace) -> int:
    """Generate the sequence and print a one-paragraph summary."""
    cfg = config_from_args(args)
    with frame_progress("rendering", args.no_progress) as progress:
        summary = generate_sequence(cfg, args.output, progress)
    print(
        f"wrote {summary.bag_dir} ({summary.bag_bytes / 1e6:.1f} MB, {summary.n_messages} messages, "
        f"{summary.n_frames} frames, path {summary.path_length_m:.1f} m) in {summary.total_s:.1f} s "
        f"({summary.n_frames / max(summary.render_s, 1e-9):.1f} frames/s rendered and written)"
    )
    print(f"ground truth: {summary.out_dir / 'groundtruth.tum'}  wheel odometry: {summary.out_dir / 'odometry.tum'}")
    return 0
