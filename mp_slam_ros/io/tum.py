"""TUM RGB-D trajectory files: one pose per line, ``timestamp tx ty tz qx qy qz qw``.

Timestamps are seconds; the quaternion is scalar-last (as evo and the TUM tools expect). Lines
starting with ``#`` and blank lines are ignored. Errors name the file, the line and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from mp_slam_ros.errors import FileFormatError
from mp_slam_ros.io.text import parse_finite_float, read_text_lines

FIELDS = ("timestamp", "tx", "ty", "tz", "qx", "qy", "qz", "qw")


@dataclass(frozen=True)
class TumTrajectory:
    """Stamped poses: ``timestamps_s (N,)``, ``positions_m (N, 3)``, ``quats_xyzw (N, 4)`` (unit)."""

    timestamps_s: NDArray[np.float64]
    positions_m: NDArray[np.float64]
    quats_xyzw: NDArray[np.float64]

    def __len__(self) -> int:
        return int(self.timestamps_s.size)

    @staticmethod
    def from_matrices(timestamps_s: NDArray[np.float64], T_world_body: NDArray[np.float64]) -> TumTrajectory:
        """Build from poses ``(N, 4, 4)``."""
        return TumTrajectory(
            np.asarray(timestamps_s, np.float64),
            np.asarray(T_world_body[:, :3, 3], np.float64),
            Rotation.from_matrix(T_world_body[:, :3, :3]).as_quat(),
        )

    def matrices(self) -> NDArray[np.float64]:
        """Poses ``(N, 4, 4)``."""
        T = np.tile(np.eye(4), (len(self), 1, 1))
        T[:, :3, :3] = Rotation.from_quat(self.quats_xyzw).as_matrix()
        T[:, :3, 3] = self.positions_m
        return T


def write_tum(path: str | Path, trajectory: TumTrajectory, comment: str | None = None) -> None:
    """Write a TUM file (timestamps with 9 decimals, positions and quaternions with 9)."""
    rows = np.column_stack([trajectory.timestamps_s, trajectory.positions_m, trajectory.quats_xyzw])
    header = f"{comment}\n" if comment else ""
    header += " ".join(FIELDS)
    np.savetxt(path, rows, fmt="%.9f", header=header, comments="# ")


def read_tum(path: str | Path) -> TumTrajectory:
    """Parse a TUM file; raise :class:`FileFormatError` on a bad line, field or ordering."""
    path = Path(path)
    lines = read_text_lines(path)
    rows: list[list[float]] = []
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        tokens = stripped.replace(",", " ").split()
        if len(tokens) != len(FIELDS):
            raise FileFormatError(path, number, f"expected {len(FIELDS)} fields ({' '.join(FIELDS)}), got {len(tokens)}")
        values = []
        for field, token in zip(FIELDS, tokens):
            values.append(parse_finite_float(token, field, path, number))
        norm = float(np.linalg.norm(values[4:]))
        if abs(norm - 1.0) > 1e-3:
            raise FileFormatError(path, number, f"quaternion (qx qy qz qw) has norm {norm:.6f}, expected 1")
        if rows and values[0] <= rows[-1][0]:
            raise FileFormatError(path, number, f"field timestamp={tokens[0]} is not after the previous one ({rows[-1][0]:.9f})")
        rows.append(values)
    if not rows:
        raise FileFormatError(path, None, "no poses")
    data = np.asarray(rows)
    quats = data[:, 4:] / np.linalg.norm(data[:, 4:], axis=1, keepdims=True)
    return TumTrajectory(data[:, 0], data[:, 1:4], quats)


def trajectory_of_nodes(node_ids: NDArray[np.int64], T_world_node: NDArray[np.float64]) -> TumTrajectory:
    """Pose-graph node poses as a TUM trajectory, with the node id as timestamp (seconds).

    SE(2) poses ``(N, 3, 3)`` are lifted to SE(3) in the plane ``z = 0``; SE(3) poses are used as
    they are. This lets ``mp-slam eval`` (and evo) compare graphs node by node.
    """
    T_world_node = np.asarray(T_world_node, np.float64)
    if T_world_node.shape[-1] == 3:
        lifted = np.tile(np.eye(4), (T_world_node.shape[0], 1, 1))
        lifted[:, :2, :2] = T_world_node[:, :2, :2]
        lifted[:, :2, 3] = T_world_node[:, :2, 2]
        T_world_node = lifted
    return TumTrajectory.from_matrices(np.asarray(node_ids, np.float64), T_world_node)
