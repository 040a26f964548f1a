"""``mp-slam import kitti SRC -o DIR``: a dataset into ``DIR/bag`` (rosbag2 MCAP) + ``DIR/groundtruth.tum``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from mp_slam_ros.io.kitti import read_kitti, write_kitti_bag


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mp-slam import``."""
    parser.add_argument("format", choices=("kitti",), help="dataset layout (KITTI odometry)")
    parser.add_argument("src", type=Path, help="dataset sequence directory")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output directory (bag/ and groundtruth.tum)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Convert the dataset and print what was written."""
    sequence = read_kitti(args.src)
    with tqdm(total=len(sequence.left_images), unit="pair", desc="import", disable=args.no_progress) as bar:
        bag = write_kitti_bag(sequence, args.output, lambda done, total: bar.update(done - bar.n))
    truth = args.output / "groundtruth.tum"
    print(f"wrote {bag} ({len(sequence.left_images)} stereo pairs, baseline {sequence.baseline_m:.3f} m)"
          + (f" and {truth}" if truth.exists() else ""))
    return 0
