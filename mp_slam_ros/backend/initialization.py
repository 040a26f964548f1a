"""Initial poses of a pose graph from its measurements alone (no ROS, no solver).

* :func:`odometry_initialization` composes the measured relative poses along a breadth-first
  spanning tree rooted at the graph's anchor (its first fixed node, else its first node: for a
  g2o file without vertex lines, the lowest id). The anchor keeps its pose. A disconnected graph
  gets one tree per connected component, rooted at the component's lowest id, which keeps its
  pose. Cheap, exact on a consistent graph, but the error of every edge on a tree path adds up.
* :func:`chordal_initialization` is the chordal relaxation (Martinec & Pajdla 2007; GTSAM's
  ``InitializePose3``, SE-Sync's chordal initialization): the rotations first, as the linear
  least squares ``R_j - R_i R_ij = 0`` over unconstrained ``d x d`` matrices, each edge weighted
  by ``kappa = d_r / trace(Omega_rr^-1)`` (``Omega_rr``: the rotation block of its information,
  ``d_r`` its size), then projected to SO(d) by SVD; then the translations, the linear least
  squares ``R_i^T (t_j - t_i) - t_ij = 0`` with the rotations fixed, weighted by the translation
  block of the information. The anchor's pose is held; every other node (also other fixed nodes)
  is estimated. Every edge counts at once, so on a graph with loops the drift of a tree path is
  spread over the loop: much closer to the optimum on hard graphs.

Both return ``T_world_node`` ``(N, d+1, d+1)`` in the graph's node order and recover the
poses of a noiseless graph exactly (up to rounding) given the anchor's pose.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import breadth_first_order, connected_components
from scipy.sparse.linalg import splu

from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.geometry import lie


def odometry_initialization(graph: PoseGraph) -> np.ndarray:
    """Poses ``(N, d+1, d+1)`` composed along a BFS spanning tree (see the module docstring).

    Needs consistent ids and rigid measurements (the graph's shapes and ids are not re-validated
    here; a reader calls it on a graph it built). Several edges between a tree's parent and child:
    the first one in the graph's edge order is used.
    """
    n = graph.num_nodes
    rows, cols = graph.edge_indices()
    roots = _tree_roots(graph, rows, cols)
    # A virtual node n joined to every root makes one tree of the whole forest.
    starts = np.concatenate([rows, np.full(roots.size, n)])
    ends = np.concatenate([cols, roots])
    adjacency = sp.coo_matrix((np.ones(starts.size), (starts, ends)), shape=(n + 1, n + 1)).tocsr()
    _, predecessor = breadth_first_order(adjacency, n, directed=False, return_predecessors=True)
    parent = predecessor[:n].astype(np.int64)
    T_parent_node = _tree_measurements(graph, rows, cols, parent)
    T_parent_node[roots] = graph.T_world_node[roots]
    parent[roots] = roots
    return _compose_to_roots(T_parent_node, parent)


def _tree_roots(graph: PoseGraph, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Row index of each connected component's root: the anchor, else the lowest id."""
    n = graph.num_nodes
    adjacency = sp.coo_matrix((np.ones(rows.size), (rows, cols)), shape=(n, n))
    _, labels = connected_components(adjacency, directed=False)
    by_label_then_id = np.lexsort((graph.node_ids, labels))
    first = np.ones(n, dtype=bool)
    first[1:] = labels[by_label_then_id][1:] != labels[by_label_then_id][:-1]
    roots = by_label_then_id[first]
    anchor = graph.anchor_index()
    roots[labels[roots] == labels[anchor]] = anchor
    return roots


def _tree_measurements(graph: PoseGraph, rows: np.ndarray, cols: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """``T_parent_node`` ``(N, d+1, d+1)`` of every tree edge (identity for the roots)."""
    forward = parent[cols] == rows  # edge parent -> child
    backward = (parent[rows] == cols) & ~forward  # edge child -> parent
    child = np.concatenate([cols[forward], rows[backward]])
    inverse = lie.se3_inverse if graph.dim == 3 else lie.se2_inverse
    measured = np.concatenate([graph.T_from_to[forward], inverse(graph.T_from_to[backward])])
    order = np.concatenate([np.flatnonzero(forward), np.flatnonzero(backward)])
    sorted_by_edge = np.argsort(order, kind="stable")
    child, measured = child[sorted_by_edge], measured[sorted_by_edge]
    unique_child, first = np.unique(child, return_index=True)
    T_parent_node = np.tile(np.eye(graph.dim + 1), (graph.num_nodes, 1, 1))
    T_parent_node[unique_child] = measured[first]
    return T_parent_node


def _compose_to_roots(T_parent_node: np.ndarray, parent: np.ndarray) -> np.ndarray:
    """World poses from tree-relative ones by pointer jumping: ``log2(depth)`` batched products.

    On entry ``T_parent_node[i]`` is the pose of ``i`` in its ``parent[i]``; a root is its own
    parent and holds its world pose. Each round replaces ``i``'s parent by its grandparent.
    """
    T_ancestor_node, ancestor = T_parent_node.copy(), parent.copy()
    is_root = parent == np.arange(parent.size)
    active = np.flatnonzero(~is_root[ancestor])
    while active.size:
        up = ancestor[active]
        T_ancestor_node[active] = T_ancestor_node[up] @ T_ancestor_node[active]
        ancestor[active] = ancestor[up]
        active = active[~is_root[ancestor[active]]]
    T_world_node = T_ancestor_node
    non_roots = np.flatnonzero(~is_root)
    T_world_node[non_roots] = T_ancestor_node[ancestor[non_roots]] @ T_ancestor_node[non_roots]
    return T_world_node


def chordal_initialization(graph: PoseGraph) -> np.ndarray:
    """Poses ``(N, d+1, d+1)`` by chordal relaxation (see the module docstring).

    Raises :class:`~mp_slam_ros.errors.ProblemError` for an invalid or disconnected graph (the
    least-squares problems have a unique solution exactly when the graph is connected).
    """
    graph.validate(require_connected=True)
    if graph.num_nodes == 1:
        return graph.T_world_node.copy()
    d = graph.dim
    rows, cols = graph.edge_indices()
    anchor = graph.anchor_index()
    R_from_to = graph.T_from_to[:, :d, :d]
    t_from_to = graph.T_from_to[:, :d, d]
    information_rr = graph.information[:, d:, d:]
    kappa = information_rr.shape[-1] / np.trace(np.linalg.inv(information_rr), axis1=1, axis2=2)
    sqrt_kappa = np.sqrt(kappa)[:, None, None]
    # Unknowns Y_i = R_i^T: R_j^T = R_ij^T R_i^T is linear in Y with d right-hand sides.
    eye = np.broadcast_to(np.eye(d), R_from_to.shape)
    Y = _solve_anchored(
        -sqrt_kappa * np.swapaxes(R_from_to, 1, 2), sqrt_kappa * eye, np.zeros((rows.size, d, d)),
        rows, cols, anchor, graph.T_world_node[anchor, :d, :d].T, graph.num_nodes,
    )
    R_world_node = _nearest_rotations(np.swapaxes(Y, 1, 2))
    R_world_node[anchor] = graph.T_world_node[anchor, :d, :d]
    # Whitened translation residuals L^T (R_i^T (t_j - t_i) - t_ij), Omega_tt = L L^T.
    whitening = np.swapaxes(np.linalg.cholesky(graph.information[:, :d, :d]), 1, 2)
    M = whitening @ np.swapaxes(R_world_node[rows], 1, 2)
    t = _solve_anchored(
        -M, M, whitening @ t_from_to[:, :, None], rows, cols, anchor, graph.T_world_node[anchor, :d, d:],
        graph.num_nodes,
    )
    T_world_node = np.tile(np.eye(d + 1), (graph.num_nodes, 1, 1))
    T_world_node[:, :d, :d] = R_world_node
    T_world_node[:, :d, d] = t[:, :, 0]
    T_world_node[anchor] = graph.T_world_node[anchor]
    return T_world_node


def _solve_anchored(
    block_from: np.ndarray, block_to: np.ndarray, rhs: np.ndarray, rows: np.ndarray, cols: np.ndarray,
    anchor: int, X_anchor: np.ndarray, num_nodes: int,
) -> np.ndarray:
    """Least squares ``block_from[e] X[rows[e]] + block_to[e] X[cols[e]] = rhs[e]`` over ``X``
    ``(N, d, m)`` with ``X[anchor] = X_anchor`` held, by the sparse normal equations (SuperLU).

    ``block_*``: ``(E, d, d)``, ``rhs``: ``(E, d, m)``. Returns ``X`` ``(N, d, m)``.
    """
    num_edges, d, _ = block_from.shape
    m = rhs.shape[-1]
    shape = (num_edges, d, d)
    row_index = np.broadcast_to(np.arange(num_edges * d).reshape(num_edges, d, 1), shape).ravel()
    column_from = np.broadcast_to(rows[:, None, None] * d + np.arange(d), shape).ravel()
    column_to = np.broadcast_to(cols[:, None, None] * d + np.arange(d), shape).ravel()
    jacobian = sp.coo_matrix(
        (np.concatenate([block_from.ravel(), block_to.ravel()]),
         (np.concatenate([row_index, row_index]), np.concatenate([column_from, column_to]))),
        shape=(num_edges * d, num_nodes * d),
    ).tocsc()
    free = np.ones(num_nodes * d, dtype=bool)
    free[anchor * d:(anchor + 1) * d] = False
    J_free, J_anchor = jacobian[:, free], jacobian[:, ~free]
    b = rhs.reshape(num_edges * d, m) - J_anchor @ X_anchor
    normal = (J_free.T @ J_free).tocsc()
    # Symmetric positive definite: minimum-degree ordering of A + A^T, no pivoting (~3x faster).
    factor = splu(normal, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    solution = factor.solve(np.asarray(J_free.T @ b))
    X = np.empty((num_nodes * d, m))
    X[free] = solution
    X[~free] = X_anchor
    return X.reshape(num_nodes, d, m)


def _nearest_rotations(M: np.ndarray) -> np.ndarray:
    """The rotation closest (Frobenius) to each ``M`` ``(N, d, d)``: ``U diag(1, .., det) V^T``."""
    U, _, Vt = np.linalg.svd(M)
    sign = np.sign(np.linalg.det(U @ Vt))
    U[:, :, -1] *= np.where(sign == 0.0, 1.0, sign)[:, None]
    return U @ Vt
