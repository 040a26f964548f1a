"""What loop closure keeps of every keyframe, and the map files (g2o + npz, saved atomically).

:class:`KeyframeStore` holds per node the VO keyframe id, stamp, session, odometry pose
``T_odom_cam``, intrinsics and the keypoints/descriptors/3-D points verification needs.

A saved map is a directory with ``map.json`` naming a pose graph ``graph-<token>.g2o``
(:mod:`mp_slam_ros.io.g2o`) and a keyframe store ``keyframes-<token>.npz`` (with the place
recognition vocabulary). Both files are written under temporary names, then renamed
(``os.replace``), and only then is ``map.json`` replaced: a kill at any moment leaves the previous
map readable; files of older maps are removed after the new manifest is in place.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.backend.place_recognition import BinaryVocabulary
from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.errors import FileFormatError
from mp_slam_ros.io.g2o import read_g2o, write_g2o

MANIFEST = "map.json"
_FORMAT_VERSION = 1


@dataclass
class StoredKeyframe:
    """One node's keyframe: ids, pose in its session's odometry frame, features for verification."""

    keyframe_id: int
    stamp_ns: int
    session: int
    T_odom_cam: NDArray[np.float64]  # (4, 4)
    K: NDArray[np.float64]  # (3, 3)
    keypoints_px: NDArray[np.float32]  # (N, 2)
    descriptors: NDArray[np.uint8]  # (N, D)
    points_cam: NDArray[np.float32]  # (N, 3), NaN rows without depth
    in_places: bool = True  # added to place recognition (it had descriptors)


@dataclass
class KeyframeStore:
    """Keyframes by node index."""

    keyframes: list[StoredKeyframe] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keyframes)

    def __getitem__(self, node: int) -> StoredKeyframe:
        return self.keyframes[node]

    def append(self, keyframe: StoredKeyframe) -> int:
        """Add the next node's keyframe; returns its node index."""
        self.keyframes.append(keyframe)
        return len(self.keyframes) - 1

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays (``offsets`` ``(N+1,)`` into the concatenated feature rows)."""
        kfs = self.keyframes
        counts = [len(k.keypoints_px) for k in kfs]
        width = kfs[0].descriptors.shape[1] if kfs and kfs[0].descriptors.ndim == 2 else 32
        return {
            "keyframe_id": np.array([k.keyframe_id for k in kfs], np.int64),
            "stamp_ns": np.array([k.stamp_ns for k in kfs], np.int64),
            "session": np.array([k.session for k in kfs], np.int64),
            "T_odom_cam": np.array([k.T_odom_cam for k in kfs]).reshape(-1, 4, 4),
            "K": np.array([k.K for k in kfs]).reshape(-1, 3, 3),
            "in_places": np.array([k.in_places for k in kfs], bool),
            "offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            "keypoints_px": np.concatenate([k.keypoints_px for k in kfs]).reshape(-1, 2).astype(np.float32) if kfs else np.zeros((0, 2), np.float32),
            "descriptors": np.concatenate([k.descriptors.reshape(-1, width) for k in kfs]).astype(np.uint8) if kfs else np.zeros((0, width), np.uint8),
            "points_cam": np.concatenate([k.points_cam for k in kfs]).reshape(-1, 3).astype(np.float32) if kfs else np.zeros((0, 3), np.float32),
        }

    @classmethod
    def from_arrays(cls, data: dict[str, np.ndarray]) -> KeyframeStore:
        """Inverse of :meth:`to_arrays`."""
        offsets = data["offsets"]
        keyframes = [
            StoredKeyframe(
                int(data["keyframe_id"][i]), int(data["stamp_ns"][i]), int(data["session"][i]), data["T_odom_cam"][i],
                data["K"][i], data["keypoints_px"][a:b], data["descriptors"][a:b], data["points_cam"][a:b], bool(data["in_places"][i]),
            )
            for i, (a, b) in enumerate(zip(offsets[:-1], offsets[1:]))
        ]
        return cls(keyframes)


@dataclass
class SavedMap:
    """A map as loaded: the pose graph (poses ``T_map_cam``), the keyframes, the vocabulary."""

    graph: PoseGraph
    store: KeyframeStore
    vocabulary: BinaryVocabulary | None


def save_map(directory: str | Path, graph: PoseGraph, store: KeyframeStore, vocabulary: BinaryVocabulary | None) -> Path:
    """Write the map into ``directory`` atomically (see the module docstring); returns the manifest."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    names = {"graph": f"graph-{token}.g2o", "keyframes": f"keyframes-{token}.npz"}
    arrays = store.to_arrays()
    if vocabulary is not None:
        arrays.update(vocabulary_top=vocabulary.top, vocabulary_leaves=vocabulary.leaves, vocabulary_offsets=vocabulary.offsets)
    _write_atomically(directory / names["graph"], lambda path: write_g2o(path, graph))
    _write_atomically(directory / names["keyframes"], lambda path: _write_npz(path, arrays))
    manifest = {"format": "mp_slam_ros map", "version": _FORMAT_VERSION, **names, "nodes": graph.num_nodes}
    _write_atomically(directory / MANIFEST, lambda path: path.write_text(json.dumps(manifest, indent=1)))
    for old in list(directory.glob("graph-*.g2o")) + list(directory.glob("keyframes-*.npz")):
        if old.name not in names.values():
            old.unlink(missing_ok=True)
    return directory / MANIFEST


def load_map(directory: str | Path) -> SavedMap:
    """Read a map saved by :func:`save_map`; FileFormatError naming the file otherwise."""
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except OSError as error:
        raise FileFormatError(path, None, f"cannot read the map manifest: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise FileFormatError(path, error.lineno, f"invalid JSON: {error.msg}") from None
    if not isinstance(manifest, dict) or manifest.get("version") != _FORMAT_VERSION or "graph" not in manifest or "keyframes" not in manifest:
        raise FileFormatError(path, None, f"not a version-{_FORMAT_VERSION} map manifest")
    graph = read_g2o(Path(directory) / manifest["graph"])
    keyframes_path = Path(directory) / manifest["keyframes"]
    try:
        with np.load(keyframes_path) as npz:
            data = {key: npz[key] for key in npz.files}
        store = KeyframeStore.from_arrays(data)
    except (OSError, KeyError, ValueError) as error:
        raise FileFormatError(keyframes_path, None, f"not a keyframe store: {error}") from None
    if len(store) != graph.num_nodes:
        raise FileFormatError(keyframes_path, None, f"{len(store)} keyframes for {graph.num_nodes} graph nodes")
    vocabulary = None
    if "vocabulary_top" in data:
        vocabulary = BinaryVocabulary(data["vocabulary_top"], data["vocabulary_leaves"], data["vocabulary_offsets"])
    return SavedMap(graph, store, vocabulary)


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _write_atomically(path: Path, write: object) -> None:
    """``write(temporary)`` then fsync and rename onto ``path``."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        write(temporary)  # type: ignore[operator]
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
