"""The ROS-free pose-graph container: nodes with poses, relative-pose edges with information.

A :class:`PoseGraph` holds ``N`` nodes (integer ids, poses ``T_world_node``) and ``E`` edges,
each a measured relative pose ``T_from_to`` between two nodes with an information matrix (the
inverse covariance of the measurement, tangent order ``[translation, rotation]`` as in g2o).
Graphs are 3-D (SE(3): poses ``(N, 4, 4)``, information ``(E, 6, 6)``) or 2-D (SE(2): poses
``(N, 3, 3)``, information ``(E, 3, 3)``).

:meth:`PoseGraph.validate` is the single place that decides what an acceptable graph is; it
raises :class:`~mp_slam_ros.errors.ProblemError` naming the offending node or edge for:

* inconsistent array shapes, an empty graph;
* duplicate node ids; edges that name an unknown node id; self-edges (``from == to``);
  fixed ids that are not nodes;
* non-finite values (NaN, inf) in poses, measurements or information;
* rotations that are not orthonormal with determinant +1 (tolerance 1e-6);
* information matrices that are not symmetric (relative tolerance 1e-9) or not positive
  definite;
* a disconnected graph (``require_connected=True``, the default): a pose-graph optimization
  with one anchor cannot fix the gauge of a second component.

Documented behaviour that is *not* an error: several edges between the same pair of nodes (each
is one measurement), nodes without any edge in a one-node graph, loop closures between any two
nodes, node ids in any order (the node order is kept; it is the elimination order the
incomplete-Cholesky preconditioner uses, so odometry order works best).

:func:`repair_information` turns indefinite, singular or numerically singular information
matrices into the nearest positive-definite ones (eigenvalue clipping); readers use it when a file
carries such matrices (the validator itself never changes a graph).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from mp_slam_ros.errors import ProblemError
from mp_slam_ros.geometry import lie

#: Tolerance on ``R^T R - I`` and on the homogeneous last row of a pose.
_ROTATION_TOLERANCE = 1e-6
#: Relative tolerance on the asymmetry of an information matrix.
_SYMMETRY_TOLERANCE = 1e-9
#: Eigenvalue floor of a repaired information matrix, relative to its largest eigenvalue: far
#: above the rounding error of the eigen-decomposition (~1e-16 relative), so the repaired matrix
#: always has a Cholesky factor, and small enough that a repaired direction carries (almost) no
#: information: the data claimed a negative or zero one there, so none is invented.
INFORMATION_RELATIVE_FLOOR = 1e-9


@dataclass
class PoseGraph:
    """Nodes ``node_ids`` ``(N,)`` int64 with poses ``T_world_node`` ``(N, d+1, d+1)`` float64
    and edges ``(edge_from, edge_to)`` ``(E,)`` int64 node ids with measurements
    ``T_from_to`` ``(E, d+1, d+1)``, information ``(E, k, k)`` (k = 6 in 3-D, 3 in 2-D) and
    ``is_loop`` ``(E,)`` bool (True: loop closure, False: odometry). ``fixed_ids``: node ids
    held constant (g2o ``FIX``); the optimizer anchors the first of them (or node 0).
    """

    node_ids: np.ndarray
    T_world_node: np.ndarray
    edge_from: np.ndarray
    edge_to: np.ndarray
    T_from_to: np.ndarray
    information: np.ndarray
    is_loop: np.ndarray = field(default=None)  # type: ignore[assignment]
    fixed_ids: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.node_ids = np.asarray(self.node_ids, dtype=np.int64).reshape(-1)
        self.T_world_node = np.asarray(self.T_world_node, dtype=np.float64)
        self.edge_from = np.asarray(self.edge_from, dtype=np.int64).reshape(-1)
        self.edge_to = np.asarray(self.edge_to, dtype=np.int64).reshape(-1)
        self.T_from_to = np.asarray(self.T_from_to, dtype=np.float64)
        self.information = np.asarray(self.information, dtype=np.float64)
        if self.is_loop is None:
            self.is_loop = np.abs(self.edge_to - self.edge_from) != 1
        self.is_loop = np.asarray(self.is_loop, dtype=bool).reshape(-1)
        fixed = () if self.fixed_ids is None else self.fixed_ids
        self.fixed_ids = np.asarray(fixed, dtype=np.int64).reshape(-1)

    # ---- sizes -------------------------------------------------------------------------------

    @property
    def dim(self) -> int:
        """2 for SE(2) graphs, 3 for SE(3) graphs (from the pose matrices)."""
        return int(self.T_world_node.shape[-1]) - 1

    @property
    def tangent_dim(self) -> int:
        """Degrees of freedom of one pose: 6 (SE(3)) or 3 (SE(2))."""
        return 6 if self.dim == 3 else 3

    @property
    def num_nodes(self) -> int:
        """Number of nodes ``N``."""
        return int(self.node_ids.size)

    @property
    def num_edges(self) -> int:
        """Number of edges ``E``."""
        return int(self.edge_from.size)

    # ---- lookups -----------------------------------------------------------------------------

    def index_of(self, ids: np.ndarray) -> np.ndarray:
        """Row indices ``(K,)`` of node ``ids``; raise :class:`ProblemError` for an unknown id."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        sorter = np.argsort(self.node_ids, kind="stable")
        position = np.searchsorted(self.node_ids, ids, sorter=sorter)
        position = np.minimum(position, max(self.num_nodes - 1, 0))
        index = sorter[position] if self.num_nodes else position
        unknown = np.flatnonzero((self.num_nodes == 0) | (self.node_ids[index] != ids))
        if unknown.size:
            raise ProblemError(f"unknown node id {int(ids[unknown[0]])}")
        return index

    def edge_indices(self) -> tuple[np.ndarray, np.ndarray]:
        """Row indices ``(E,)`` of every edge's ``from`` and ``to`` nodes."""
        return self.index_of(self.edge_from), self.index_of(self.edge_to)

    def anchor_index(self) -> int:
        """Row index of the gauge anchor: the first fixed node, else the first node."""
        if self.fixed_ids.size:
            return int(self.index_of(self.fixed_ids[:1])[0])
        return 0

    def edge_chi2(self, edges: np.ndarray | None = None) -> np.ndarray:
        """``e^T Omega e`` of each edge selected by ``edges`` (a bool mask ``(E,)``; default all) at
        the current poses, ``e = log(Z^-1 T_i^-1 T_j)`` (float64)."""
        chosen = slice(None) if edges is None else np.asarray(edges, dtype=bool)
        edge_from, edge_to = (index[chosen] for index in self.edge_indices())
        log, inverse = (lie.se3_log, lie.se3_inverse) if self.dim == 3 else (lie.se2_log, lie.se2_inverse)
        error = log(inverse(self.T_from_to[chosen]) @ inverse(self.T_world_node[edge_from]) @ self.T_world_node[edge_to])
        return np.einsum("ei,eij,ej->e", error, self.information[chosen], error)

    def with_poses(self, T_world_node: np.ndarray) -> PoseGraph:
        """A copy of this graph with new node poses (edges and ids shared, not copied)."""
        poses = np.asarray(T_world_node, dtype=np.float64)
        if poses.shape != self.T_world_node.shape:
            raise ProblemError(f"poses have shape {poses.shape}, expected {self.T_world_node.shape}")
        return replace(self, T_world_node=poses.copy())

    # ---- validation --------------------------------------------------------------------------

    def validate(self, require_connected: bool = True) -> None:
        """Raise :class:`ProblemError` for any problem listed in the module docstring."""
        self._validate_shapes()
        self._validate_ids()
        _validate_finite("pose of node", self.node_ids, self.T_world_node)
        _validate_finite("measurement of edge", None, self.T_from_to)
        _validate_finite("information of edge", None, self.information)
        _validate_rotations("pose of node", self.node_ids, self.T_world_node)
        _validate_rotations("measurement of edge", None, self.T_from_to)
        _validate_information(self.information, self.edge_from, self.edge_to)
        if require_connected:
            self._validate_connected()

    def _validate_shapes(self) -> None:
        n, e = self.num_nodes, self.num_edges
        if n == 0:
            raise ProblemError("the pose graph has no nodes")
        size = self.T_world_node.shape[-1] if self.T_world_node.ndim == 3 else 0
        if size not in (3, 4) or self.T_world_node.shape != (n, size, size):
            raise ProblemError(f"poses have shape {self.T_world_node.shape}, expected (N, 4, 4) or (N, 3, 3)")
        k = self.tangent_dim
        expected = {
            "edge_to": (self.edge_to.shape, (e,)),
            "T_from_to": (self.T_from_to.shape, (e, size, size)),
            "information": (self.information.shape, (e, k, k)),
            "is_loop": (self.is_loop.shape, (e,)),
        }
        for name, (shape, want) in expected.items():
            if shape != want:
                raise ProblemError(f"{name} has shape {shape}, expected {want}")

    def _validate_ids(self) -> None:
        unique, counts = np.unique(self.node_ids, return_counts=True)
        if np.any(counts > 1):
            raise ProblemError(f"duplicate node id {int(unique[np.argmax(counts > 1)])}")
        for name, ids in (("edge_from", self.edge_from), ("edge_to", self.edge_to)):
            known = np.isin(ids, self.node_ids)
            if not np.all(known):
                bad = int(np.argmin(known))
                raise ProblemError(
                    f"edge {bad} ({self.edge_from[bad]} -> {self.edge_to[bad]}): "
                    f"unknown node id {int(ids[bad])} in {name}"
                )
        self_edges = np.flatnonzero(self.edge_from == self.edge_to)
        if self_edges.size:
            bad = int(self_edges[0])
            raise ProblemError(f"edge {bad} connects node {int(self.edge_from[bad])} to itself")
        unknown_fixed = self.fixed_ids[~np.isin(self.fixed_ids, self.node_ids)]
        if unknown_fixed.size:
            raise ProblemError(f"fixed node id {int(unknown_fixed[0])} is not a node")

    def _validate_connected(self) -> None:
        n = self.num_nodes
        if n == 1:
            return
        rows, cols = self.edge_indices()
        adjacency = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
        count, labels = connected_components(adjacency, directed=False)
        if count > 1:
            anchor = self.anchor_index()
            outside = int(np.argmax(labels != labels[anchor]))
            raise ProblemError(
                f"the pose graph is disconnected ({count} components): node "
                f"{int(self.node_ids[outside])} is not connected to the anchor node "
                f"{int(self.node_ids[anchor])}"
            )


@dataclass(frozen=True)
class InformationRepair:
    """What :func:`repair_information` did: the repaired matrices ``information`` ``(E, k, k)``
    (the others unchanged), which were repaired ``repaired`` ``(E,)`` bool, and the smallest and
    largest eigenvalues ``(E,)`` of the matrices as given. ``unrepairable`` ``(E,)`` bool marks
    matrices without a finite positive largest eigenvalue (no scale to clip at: left unchanged)."""

    information: np.ndarray
    repaired: np.ndarray
    unrepairable: np.ndarray
    smallest_eigenvalue: np.ndarray
    largest_eigenvalue: np.ndarray


def repair_information(
    information: np.ndarray, relative_floor: float = INFORMATION_RELATIVE_FLOOR
) -> InformationRepair:
    """Nearest positive-definite matrices of the symmetric ``information`` ``(E, k, k)``.

    A matrix whose smallest eigenvalue is below ``relative_floor`` times its largest (indefinite,
    singular or numerically singular) is replaced by ``V diag(max(lambda, floor)) V^T`` (the
    nearest matrix in the Frobenius norm whose eigenvalues are at least the floor), symmetrized
    exactly; all other matrices are returned unchanged. Matrices whose largest eigenvalue is not
    positive and finite cannot be repaired (``unrepairable``); the caller decides what to do.
    """
    information = np.asarray(information, dtype=np.float64)
    if information.shape[0] == 0:
        empty = np.zeros(0)
        return InformationRepair(information.copy(), empty.astype(bool), empty.astype(bool), empty, empty)
    # Decompose matrices scaled to unit max-norm: no overflow inside LAPACK for any finite input.
    scale = np.abs(information).max(axis=(1, 2))
    scale = np.where(scale > 0.0, scale, 1.0)[:, None, None]
    values, vectors = np.linalg.eigh(information / scale)
    with np.errstate(over="ignore", invalid="ignore"):
        smallest, largest = values[:, 0] * scale[:, 0, 0], values[:, -1] * scale[:, 0, 0]
    unrepairable = ~(np.isfinite(smallest) & np.isfinite(largest) & (largest > 0.0))
    repaired = ~unrepairable & (smallest < relative_floor * largest)
    result = information.copy()
    if np.any(repaired):
        clipped_values = np.maximum(values[repaired], relative_floor * values[repaired, -1:])
        basis = vectors[repaired]
        clipped = (basis * clipped_values[:, None, :]) @ np.swapaxes(basis, 1, 2) * scale[repaired]
        result[repaired] = 0.5 * (clipped + np.swapaxes(clipped, 1, 2))
    return InformationRepair(result, repaired, unrepairable, smallest, largest)


def _describe(what: str, ids: np.ndarray | None, index: int) -> str:
    return f"{what} {int(ids[index])}" if ids is not None else f"{what} {index}"


def _validate_finite(what: str, ids: np.ndarray | None, values: np.ndarray) -> None:
    finite = np.isfinite(values).all(axis=tuple(range(1, values.ndim)))  # (0, k, k) arrays too
    if not np.all(finite):
        raise ProblemError(f"{_describe(what, ids, int(np.argmin(finite)))} has a non-finite value")


def _validate_rotations(what: str, ids: np.ndarray | None, T: np.ndarray) -> None:
    if T.shape[0] == 0:
        return
    d = T.shape[-1] - 1
    R = T[:, :d, :d]
    orthogonality = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(d)).max(axis=(1, 2))
    last_row = np.zeros(d + 1)
    last_row[d] = 1.0
    bad = (
        (orthogonality > _ROTATION_TOLERANCE)
        | (np.linalg.det(R) <= 0.0)
        | (np.abs(T[:, d, :] - last_row).max(axis=1) > _ROTATION_TOLERANCE)
    )
    if np.any(bad):
        raise ProblemError(
            f"{_describe(what, ids, int(np.argmax(bad)))} is not a rigid transform "
            "(rotation not orthonormal with det +1, or last row not [0 .. 0 1])"
        )


def _validate_information(information: np.ndarray, edge_from: np.ndarray, edge_to: np.ndarray) -> None:
    if information.shape[0] == 0:
        return
    scale = np.abs(information).max(axis=(1, 2))
    symmetric = 0.5 * (information + np.swapaxes(information, 1, 2))
    asymmetry = 2.0 * np.abs(information - symmetric).max(axis=(1, 2))  # |I - I^T|, contiguous
    try:  # a batched Cholesky is ~3x cheaper than the eigenvalues; they name a failure
        np.linalg.cholesky(symmetric)
        not_positive = np.zeros(information.shape[0], dtype=bool)
    except np.linalg.LinAlgError:
        not_positive = np.linalg.eigvalsh(symmetric)[:, 0] <= 0.0
    checks = (
        (asymmetry > _SYMMETRY_TOLERANCE * np.maximum(scale, 1e-300), "is not symmetric"),
        (not_positive, "is not positive definite"),
    )
    for mask, problem in checks:
        if np.any(mask):
            bad = int(np.argmax(mask))
            smallest = np.linalg.eigvalsh(symmetric[bad])[0]
            raise ProblemError(
                f"information of edge {bad} ({int(edge_from[bad])} -> {int(edge_to[bad])}) "
                f"{problem} (smallest eigenvalue {smallest:.3g})"
            )
