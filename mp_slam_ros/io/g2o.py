"""Read and write pose graphs in the g2o text format (SE(3) and SE(2)).

Supported lines (one element per line, whitespace separated, ``#`` starts a comment):

===============  ==========================================================================
``VERTEX_SE3:QUAT id x y z qx qy qz qw``            a 3-D node pose ``T_world_node``
``EDGE_SE3:QUAT i j x y z qx qy qz qw I11 .. I66``  measured ``T_i_j`` and the upper triangle
                                                     (row-major, 21 values) of its 6x6
                                                     information, translation then rotation
``VERTEX_SE2 id x y theta``                          a 2-D node pose
``EDGE_SE2 i j x y theta I11 I12 I13 I22 I23 I33``   measured ``T_i_j`` and its 3x3 information
``FIX id [id ...]``                                   nodes held fixed (the first is the anchor)
===============  ==========================================================================

:func:`read_g2o` either returns a complete, validated :class:`PoseGraph` or raises
:class:`~mp_slam_ros.errors.FileFormatError` naming the file, the 1-based line and the problem
(field and value): unsupported tags, a wrong number of fields, non-numeric or non-finite values,
a zero or far-from-unit quaternion (norm off by more than 1e-3; nearly unit ones are
normalized), information that is not positive definite, duplicate vertex ids, edges or FIX lines
naming unknown vertices, a file mixing 2-D and 3-D elements, a file without vertices. Nothing
half-parsed is ever returned. Edges may come before their vertices. A *disconnected* graph is
read without error (it is a valid file); optimizing it raises
:class:`~mp_slam_ros.errors.ProblemError`.

:func:`write_g2o` keeps ids, information and FIX lines and writes every float with a round-trip
exact representation; its output loads in GTSAM's ``readG2o`` and in g2o.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.errors import FileFormatError, ProblemError
from mp_slam_ros.geometry import lie
from mp_slam_ros.io.text import parse_finite_float, read_text_lines

#: Largest accepted deviation of a quaternion's norm from 1 (nearly unit ones are normalized).
QUATERNION_NORM_TOLERANCE = 1e-3

_SE3_POSE_FIELDS = ("x", "y", "z", "qx", "qy", "qz", "qw")
_SE2_POSE_FIELDS = ("x", "y", "theta")


def _information_fields(k: int) -> tuple[str, ...]:
    return tuple(f"I{i + 1}{j + 1}" for i in range(k) for j in range(i, k))


#: tag -> (dimension, is_edge, names of the numeric fields after the ids)
_TAGS: dict[str, tuple[int, bool, tuple[str, ...]]] = {
    "VERTEX_SE3:QUAT": (3, False, _SE3_POSE_FIELDS),
    "EDGE_SE3:QUAT": (3, True, _SE3_POSE_FIELDS + _information_fields(6)),
    "VERTEX_SE2": (2, False, _SE2_POSE_FIELDS),
    "EDGE_SE2": (2, True, _SE2_POSE_FIELDS + _information_fields(3)),
}
_VERTEX_TAG = {3: "VERTEX_SE3:QUAT", 2: "VERTEX_SE2"}
_EDGE_TAG = {3: "EDGE_SE3:QUAT", 2: "EDGE_SE2"}


@dataclass
class _Parsed:
    """Everything read so far, with the line each element came from (internal)."""

    dim: int | None = None
    dim_line: int = 0
    vertex_ids: list[int] = field(default_factory=list)
    vertex_values: list[list[float]] = field(default_factory=list)
    vertex_lines: list[int] = field(default_factory=list)
    edge_ids: list[tuple[int, int]] = field(default_factory=list)
    edge_values: list[list[float]] = field(default_factory=list)
    edge_lines: list[int] = field(default_factory=list)
    fixed: list[tuple[int, int]] = field(default_factory=list)  # (id, line)


def read_g2o(path: str | Path) -> PoseGraph:
    """Read a g2o file into a validated :class:`PoseGraph` (see the module docstring)."""
    return parse_g2o(read_text_lines(path), source=str(path))


def parse_g2o(lines: Iterable[str], source: str = "<g2o>") -> PoseGraph:
    """Parse g2o ``lines``; errors name ``source`` as the file (see the module docstring)."""
    parsed = _Parsed()
    for number, line in enumerate(lines, start=1):
        tokens = line.split("#", 1)[0].split()
        if tokens:
            _parse_line(parsed, tokens, source, number)
    return _build_graph(parsed, source)


def _parse_line(parsed: _Parsed, tokens: list[str], source: str, number: int) -> None:
    tag = tokens[0]
    if tag == "FIX":
        if len(tokens) < 2:
            raise FileFormatError(source, number, "FIX needs at least one vertex id")
        parsed.fixed.extend((_parse_id(token, "id", source, number), number) for token in tokens[1:])
        return
    if tag not in _TAGS:
        raise FileFormatError(source, number, f"unsupported element {tag!r}")
    dim, is_edge, names = _TAGS[tag]
    if parsed.dim is None:
        parsed.dim, parsed.dim_line = dim, number
    elif parsed.dim != dim:
        raise FileFormatError(
            source, number, f"{tag} in a {parsed.dim}-D file (line {parsed.dim_line} is {parsed.dim}-D)"
        )
    id_names = ("from_id", "to_id") if is_edge else ("id",)
    expected = len(id_names) + len(names)
    if len(tokens) - 1 != expected:
        raise FileFormatError(source, number, f"{tag} needs {expected} fields, got {len(tokens) - 1}")
    ids = [_parse_id(token, name, source, number) for token, name in zip(tokens[1:], id_names)]
    values = [
        parse_finite_float(token, name, source, number)
        for token, name in zip(tokens[1 + len(id_names) :], names)
    ]
    if dim == 3:
        _check_quaternion(values, source, number)
    if is_edge:
        parsed.edge_ids.append((ids[0], ids[1]))
        parsed.edge_values.append(values)
        parsed.edge_lines.append(number)
    else:
        parsed.vertex_ids.append(ids[0])
        parsed.vertex_values.append(values)
        parsed.vertex_lines.append(number)


def _parse_id(token: str, name: str, source: str, number: int) -> int:
    try:
        return int(token)
    except ValueError:
        raise FileFormatError(source, number, f"field {name}={token!r} is not an integer id") from None


def _check_quaternion(values: list[float], source: str, number: int) -> None:
    norm = float(np.linalg.norm(values[3:7]))
    if abs(norm - 1.0) > QUATERNION_NORM_TOLERANCE:
        raise FileFormatError(
            source, number, f"quaternion (qx qy qz qw) has norm {norm:.6g}, expected 1"
        )


def _build_graph(parsed: _Parsed, source: str) -> PoseGraph:
    if parsed.dim is None or not parsed.vertex_ids:
        raise FileFormatError(source, None, "no vertices (VERTEX_SE3:QUAT or VERTEX_SE2) found")
    node_ids = np.asarray(parsed.vertex_ids, dtype=np.int64)
    _check_unique(node_ids, parsed.vertex_lines, source)
    known = set(parsed.vertex_ids)
    for (i, j), number in zip(parsed.edge_ids, parsed.edge_lines):
        for name, vertex in (("from_id", i), ("to_id", j)):
            if vertex not in known:
                raise FileFormatError(source, number, f"field {name}: unknown vertex id {vertex}")
        if i == j:
            raise FileFormatError(source, number, f"edge connects vertex {i} to itself")
    for vertex, number in parsed.fixed:
        if vertex not in known:
            raise FileFormatError(source, number, f"FIX names unknown vertex id {vertex}")
    k = 6 if parsed.dim == 3 else 3
    vertex_values = np.asarray(parsed.vertex_values, dtype=np.float64)
    num_fields = len(_TAGS[_EDGE_TAG[parsed.dim]][2])
    edge_values = np.asarray(parsed.edge_values, dtype=np.float64).reshape(-1, num_fields)
    information = _information_from_upper(edge_values[:, -(k * (k + 1) // 2) :], k)
    _check_information(information, parsed.edge_lines, source)
    edge_ids = np.asarray(parsed.edge_ids, dtype=np.int64).reshape(-1, 2)
    graph = PoseGraph(
        node_ids=node_ids,
        T_world_node=_poses_from_values(vertex_values, parsed.dim),
        edge_from=edge_ids[:, 0],
        edge_to=edge_ids[:, 1],
        T_from_to=_poses_from_values(edge_values[:, : 7 if parsed.dim == 3 else 3], parsed.dim),
        information=information,
        fixed_ids=np.asarray([vertex for vertex, _ in parsed.fixed], dtype=np.int64),
    )
    try:
        graph.validate(require_connected=False)
    except ProblemError as error:  # defensive: every per-line problem is caught above
        raise FileFormatError(source, None, str(error)) from None
    return graph


def _check_unique(node_ids: np.ndarray, lines: list[int], source: str) -> None:
    if np.unique(node_ids).size == node_ids.size:
        return
    seen: set[int] = set()
    for vertex, number in zip(node_ids.tolist(), lines):
        if vertex in seen:
            raise FileFormatError(source, number, f"duplicate vertex id {vertex}")
        seen.add(vertex)


def _information_from_upper(upper: np.ndarray, k: int) -> np.ndarray:
    rows, cols = np.triu_indices(k)
    information = np.zeros((upper.shape[0], k, k))
    information[:, rows, cols] = upper
    information[:, cols, rows] = upper
    return information


def _check_information(information: np.ndarray, lines: list[int], source: str) -> None:
    if information.shape[0] == 0:
        return
    smallest = np.linalg.eigvalsh(information)[:, 0]
    bad = np.flatnonzero(~(smallest > 0.0))
    if bad.size:
        raise FileFormatError(
            source,
            lines[int(bad[0])],
            f"information matrix is not positive definite (smallest eigenvalue {smallest[bad[0]]:.3g})",
        )


def _poses_from_values(values: np.ndarray, dim: int) -> np.ndarray:
    if dim == 3:
        quat_xyzw = values[:, 3:7] / np.linalg.norm(values[:, 3:7], axis=1, keepdims=True)
        return lie.se3_from_translation_quat(values[:, :3], quat_xyzw)
    return lie.se2_from_xytheta(values[:, :3])


def write_g2o(path: str | Path, graph: PoseGraph) -> None:
    """Write ``graph`` as a g2o file (ids, information and FIX lines kept; exact floats)."""
    Path(path).write_text("".join(format_g2o(graph)), encoding="utf-8")


def format_g2o(graph: PoseGraph) -> list[str]:
    """The lines (with newlines) of the g2o file of ``graph``."""
    dim = graph.dim
    vertex_values = _values_from_poses(graph.T_world_node, dim)
    edge_values = _values_from_poses(graph.T_from_to, dim)
    k = graph.tangent_dim
    rows, cols = np.triu_indices(k)
    upper = graph.information[:, rows, cols]
    lines = [
        f"{_VERTEX_TAG[dim]} {vertex} {_floats(values)}\n"
        for vertex, values in zip(graph.node_ids.tolist(), vertex_values.tolist())
    ]
    lines += [
        f"{_EDGE_TAG[dim]} {i} {j} {_floats(values)} {_floats(info)}\n"
        for i, j, values, info in zip(
            graph.edge_from.tolist(), graph.edge_to.tolist(), edge_values.tolist(), upper.tolist()
        )
    ]
    lines += [f"FIX {vertex}\n" for vertex in graph.fixed_ids.tolist()]
    return lines


def _values_from_poses(T: np.ndarray, dim: int) -> np.ndarray:
    if T.shape[0] == 0:
        return np.zeros((0, 7 if dim == 3 else 3))
    if dim == 3:
        t_xyz, quat_xyzw = lie.se3_to_translation_quat(T)
        return np.concatenate([t_xyz, quat_xyzw], axis=1)
    return lie.se2_to_xytheta(T)


def _floats(values: list[float]) -> str:
    return " ".join(map(repr, values))
