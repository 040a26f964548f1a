"""Pose-graph optimization (SE(3) and SE(2)) on the mixed-precision LM core.

For an edge ``i -> j`` with measurement ``Z = T_i_j`` and information ``Omega = L L^T`` the
residual is the whitened tangent error

    e = log(Z^-1 T_i^-1 T_j),      r = L^T e,      cost = 1/2 sum ||r||^2,  chi2 = 2 cost,

with analytic Jacobians (right perturbations ``T <- T exp(d)``)

    de/dd_j = Jr^-1(e),      de/dd_i = -Jr^-1(e) Ad((T_i^-1 T_j)^-1).

The gauge is fixed by holding the anchor node (and any other fixed node) constant: their columns
are not part of the problem. The sparse pattern of the Jacobian is built once per problem;
every linearization only refreshes the values (vectorized over all edges, no Python loop).

Residual precision: the state and the measurements are rounded to the policy's residual dtype
before evaluation and the residuals and Jacobian values are rounded to it afterwards (for
float16: float32 arrays holding float16 values). The arithmetic in between runs in float64
on this CPU, which is at least as accurate as the dtype's own arithmetic; the rounding of the
inputs and outputs is what limits accuracy (e.g. poses 50 m from the origin stored in float16
are only known to 3 cm).

:func:`optimize_pose_graph` is the entry point for applications (CLI, loop-closure node).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.errors import ConfigError
from mp_slam_ros.geometry import lie
from mp_slam_ros.precision import ProblemKind, round_to
from mp_slam_ros.solvers.linear.base import LinearSolver
from mp_slam_ros.solvers.lm import IterationCallback, Linearization, solve
from mp_slam_ros.solvers.summary import LinearSolverOptions, SolverOptions, Summary


@dataclass(frozen=True)
class _Group:
    """The Lie-group functions of SE(3) or SE(2) the problem needs (internal)."""

    k: int
    exp: Callable[[np.ndarray], np.ndarray]
    log: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]
    adjoint: Callable[[np.ndarray], np.ndarray]
    right_jacobian_inv: Callable[[np.ndarray], np.ndarray]


_SE3 = _Group(6, lie.se3_exp, lie.se3_log, lie.se3_inverse, lie.se3_adjoint, lie.se3_right_jacobian_inv)
_SE2 = _Group(3, lie.se2_exp, lie.se2_log, lie.se2_inverse, lie.se2_adjoint, lie.se2_right_jacobian_inv)


class PoseGraphProblem:
    """A :class:`~mp_slam_ros.solvers.lm.LeastSquaresProblem` over the poses of a graph.

    The state is the array of poses ``T_world_node`` ``(N, d+1, d+1)`` float64. Nodes in
    ``fixed_ids`` (default: the graph's fixed ids, else its first node) are held constant.
    Raises :class:`~mp_slam_ros.errors.ProblemError` for an invalid graph (see
    :meth:`PoseGraph.validate`).
    """

    kind = ProblemKind.PGO

    def __init__(self, graph: PoseGraph, fixed_ids: np.ndarray | None = None) -> None:
        graph.validate(require_connected=True)
        self.graph = graph
        self._group = _SE3 if graph.dim == 3 else _SE2
        k = self._group.k
        if fixed_ids is None:
            fixed_ids = graph.fixed_ids if graph.fixed_ids.size else graph.node_ids[:1]
        fixed = np.zeros(graph.num_nodes, dtype=bool)
        fixed[graph.index_of(fixed_ids)] = True
        self.fixed = fixed
        self._from, self._to = graph.edge_indices()
        self._variable = np.where(fixed, -1, np.cumsum(~fixed) - 1)  # node -> variable block
        self._free_nodes = np.flatnonzero(~fixed)
        self._Z_inv = self._group.inverse(graph.T_from_to)
        # Whitening W = L^T with Omega = L L^T, so ||W e||^2 = e^T Omega e.
        self._whitening = np.swapaxes(np.linalg.cholesky(graph.information), 1, 2)
        self._rounded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.num_residuals = graph.num_edges * k
        self.num_parameters = self._free_nodes.size * k
        self._gather, self._indices, self._indptr = _jacobian_pattern(
            self._variable[self._from], self._variable[self._to], k
        )

    # ---- LeastSquaresProblem protocol ------------------------------------------------------------

    def initial_state(self) -> np.ndarray:
        """The poses of the graph (a copy)."""
        return self.graph.T_world_node.copy()

    def linearize(self, state: np.ndarray, dtype: np.dtype) -> Linearization:
        """Whitened residuals ``(6E,)``/``(3E,)`` and the sparse Jacobian, both in ``dtype``."""
        T_rel, error = self._errors(state, dtype)
        g = self._group
        _, W = self._inputs(dtype)
        J_to = np.einsum("nij,njk->nik", W, g.right_jacobian_inv(error))
        J_from = -np.einsum("nij,njk->nik", J_to, g.adjoint(g.inverse(T_rel)))
        blocks = np.concatenate([J_from, J_to], axis=2)
        data = round_to(blocks.reshape(-1)[self._gather], dtype)
        jacobian = sp.csr_matrix(
            (data, self._indices, self._indptr), shape=(self.num_residuals, self.num_parameters)
        )
        jacobian.has_sorted_indices = True
        residual = round_to(np.einsum("nij,nj->ni", W, error).reshape(-1), dtype)
        return Linearization(residual, jacobian, _half_squared_norm(residual))

    def cost(self, state: np.ndarray, dtype: np.dtype) -> float:
        """``1/2 sum ||r||^2`` with the residuals evaluated in ``dtype``, summed in float64."""
        _, error = self._errors(state, dtype)
        _, W = self._inputs(dtype)
        return _half_squared_norm(round_to(np.einsum("nij,nj->ni", W, error).reshape(-1), dtype))

    def retract(self, state: np.ndarray, delta: np.ndarray) -> np.ndarray:
        """New poses ``T <- T exp(delta_block)`` for every free node (fixed nodes unchanged)."""
        new_state = state.copy()
        steps = np.asarray(delta, dtype=np.float64).reshape(-1, self._group.k)
        new_state[self._free_nodes] = state[self._free_nodes] @ self._group.exp(steps)
        return new_state

    def state_norm(self, state: np.ndarray) -> float:
        """Euclidean norm of all node positions (metres)."""
        d = state.shape[-1] - 1
        return float(np.linalg.norm(state[:, :d, d]))

    # ---- evaluation helpers ----------------------------------------------------------------------

    def chi2(self, state: np.ndarray) -> float:
        """Sum of squared Mahalanobis errors ``sum e^T Omega e`` in float64 (= 2 cost)."""
        return 2.0 * self.cost(state, np.dtype(np.float64))

    def _inputs(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """Inverse measurements and whitening matrices rounded to ``dtype`` (cached)."""
        key = np.dtype(dtype).name
        if key not in self._rounded:
            self._rounded[key] = (round_to(self._Z_inv, dtype), round_to(self._whitening, dtype))
        return self._rounded[key]

    def _errors(self, state: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """Relative poses ``T_i^-1 T_j`` ``(E, ., .)`` and tangent errors ``(E, k)`` (float64)."""
        poses = round_to(state, dtype).astype(np.float64, copy=False)
        Z_inv, _ = self._inputs(dtype)
        T_rel = self._group.inverse(poses[self._from]) @ poses[self._to]
        return T_rel, self._group.log(Z_inv.astype(np.float64, copy=False) @ T_rel)


def _half_squared_norm(residual: np.ndarray) -> float:
    r = residual.astype(np.float64, copy=False)
    return 0.5 * float(r @ r)


def _jacobian_pattern(
    variable_from: np.ndarray, variable_to: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR pattern of the Jacobian and where its values come from, built once per problem.

    Each edge owns ``k`` rows; its dense block row is ``[J_from | J_to]`` ``(k, 2k)``. Returns
    ``gather`` (indices into the flattened ``(E, k, 2k)`` blocks, in CSR order with sorted
    columns per row, fixed nodes' columns left out), ``indices`` and ``indptr``.
    """
    num_edges = variable_from.size
    edge, row, col = np.meshgrid(np.arange(num_edges), np.arange(k), np.arange(2 * k), indexing="ij")
    variable = np.where(col < k, variable_from[edge], variable_to[edge])
    keep = (variable >= 0).reshape(-1)
    column = (variable * k + col % k).reshape(-1)[keep]
    global_row = (edge * k + row).reshape(-1)[keep]
    flat = np.arange(edge.size)[keep]
    order = np.lexsort((column, global_row))
    counts = np.bincount(global_row, minlength=num_edges * k)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    return flat[order], column[order].astype(np.int32), indptr


SOLVERS = ("cgnr_ic", "cholesky")


def default_options(**overrides: object) -> SolverOptions:
    """LM options tuned for pose graphs (inexact Newton inner solves); ``overrides`` replace fields.

    The inner CGNR stops at a relative normal-equation residual of 1e-4 (an inexact Newton
    step: LM needs a descent direction, not an exact one) and the outer loop at a relative cost
    decrease of 1e-7.
    """
    options = SolverOptions(
        max_iterations=100,
        function_tolerance=1e-7,
        gradient_tolerance=1e-10,
        parameter_tolerance=1e-9,
        linear=LinearSolverOptions(rtol=1e-4, max_iterations=500, stall_iterations=20),
    )
    return replace(options, **overrides)  # type: ignore[arg-type]


def make_linear_solver(name: str) -> LinearSolver:
    """The linear solver called ``name`` (one of :data:`SOLVERS`)."""
    if name == "cgnr_ic":
        from mp_slam_ros.solvers.linear.cgnr import CGNRSolver  # noqa: PLC0415
        from mp_slam_ros.solvers.linear.ichol import IncompleteCholeskyFactory  # noqa: PLC0415

        return CGNRSolver(IncompleteCholeskyFactory(), static_preconditioner=True, name="cgnr_ic")
    if name == "cholesky":
        from mp_slam_ros.solvers.linear.cholesky import SparseCholeskySolver  # noqa: PLC0415

        return SparseCholeskySolver()
    raise ConfigError("solver", name, f"must be one of {', '.join(SOLVERS)}")


@dataclass
class PoseGraphResult:
    """The optimized graph, the LM :class:`Summary`, and chi2 before and after (float64)."""

    graph: PoseGraph
    summary: Summary
    initial_chi2: float
    final_chi2: float


def optimize_pose_graph(
    graph: PoseGraph,
    options: SolverOptions | None = None,
    solver: str = "cgnr_ic",
    callback: IterationCallback | None = None,
    fixed_ids: np.ndarray | None = None,
) -> PoseGraphResult:
    """Optimize the poses of ``graph`` with LM; return a new graph (the input is not modified).

    ``options``: LM options (default :func:`default_options`; ``options.precision`` picks
    fp64 / fp32 / fp16 / mixed); ``solver``: ``"cgnr_ic"`` (CGNR with a static incomplete-
    Cholesky preconditioner, the mixed-precision recipe) or ``"cholesky"`` (fp64 sparse direct
    reference); ``callback``: called with each iteration record, return ``False`` to stop;
    ``fixed_ids``: nodes held constant (default: the graph's fixed ids, else its first node).
    chi2 values are ``sum e^T Omega e`` evaluated in float64 whatever the precision.
    Raises :class:`~mp_slam_ros.errors.ProblemError` for an invalid graph and
    :class:`~mp_slam_ros.errors.ConfigError` for invalid options.
    """
    options = options or default_options()
    linear_solver = make_linear_solver(solver)
    problem = PoseGraphProblem(graph, fixed_ids)
    initial_chi2 = problem.chi2(problem.initial_state())
    result = solve(problem, linear_solver, options, callback)
    return PoseGraphResult(
        graph=graph.with_poses(result.state),
        summary=result.summary,
        initial_chi2=initial_chi2,
        final_chi2=problem.chi2(result.state),
    )
