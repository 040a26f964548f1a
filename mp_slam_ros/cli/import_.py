"""``mp-slam import {kitti,euroc,tum} SRC -o DIR``: a dataset into ``DIR/bag`` (rosbag2 MCAP) + ``DIR/groundtruth.tum``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from mp_slam_ros.io.euroc import read_euroc, write_euroc_bag
from mp_slam_ros.io.kitti import read_kitti, write_kitti_bag
from mp_slam_ros.io.tum_rgbd import read_tum_rgbd, write_tum_rgbd_bag


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mp-slam import``."""
    parser.add_argument("format", choices=("kitti", "euroc", "tum"),
                        help="dataset layout: KITTI odometry (rectified stereo), EuRoC MAV / ASL (stereo, rectified on "
                             "import) or TUM RGB-D")
    parser.add_argument("src", type=Path, help="dataset sequence directory")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output directory (bag/ and groundtruth.tum)")
    parser.add_argument("--intrinsics", type=float, nargs=4, metavar=("FX", "FY", "CX", "CY"),
                        help="tum: undistorted camera intrinsics (default: the freiburg1/2/3 camera named by the folder)")
    parser.add_argument("--camchain", type=Path, help="euroc: a Kalibr camchain.yaml calibrating cam0/cam1 (default: each "
                        "camera's sensor.yaml, else <sequence>/dso/camchain.yaml as in TUM-VI's EuRoC-format exports)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Convert the dataset and print what was written."""
    if args.format == "kitti":
        sequence = read_kitti(args.src)
        count, write, what = len(sequence.left_images), write_kitti_bag, f"stereo pairs, baseline {sequence.baseline_m:.3f} m"
    elif args.format == "euroc":
        sequence = read_euroc(args.src, args.camchain)
        skipped = f"; {sequence.unpaired} images without a partner skipped" if sequence.unpaired else ""
        count, write, what = len(sequence.stamps_ns), write_euroc_bag, f"stereo pairs, rectified{skipped}"
    else:
        sequence = read_tum_rgbd(args.src, tuple(args.intrinsics) if args.intrinsics else None)
        count, write, what = len(sequence.rgb), write_tum_rgbd_bag, "colour/depth pairs"
    with tqdm(total=count, unit="frame", desc="import", disable=args.no_progress) as bar:
        bag = write(sequence, args.output, lambda done, total: bar.update(done - bar.n))
    truth = args.output / "groundtruth.tum"
    print(f"wrote {bag} ({count} {what})" + (f" and {truth}" if truth.exists() else ""))
    return 0
