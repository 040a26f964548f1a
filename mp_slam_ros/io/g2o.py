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

and the older TORO tags of the classic public data sets (Olson's ``w10000``/``w20000``, iSAM's
``sphere2500``): ``VERTEX2``/``EDGE2`` as ``VERTEX_SE2``/``EDGE_SE2`` but for the order of the
information values (below), ``VERTEX3 id x y z roll pitch yaw`` and ``EDGE3 i j x y z roll pitch
yaw I11 .. I66`` (rotation ``Rz(yaw) Ry(pitch) Rx(roll)``; information over ``x y z roll pitch
yaw``, taken as translation then rotation vector). The information values are read as TORO
specifies them; iSAM's files (``sphere2500``) hold square roots of the information instead (their
noise: sigma 0.1 m and 0.01/0.01/0.04 rad against values 10 and 100/100/25), which no file says:
read as written, their rotations weigh 10x less against their translations than generated.

What peers (GTSAM's ``readG2o``, g2o) accept is accepted, and said in the
:class:`G2oReadReport` that comes with the graph (:func:`read_g2o_with_report`):

* **No vertex lines** (the common form of the public 2-D data sets): the nodes are the ids the
  edges name, in increasing order (so the lowest id is the anchor unless a ``FIX`` line names
  another), with initial poses composed from the edges along a breadth-first spanning tree
  (:func:`~mp_slam_ros.backend.initialization.odometry_initialization`; the anchor is the
  identity). A file that has vertex lines must have one for every id its edges name: an edge to a
  missing vertex stays an error there (as in GTSAM).
* **Information matrices that are not positive definite**, or whose smallest eigenvalue is below
  :data:`~mp_slam_ros.backend.pose_graph.INFORMATION_RELATIVE_FLOOR` (1e-9) times their largest,
  are replaced by the nearest matrix whose eigenvalues are at least that floor
  (:func:`~mp_slam_ros.backend.pose_graph.repair_information`); each repaired edge is reported.
  A matrix without a positive eigenvalue cannot be repaired and is an error. Nothing else is
  changed: the upper triangle read is the matrix (symmetric by construction).
* **The information order of EDGE2 lines**, which the public files do not agree on: TORO's
  ``I11 I12 I22 I33 I13 I23`` (``w10000``; GTSAM's ``readG2o`` rejects it) or g2o's ``I11 I12 I13
  I22 I23 I33`` (``w20000``). A file's ``EDGE2`` lines are read in the order under which more of
  their matrices are positive definite (TORO's on a tie), reported as ``edge2_information_order``.
* **Other elements** (landmarks ``VERTEX_XY``/``EDGE_SE2_XY``, ``PARAMS_SE3OFFSET``, ...) are
  skipped and counted per tag, if the tag has the shape of a g2o tag (upper-case letters, digits,
  ``_`` and ``:``); a line starting with anything else is an error.

``strict=True`` turns the last two into errors (the information check then rejects exactly the
matrices that are not positive definite). Errors raise
:class:`~mp_slam_ros.errors.FileFormatError` naming the file, the 1-based line and the problem
(field and value): a wrong number of fields, non-numeric or non-finite values, ids that are not
integers in ``0 .. 2**63-1``, a zero or far-from-unit quaternion (norm off by more than 1e-3;
nearly unit ones are normalized), duplicate vertex ids, edges or FIX lines naming unknown nodes,
self-edges, a file mixing 2-D and 3-D elements, a file without any vertex or edge. Nothing
half-parsed is ever returned. Edges may come before their vertices. A *disconnected* graph is
read without error (it is a valid file; without vertex lines each component's lowest id is its
tree root); optimizing it raises :class:`~mp_slam_ros.errors.ProblemError`.

:func:`write_g2o` keeps ids, information and FIX lines and writes every float with a round-trip
exact representation; its output loads in GTSAM's ``readG2o`` and in g2o.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mp_slam_ros.backend.initialization import odometry_initialization
from mp_slam_ros.backend.pose_graph import INFORMATION_RELATIVE_FLOOR, PoseGraph, repair_information
from mp_slam_ros.errors import FileFormatError, ProblemError
from mp_slam_ros.geometry import lie
from mp_slam_ros.io.text import parse_finite_float, read_text_lines

#: Largest accepted deviation of a quaternion's norm from 1 (nearly unit ones are normalized).
QUATERNION_NORM_TOLERANCE = 1e-3
#: Largest node id (ids are stored as int64).
MAX_ID = 2**63 - 1
#: What a g2o tag looks like (elements with other such tags are skipped unless strict).
_TAG_SHAPE = re.compile(r"[A-Z][A-Z0-9_:]*")

_SE3_POSE_FIELDS = ("x", "y", "z", "qx", "qy", "qz", "qw")
_SE3_RPY_FIELDS = ("x", "y", "z", "roll", "pitch", "yaw")
_SE2_POSE_FIELDS = ("x", "y", "theta")
#: TORO's order of a 2-D information matrix's entries (EDGE2 lines, see the module docstring).
_TORO_2D_INFORMATION = ("I11", "I12", "I22", "I33", "I13", "I23")
#: Where each g2o-order entry (I11 I12 I13 I22 I23 I33) is in a TORO-order line.
_TORO_TO_G2O_2D = [0, 1, 4, 2, 5, 3]
EDGE2_ORDERS = ("TORO (I11 I12 I22 I33 I13 I23)", "g2o (I11 I12 I13 I22 I23 I33)")


def _information_fields(k: int) -> tuple[str, ...]:
    return tuple(f"I{i + 1}{j + 1}" for i in range(k) for j in range(i, k))


#: tag -> (dimension, is_edge, names of the numeric fields after the ids)
_TAGS: dict[str, tuple[int, bool, tuple[str, ...]]] = {
    "VERTEX_SE3:QUAT": (3, False, _SE3_POSE_FIELDS),
    "EDGE_SE3:QUAT": (3, True, _SE3_POSE_FIELDS + _information_fields(6)),
    "VERTEX_SE2": (2, False, _SE2_POSE_FIELDS),
    "EDGE_SE2": (2, True, _SE2_POSE_FIELDS + _information_fields(3)),
    "VERTEX2": (2, False, _SE2_POSE_FIELDS),
    "EDGE2": (2, True, _SE2_POSE_FIELDS + _TORO_2D_INFORMATION),
    "VERTEX3": (3, False, _SE3_RPY_FIELDS),
    "EDGE3": (3, True, _SE3_RPY_FIELDS + _information_fields(6)),
}
_VERTEX_TAG = {3: "VERTEX_SE3:QUAT", 2: "VERTEX_SE2"}
_EDGE_TAG = {3: "EDGE_SE3:QUAT", 2: "EDGE_SE2"}


@dataclass(frozen=True)
class RepairedEdge:
    """One edge whose information was repaired: its line, node ids, and the smallest and largest
    eigenvalues of the information as read."""

    line: int
    from_id: int
    to_id: int
    smallest_eigenvalue: float
    largest_eigenvalue: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return {"line": self.line, "from_id": self.from_id, "to_id": self.to_id,
                "smallest_eigenvalue": self.smallest_eigenvalue, "largest_eigenvalue": self.largest_eigenvalue}


@dataclass(frozen=True)
class G2oReadReport:
    """What the reader accepted beyond the letter of the format (see the module docstring).

    ``has_vertices``: False when the file had no vertex lines (poses from odometry);
    ``repaired_edges``: edges whose information was repaired (file order); ``skipped``: tag ->
    number of skipped lines; ``relative_floor``: the eigenvalue floor used for repairs;
    ``edge2_information_order``: how ``EDGE2`` lines were read (one of :data:`EDGE2_ORDERS`;
    None without them).
    """

    has_vertices: bool
    repaired_edges: tuple[RepairedEdge, ...] = ()
    skipped: dict[str, int] = field(default_factory=dict)
    relative_floor: float = INFORMATION_RELATIVE_FLOOR
    edge2_information_order: str | None = None

    @property
    def worst_repair(self) -> RepairedEdge | None:
        """The repaired edge with the smallest ratio of smallest to largest eigenvalue."""
        if not self.repaired_edges:
            return None
        return min(self.repaired_edges, key=lambda edge: edge.smallest_eigenvalue / edge.largest_eigenvalue)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``vertices_in_file``, ``information_repairs`` {count, relative_floor,
        worst}, ``skipped_elements`` {tag: count}."""
        worst = self.worst_repair
        return {
            "vertices_in_file": self.has_vertices,
            "information_repairs": {
                "count": len(self.repaired_edges), "relative_floor": self.relative_floor,
                "worst": None if worst is None else worst.to_dict(),
            },
            "skipped_elements": dict(self.skipped),
            "edge2_information_order": self.edge2_information_order,
        }


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
    skipped: dict[str, int] = field(default_factory=dict)  # tag -> count
    edge2: list[int] = field(default_factory=list)  # indices of EDGE2 edges (information order open)


def read_g2o(path: str | Path, strict: bool = False) -> PoseGraph:
    """Read a g2o file into a validated :class:`PoseGraph` (see the module docstring)."""
    return read_g2o_with_report(path, strict)[0]


def read_g2o_with_report(path: str | Path, strict: bool = False) -> tuple[PoseGraph, G2oReadReport]:
    """Read a g2o file: the validated graph and what was repaired or skipped on the way."""
    return parse_g2o(read_text_lines(path, encoding="utf-8-sig"), source=str(path), strict=strict)


def parse_g2o(
    lines: Iterable[str], source: str = "<g2o>", strict: bool = False
) -> tuple[PoseGraph, G2oReadReport]:
    """Parse g2o ``lines``; errors name ``source`` as the file (see the module docstring)."""
    parsed = _Parsed()
    for number, line in enumerate(lines, start=1):
        tokens = line.split("#", 1)[0].split()
        if tokens:
            _parse_line(parsed, tokens, source, number, strict)
    return _build_graph(parsed, source, strict)


def _parse_line(parsed: _Parsed, tokens: list[str], source: str, number: int, strict: bool) -> None:
    tag = tokens[0]
    if tag == "FIX":
        if len(tokens) < 2:
            raise FileFormatError(source, number, "FIX needs at least one vertex id")
        parsed.fixed.extend((_parse_id(token, "id", source, number), number) for token in tokens[1:])
        return
    if tag not in _TAGS:
        if strict or not _TAG_SHAPE.fullmatch(tag):
            raise FileFormatError(source, number, f"unsupported element {tag[:40]!r}")
        parsed.skipped[tag] = parsed.skipped.get(tag, 0) + 1
        return
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
    if tag in ("VERTEX3", "EDGE3"):
        values = [*values[:3], *_quaternion_from_rpy(*values[3:6]), *values[6:]]
    elif dim == 3:
        _check_quaternion(values, source, number)
    if is_edge:
        if tag == "EDGE2":
            parsed.edge2.append(len(parsed.edge_ids))
        parsed.edge_ids.append((ids[0], ids[1]))
        parsed.edge_values.append(values)
        parsed.edge_lines.append(number)
    else:
        parsed.vertex_ids.append(ids[0])
        parsed.vertex_values.append(values)
        parsed.vertex_lines.append(number)


def _parse_id(token: str, name: str, source: str, number: int) -> int:
    if token.isascii() and token.isdigit() and len(token) <= 19 and int(token) <= MAX_ID:
        return int(token)
    shown = token if len(token) <= 40 else token[:40] + "..."
    if token.isascii() and token.lstrip("+-").isdigit():
        raise FileFormatError(source, number, f"field {name}={shown!r} is out of range (ids are 0 .. 2**63-1)")
    raise FileFormatError(source, number, f"field {name}={shown!r} is not an integer id")


def _quaternion_from_rpy(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """``(qx, qy, qz, qw)`` of ``Rz(yaw) Ry(pitch) Rx(roll)``."""
    cr, sr = math.cos(0.5 * roll), math.sin(0.5 * roll)
    cp, sp = math.cos(0.5 * pitch), math.sin(0.5 * pitch)
    cy, sy = math.cos(0.5 * yaw), math.sin(0.5 * yaw)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy, cr * cp * cy + sr * sp * sy)


def _check_quaternion(values: list[float], source: str, number: int) -> None:
    with np.errstate(over="ignore"):
        norm = float(np.linalg.norm(values[3:7]))
    if not abs(norm - 1.0) <= QUATERNION_NORM_TOLERANCE:
        raise FileFormatError(
            source, number, f"quaternion (qx qy qz qw) has norm {norm:.6g}, expected 1"
        )


def _build_graph(parsed: _Parsed, source: str, strict: bool) -> tuple[PoseGraph, G2oReadReport]:
    if parsed.dim is None:
        skipped = ", ".join(f"{tag} x {count}" for tag, count in sorted(parsed.skipped.items()))
        raise FileFormatError(
            source, None, "no vertices or edges (VERTEX_SE3:QUAT, EDGE_SE3:QUAT, VERTEX_SE2, EDGE_SE2, "
            "or TORO's VERTEX2, EDGE2, VERTEX3, EDGE3) found"
            + (f"; skipped {skipped}" if skipped else ""),
        )
    has_vertices = bool(parsed.vertex_ids)
    edge_ids = np.asarray(parsed.edge_ids, dtype=np.int64).reshape(-1, 2)
    node_ids = np.asarray(parsed.vertex_ids, dtype=np.int64) if has_vertices else np.unique(edge_ids)
    _check_ids(parsed, node_ids, has_vertices, source)
    k = 6 if parsed.dim == 3 else 3
    num_fields = len(_TAGS[_EDGE_TAG[parsed.dim]][2])
    edge_values = np.asarray(parsed.edge_values, dtype=np.float64).reshape(-1, num_fields)
    edge2_order = _read_edge2_information(edge_values, parsed.edge2)
    information = _information_from_upper(edge_values[:, -(k * (k + 1) // 2) :], k)
    information, repaired = _checked_information(information, parsed, source, strict)
    if has_vertices:
        T_world_node = _poses_from_values(np.asarray(parsed.vertex_values, dtype=np.float64), parsed.dim)
    else:
        T_world_node = np.tile(np.eye(parsed.dim + 1), (node_ids.size, 1, 1))
    graph = PoseGraph(
        node_ids=node_ids,
        T_world_node=T_world_node,
        edge_from=edge_ids[:, 0],
        edge_to=edge_ids[:, 1],
        T_from_to=_poses_from_values(edge_values[:, : 7 if parsed.dim == 3 else 3], parsed.dim),
        information=information,
        fixed_ids=np.asarray([vertex for vertex, _ in parsed.fixed], dtype=np.int64),
    )
    try:
        if not has_vertices:
            graph = graph.with_poses(odometry_initialization(graph))
        graph.validate(require_connected=False)
    except ProblemError as error:  # e.g. poses that overflow when composed; per-line problems are caught above
        raise FileFormatError(source, None, str(error)) from None
    return graph, G2oReadReport(has_vertices, repaired, dict(parsed.skipped), edge2_information_order=edge2_order)


def _read_edge2_information(edge_values: np.ndarray, edge2: list[int]) -> str | None:
    """Put the information of the ``edge2`` rows of ``edge_values`` (last 6 columns) in g2o order,
    choosing the order that makes more of them positive definite (module docstring); the order
    used, or None without EDGE2 lines."""
    if not edge2:
        return None
    as_read = edge_values[edge2, -6:]
    toro = as_read[:, _TORO_TO_G2O_2D]
    definite = [int(np.sum(np.linalg.eigvalsh(_information_from_upper(upper, 3))[:, 0] > 0.0)) for upper in (toro, as_read)]
    if definite[1] > definite[0]:
        return EDGE2_ORDERS[1]
    edge_values[edge2, -6:] = toro
    return EDGE2_ORDERS[0]


def _check_ids(parsed: _Parsed, node_ids: np.ndarray, has_vertices: bool, source: str) -> None:
    if has_vertices:
        _check_unique(node_ids, parsed.vertex_lines, source)
    known = set(node_ids.tolist())
    for (i, j), number in zip(parsed.edge_ids, parsed.edge_lines):
        for name, vertex in (("from_id", i), ("to_id", j)):
            if vertex not in known:
                raise FileFormatError(source, number, f"field {name}: unknown vertex id {vertex}")
        if i == j:
            raise FileFormatError(source, number, f"edge connects vertex {i} to itself")
    for vertex, number in parsed.fixed:
        if vertex not in known:
            what = "vertex" if has_vertices else "node (no edge names it)"
            raise FileFormatError(source, number, f"FIX names unknown {what} id {vertex}")


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


def _checked_information(
    information: np.ndarray, parsed: _Parsed, source: str, strict: bool
) -> tuple[np.ndarray, tuple[RepairedEdge, ...]]:
    """The information to use and the edges repaired; raise for what may not be repaired."""
    repair = repair_information(information)
    lines = parsed.edge_lines
    bad = np.flatnonzero(~(repair.smallest_eigenvalue > 0.0) if strict else repair.unrepairable)
    if bad.size:
        first = int(bad[0])
        smallest, largest = repair.smallest_eigenvalue[first], repair.largest_eigenvalue[first]
        problem = "is not positive definite" if strict else "has no positive eigenvalue and cannot be repaired"
        raise FileFormatError(
            source, lines[first],
            f"information matrix {problem} (smallest eigenvalue {smallest:.3g}, largest {largest:.3g})",
        )
    if strict:
        return information, ()
    repaired = tuple(
        RepairedEdge(lines[e], parsed.edge_ids[e][0], parsed.edge_ids[e][1],
                     float(repair.smallest_eigenvalue[e]), float(repair.largest_eigenvalue[e]))
        for e in np.flatnonzero(repair.repaired).tolist()
    )
    return repair.information, repaired


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
