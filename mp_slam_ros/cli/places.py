"""``mp-slam places``: place recognition + 2-D geometric verification over a folder of images.

Images are taken in order of their natural-sorted file names (``2.png`` before ``10.png``); each
is a query against the earlier ones except the last ``--min-gap``; candidates are verified with a
RANSAC fundamental matrix (images have no depth). Prints the accepted loop pairs, or with
``--json`` ``{"loops": [{"query": NAME, "match": NAME, "inliers": N, "score": S}, ...]}``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import cv2
import numpy as np

from mp_slam_ros.backend.loop_verification import verify_fundamental
from mp_slam_ros.backend.place_recognition import PlaceRecognizer
from mp_slam_ros.config import load_yaml, with_updates
from mp_slam_ros.errors import ConfigError, FileFormatError
from mp_slam_ros.frontend.features import FeatureDetector
from mp_slam_ros.pipelines.loop_closure_config import LoopClosureConfig
from mp_slam_ros.pipelines.vo_config import FrontendConfig

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".tif", ".tiff")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mp-slam places``."""
    parser.add_argument("image_dir", type=Path, help="folder of images taken in order")
    parser.add_argument("--params", type=Path, help="YAML loop-closure options (config/loop_closure.yaml keys: places.*, loop.*)")
    parser.add_argument("--min-gap", type=int, default=20, help="the last N images before a query are never candidates (default 20)")
    parser.add_argument("--features", type=int, default=1000, help="ORB features per image (default 1000)")
    parser.add_argument("--min-inliers", type=int, default=50, help="fundamental-matrix inliers of a loop (default 50: epipolar inliers are weaker evidence than PnP's, loop.min_inliers)")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")


def natural_key(name: str) -> list[object]:
    """Sort key of a file name that orders embedded numbers by value (``2`` before ``10``)."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def image_paths(directory: Path) -> list[Path]:
    """The image files of ``directory`` in natural order (FileFormatError when there are none)."""
    if not directory.is_dir():
        raise FileFormatError(directory, None, "not a directory")
    paths = [p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if not paths:
        raise FileFormatError(directory, None, f"no images ({', '.join(IMAGE_SUFFIXES)})")
    return sorted(paths, key=lambda p: natural_key(p.name))


def find_loops(paths: list[Path], config: LoopClosureConfig, min_gap: int, features: int) -> list[dict[str, object]]:
    """Verified loop pairs ``{"query", "match", "inliers", "score"}`` over ``paths`` in order."""
    if min_gap < 1:
        raise ConfigError("--min-gap", min_gap, "must be >= 1")
    detector = FeatureDetector(FrontendConfig(max_features=features))
    recognizer = PlaceRecognizer(config.places)
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    loops: list[dict[str, object]] = []
    for index, path in enumerate(paths):
        grey = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise FileFormatError(path, None, "not a readable image")
        keypoints = detector.detect(grey, features)
        descriptors, described = detector.describe(grey, keypoints.uv.astype(np.float64), keypoints.angle_deg)
        uv, descriptors = keypoints.uv[described], descriptors[described]
        seen.append((uv, descriptors))
        _, candidates = recognizer.query_and_add(index, descriptors, index - min_gap)
        for candidate in candidates:
            match_uv, match_descriptors = seen[candidate.index]
            check = verify_fundamental(uv, descriptors, match_uv, match_descriptors, config.loop)
            if check.accepted:
                loops.append({"query": path.name, "match": paths[candidate.index].name, "inliers": check.inliers, "score": round(candidate.score, 4)})
    return loops


def run(args: argparse.Namespace) -> int:
    """Recognise places over the folder and print the accepted loops."""
    config = load_yaml(args.params, LoopClosureConfig) if args.params else LoopClosureConfig()
    config = with_updates(config, {"loop.min_inliers": args.min_inliers})
    paths = image_paths(args.image_dir)
    loops = find_loops(paths, config, args.min_gap, args.features)
    if args.json:
        print(json.dumps({"loops": loops}, indent=1))
        return 0
    for loop in loops:
        print(f"{loop['query']} -> {loop['match']}  inliers {loop['inliers']}  score {loop['score']:.3f}")
    print(f"{len(loops)} loops over {len(paths)} images")
    return 0
