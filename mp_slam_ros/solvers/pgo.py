"""Pose-graph optimization (SE(3) and SE(2)) on the mixed-precision LM core.

For an edge ``i -> j`` with measurement ``Z = T_i_j`` and information ``Omega = L L^T`` the
residual is the whitened tangent error

    e = log(Z^-1 T_i^-1 T_j),      r = L^T e,      cost = 1/2 sum ||r||^2,  chi2 = 2 cost,

or, with a robust loss on some edges (:class:`~mp_slam_ros.solvers.robust.RobustLoss`, e.g.
Cauchy at 3 sigma, as g2o's and GTSAM's robust kernels), ``cost = 1/2 sum rho(||r||^2)`` over
those edges, minimised on the iteratively reweighted model (each edge's rows times
``sqrt(rho'(||r||^2))``); ``chi2`` stays the plain ``sum e^T Omega e``,

with analytic Jacobians (right perturbations ``T <- T exp(d)``)

    de/dd_j = Jr^-1(e),      de/dd_i = -Jr^-1(e) Ad((T_i^-1 T_j)^-1).

The gauge is fixed by holding the anchor node (and any other fixed node) constant: their columns
are not part of the problem. The sparse pattern of the Jacobian is built once per problem;
every linearization only refreshes the values, in one numba pass over the edges
(:mod:`mp_slam_ros.solvers.pgo_kernels`).

Residual precision: the state and the measurements are rounded to the policy's residual dtype
before evaluation and the residuals and Jacobian values are rounded to it afterwards (for
float16: float32 arrays holding float16 values). The arithmetic in between runs in float64
on this CPU, which is at least as accurate as the dtype's own arithmetic; the rounding of the
inputs and outputs is what limits accuracy (e.g. poses 50 m from the origin stored in float16
are only known to 3 cm).

Linear solvers (:func:`make_linear_solver`): ``cgnr_ic`` is CGNR with a static incomplete
Cholesky preconditioner built once per problem from :meth:`PoseGraphProblem.reference_jacobian`
(the Jacobian at zero residual, which the LM iterates converge toward: measured to need ~2x
fewer inner iterations than the first linearization of a dead-reckoning start), thresholded by
default (drop tolerance 3e-3, AMD ordering; ``drop_tolerance=0`` gives IC(0)); its triangular
solves run in float16 in ``mixed`` mode. Inner tolerances follow an inexact-Newton forcing
sequence (:class:`~mp_slam_ros.solvers.linear.inexact_newton.InexactNewton`), and a fallback
ladder (:mod:`~mp_slam_ros.solvers.linear.fallback`) takes over when the preconditioner stops working. ``cholesky`` is the float64 sparse direct reference.

:func:`optimize_pose_graph` is the entry point for applications (CLI, loop-closure node).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.errors import ConfigError
from mp_slam_ros.geometry import lie
from mp_slam_ros.solvers import pgo_kernels as kernels
from mp_slam_ros.precision import ProblemKind, round_to
from mp_slam_ros.solvers.linear.base import LinearSolver
from mp_slam_ros.solvers.linear.cgnr import CGNRSolver, Preconditioner, PreconditionerFactory
from mp_slam_ros.solvers.linear.cholesky import SparseCholeskySolver
from mp_slam_ros.solvers.linear.fallback import FallbackLadder
from mp_slam_ros.solvers.linear.inexact_newton import InexactNewton
from mp_slam_ros.solvers.linear.ichol import IncompleteCholeskyFactory
from mp_slam_ros.solvers.lm import IterationCallback, Linearization, solve
from mp_slam_ros.solvers.robust import RobustLoss, reweight_factors
from mp_slam_ros.solvers.summary import LinearSolverChange, LinearSolverOptions, SolverOptions, Summary


#: Drop tolerance of the default (thresholded) incomplete Cholesky of ``cgnr_ic``.
DEFAULT_DROP_TOLERANCE = 3e-3


@dataclass(frozen=True)
class _Group:
    """What differs between SE(3) and SE(2) graphs (internal)."""

    k: int
    exp: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]
    edges: Callable[..., None]  # the numba kernel of pgo_kernels


_SE3 = _Group(6, lie.se3_exp, lie.se3_inverse, kernels.se3_edges)
_SE2 = _Group(3, lie.se2_exp, lie.se2_inverse, kernels.se2_edges)
_EMPTY = np.zeros(0)


class PoseGraphProblem:
    """A :class:`~mp_slam_ros.solvers.lm.LeastSquaresProblem` over the poses of a graph.

    The state is the array of poses ``T_world_node`` ``(N, d+1, d+1)`` float64. Nodes in
    ``fixed_ids`` (default: the graph's fixed ids, else its first node) are held constant.
    ``loss`` applies to the edges where ``robust_edges`` ``(E,)`` bool is True (default: all).
    Raises :class:`~mp_slam_ros.errors.ProblemError` for an invalid graph (see
    :meth:`PoseGraph.validate`).
    """

    kind = ProblemKind.PGO

    def __init__(self, graph: PoseGraph, fixed_ids: np.ndarray | None = None, loss: RobustLoss | None = None,
                 robust_edges: np.ndarray | None = None) -> None:
        graph.validate(require_connected=True)
        self.graph = graph
        self.loss = loss or RobustLoss()
        self._robust_edges = np.ones(graph.num_edges, bool) if robust_edges is None else np.asarray(robust_edges, bool)
        if self._robust_edges.shape != (graph.num_edges,):
            raise ConfigError("robust_edges", self._robust_edges.shape, f"must be one flag per edge ({graph.num_edges},)")
        self._last_robust: tuple[np.ndarray, str, tuple[float, np.ndarray]] | None = None
        self._group = _SE3 if graph.dim == 3 else _SE2
        k = self._group.k
        if fixed_ids is None:
            fixed_ids = graph.fixed_ids if graph.fixed_ids.size else graph.node_ids[:1]
        fixed = np.zeros(graph.num_nodes, dtype=bool)
        fixed[graph.index_of(fixed_ids)] = True
        self.fixed = fixed
        self._from, self._to = graph.edge_indices()
        variable = np.where(fixed, -1, np.cumsum(~fixed) - 1)  # node -> variable block
        self._free_nodes = np.flatnonzero(~fixed)
        self._Z_inv = self._group.inverse(graph.T_from_to)
        # Whitening W = L^T with Omega = L L^T, so ||W e||^2 = e^T Omega e.
        self._whitening = np.swapaxes(np.linalg.cholesky(graph.information), 1, 2).copy()
        self._rounded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.num_residuals = graph.num_edges * k
        self.num_parameters = self._free_nodes.size * k
        pattern = kernels.jacobian_pattern(variable[self._from], variable[self._to], k)
        self._scatter, self._indices, self._indptr = pattern

    # ---- LeastSquaresProblem protocol ------------------------------------------------------------

    def initial_state(self) -> np.ndarray:
        """The poses of the graph (a copy)."""
        return self.graph.T_world_node.copy()

    def linearize(self, state: np.ndarray, dtype: np.dtype) -> Linearization:
        """Whitened (and, under a loss, reweighted) residuals ``(6E,)``/``(3E,)`` and the sparse
        Jacobian, both in ``dtype``, with the (robust) cost."""
        if self.loss.is_trivial:
            residual, values = self._evaluate(state, dtype, jacobian=True)
            return Linearization(residual, self._csr(values), _half_squared_norm(residual))
        cost, factors = self._robust_terms(state, dtype)
        residual, values = self._evaluate(state, dtype, jacobian=True, factors=factors)
        return Linearization(residual, self._csr(values), cost, exact_model=bool(np.all(factors == 1.0)))

    def cost(self, state: np.ndarray, dtype: np.dtype) -> float:
        """``1/2 sum ||r||^2`` (or ``1/2 sum rho``) with the residuals evaluated in ``dtype``, summed in float64."""
        if self.loss.is_trivial:
            return _half_squared_norm(self._evaluate(state, dtype, jacobian=False)[0])
        return self._robust_terms(state, dtype)[0]

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

    @property
    def tangent_dim(self) -> int:
        """Parameters per free pose (6 for SE(3), 3 for SE(2)): the block size of the columns."""
        return self._group.k

    def chi2(self, state: np.ndarray) -> float:
        """Sum of squared Mahalanobis errors ``sum e^T Omega e`` in float64 (= 2 cost without a loss)."""
        return 2.0 * _half_squared_norm(self._evaluate(state, np.dtype(np.float64), jacobian=False)[0])

    def _robust_terms(self, state: np.ndarray, dtype: np.dtype) -> tuple[float, np.ndarray]:
        """Robust cost and each edge's factor ``sqrt(rho'(||r||^2))`` ``(E,)`` (1 on edges without
        the loss) at ``state`` in ``dtype``. The last evaluation is kept: the LM driver evaluates a
        trial state's cost and then, when it accepts it, linearizes that same state object."""
        key = np.dtype(dtype).name
        last = self._last_robust
        if last is not None and last[0] is state and last[1] == key:
            return last[2]
        blocks = self._evaluate(state, dtype, jacobian=False)[0].astype(np.float64).reshape(-1, self._group.k)
        squared = np.einsum("ek,ek->e", blocks, blocks)
        robust = self._robust_edges
        cost, edge_factors = reweight_factors(self.loss, squared[robust])
        factors = np.ones(squared.size)
        factors[robust] = edge_factors
        terms = (cost + 0.5 * float(np.sum(squared[~robust])), factors)
        self._last_robust = (state, key, terms)
        return terms

    def reference_jacobian(self) -> sp.csr_matrix:
        """The Jacobian (float64) at zero residual: every ``T_i^-1 T_j`` equal to its measurement.

        It depends on the measurements only and is the linearization LM converges toward on a
        consistent graph, so it is a good matrix for a static preconditioner. (Evaluated by the
        same kernel on a two-pose graph per edge, ``I`` and ``Z``.)
        """
        num_edges = self.graph.num_edges
        poses = np.empty((2 * num_edges,) + self.graph.T_from_to.shape[1:])
        poses[0::2] = np.eye(poses.shape[-1])
        poses[1::2] = self.graph.T_from_to
        values = np.zeros(self._indices.size)
        self._group.edges(
            poses, np.arange(0, 2 * num_edges, 2), np.arange(1, 2 * num_edges, 2), self._Z_inv,
            self._whitening, np.empty(self.num_residuals), values, self._scatter, False,
        )
        return self._csr(values)

    def _evaluate(self, state: np.ndarray, dtype: np.dtype, jacobian: bool,
                  factors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Residuals and (if asked) Jacobian values in ``dtype`` (float32 holding float16), each
        edge's rows times its ``factors`` ``(E,)`` when given."""
        dtype = np.dtype(dtype)
        storage = np.dtype(np.float32) if dtype == np.float16 else dtype
        Z_inv, W = self._inputs(dtype)
        if factors is not None:
            W = W * factors[:, None, None]
        poses = round_to(state, dtype).astype(np.float64, copy=False)
        residual = np.empty(self.num_residuals, dtype=storage)
        values = np.empty(self._indices.size, dtype=storage) if jacobian else _EMPTY.astype(storage)
        self._group.edges(poses, self._from, self._to, Z_inv, W, residual, values, self._scatter, dtype == np.float16)
        return residual, values

    def _csr(self, values: np.ndarray) -> sp.csr_matrix:
        jacobian = sp.csr_matrix(
            (values, self._indices, self._indptr), shape=(self.num_residuals, self.num_parameters)
        )
        jacobian.has_canonical_format = True  # sorted, no duplicates: by construction of the pattern
        return jacobian

    def _inputs(self, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """Inverse measurements and whitening matrices rounded to ``dtype``, as float64 (cached)."""
        key = np.dtype(dtype).name
        if key not in self._rounded:
            self._rounded[key] = tuple(  # type: ignore[assignment]
                round_to(values, dtype).astype(np.float64, copy=False) for values in (self._Z_inv, self._whitening)
            )
        return self._rounded[key]


def _record_cache_use(cache: PreconditionerCache, reuses_before: int, problem: PoseGraphProblem,
                      summary: Summary) -> None:
    """List a kept preconditioner first among the summary's linear-solver changes; drop it from
    ``cache`` when the fallback ladder had to step in."""
    if summary.linear_solver_changes:
        cache.invalidate()  # it stopped working (or the ladder chose the direct solver)
    if cache.reuses > reuses_before:
        kept = cache.kept_columns
        summary.linear_solver_changes.insert(0, LinearSolverChange(
            0, "kept", f"the preconditioner choice and ordering of {kept} unknowns kept from an earlier "
                       f"solve, {problem.num_parameters - kept} appended unknowns ordered last"))


def _half_squared_norm(residual: np.ndarray) -> float:
    r = residual.astype(np.float64, copy=False)
    return 0.5 * float(r @ r)


SOLVERS = ("cgnr_ic", "cholesky")


def default_options(**overrides: object) -> SolverOptions:
    """LM options tuned for pose graphs; ``overrides`` replace fields.

    A small initial damping (1e-8 on the unit-diagonal scaled system: the long, soft modes of a
    pose graph must not be damped away), a relative cost decrease of 1e-6 to stop, a cost of a
    thousandth of a sigma per (whitened) residual counted as zero, and inner
    solves to a relative residual of at most 1e-3 (see :class:`InexactNewton`), stopped early
    when their rate projects past the 500-iteration cap (the fallback ladder then takes over,
    :mod:`mp_slam_ros.solvers.linear.fallback`).
    """
    options = SolverOptions(
        max_iterations=100,
        function_tolerance=1e-6,
        gradient_tolerance=1e-10,
        parameter_tolerance=1e-9,
        initial_damping=1e-8,
        zero_cost_per_residual=0.5e-6,
        linear=LinearSolverOptions(rtol=1e-3, max_iterations=200, stall_iterations=10, rate_check_iterations=40),
    )
    return replace(options, **overrides)  # type: ignore[arg-type]


@dataclass
class PreconditionerCache:
    """What the solves of a growing pose graph keep of ``cgnr_ic``'s static preconditioner.

    Hand the same cache to every :func:`optimize_pose_graph` call on a graph that only grows at
    the end, as a loop-closure back end's does: nodes appended, loop edges added or dropped,
    the same fixed nodes. The first solve checks the preconditioner (direct or iterative, see
    :mod:`~mp_slam_ros.solvers.linear.fallback`) and orders it (AMD on pose blocks); the next
    ones keep that choice and that ordering, with the appended unknowns ordered after it, and
    only refactor the incomplete Cholesky of the grown graph's reference Jacobian. Measured on a
    household graph, a warm-started solve after each new loop (CPU time, p50): 5,000 poses
    125-133 -> 104-106 ms, 1,000 poses 25.7 -> 21.7 ms, with the same CG iterations. (Keeping the
    factor itself and preconditioning the appended nodes apart cost 4-5x the CG iterations and
    was slower.) The ordering is computed again once the unknowns grew by more than
    ``max_growth`` (relative), when the fixed nodes or the pose dimension changed, and after a
    solve in which the fallback ladder had to step in. One solve at a time (not thread-safe).
    ``builds``/``reuses`` count what happened; ``kept_columns``: the unknowns whose ordering the
    latest solve kept (0: it computed a new one).
    """

    max_growth: float = 0.25
    builds: int = 0
    reuses: int = 0
    kept_columns: int = 0
    _perm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)
    _key: tuple[int, bytes] | None = field(default=None, repr=False)

    def factory(self, problem: PoseGraphProblem, base: IncompleteCholeskyFactory) -> tuple[PreconditionerFactory, int]:
        """The preconditioner factory for ``problem`` (``base``: its factory, with the reference
        Jacobian) and the number of unknowns whose ordering it keeps (0: a new build, whose
        ordering is kept for the next solves)."""
        key = (problem.tangent_dim, np.flatnonzero(problem.fixed).tobytes())
        kept, columns = self._perm.size, problem.num_parameters
        self.kept_columns = 0
        if self._key == key and 0 < kept <= columns <= (1.0 + self.max_growth) * kept:
            ordered = replace(base, permutation=np.concatenate([self._perm, np.arange(kept, columns)]))

            def reordered(J_s: sp.csr_matrix, damping: float, policy, backend) -> Preconditioner:  # noqa: ANN001
                self.reuses += 1
                self.kept_columns = kept
                return ordered(J_s, damping, policy, backend)
            return reordered, kept

        def build(J_s: sp.csr_matrix, damping: float, policy, backend) -> Preconditioner:  # noqa: ANN001
            built = base(J_s, damping, policy, backend)
            self._perm, self._key = built.perm, key
            self.builds += 1
            return built
        return build, 0

    def invalidate(self) -> None:
        """Forget the kept ordering and choice (the next solve checks and orders anew)."""
        self._perm, self._key = np.zeros(0, np.int64), None


def make_linear_solver(
    name: str,
    problem: PoseGraphProblem | None = None,
    preconditioner: IncompleteCholeskyFactory | None = None,
    options: LinearSolverOptions | None = None,
    cache: PreconditionerCache | None = None,
) -> LinearSolver:
    """The linear solver called ``name`` (one of :data:`SOLVERS`) for ``problem``.

    ``cgnr_ic``: CGNR with the static incomplete-Cholesky ``preconditioner`` (default:
    thresholded, drop tolerance 3e-3, AMD ordering) built from ``problem``'s reference
    Jacobian (the Jacobian at zero residual, see :meth:`PoseGraphProblem.reference_jacobian`)
    and ordered by pose blocks (``block_size`` = the tangent dimension unless the factory sets
    one) when a problem is given, else from the first linearization; wrapped in
    :class:`InexactNewton` and in the :class:`FallbackLadder` configured by ``options``
    (default: :func:`default_options`' ``linear``); with a ``cache`` (and a problem), the choice
    of the iterative path and the ordering are kept across solves (:class:`PreconditionerCache`). ``cholesky``: the
    float64 sparse direct reference.
    """
    if name == "cgnr_ic":
        factory = preconditioner or IncompleteCholeskyFactory(drop_tolerance=DEFAULT_DROP_TOLERANCE)
        cgnr_factory: PreconditionerFactory = factory
        kept_columns = 0
        if problem is not None:
            block_size = factory.block_size if factory.block_size > 1 else problem.tangent_dim
            factory = replace(factory, reference_jacobian=problem.reference_jacobian(), block_size=block_size)
            cgnr_factory = factory
            if cache is not None:
                cgnr_factory, kept_columns = cache.factory(problem, factory)
        cgnr = CGNRSolver(cgnr_factory, static_preconditioner=True, name="cgnr_ic")
        ladder_options = options or default_options().linear
        return FallbackLadder(InexactNewton(cgnr), cgnr, factory, SparseCholeskySolver(), ladder_options,
                              iterative_chosen=kept_columns > 0)
    if name == "cholesky":
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
    preconditioner: IncompleteCholeskyFactory | None = None,
    cache: PreconditionerCache | None = None,
    loss: RobustLoss | None = None,
    robust_edges: np.ndarray | None = None,
) -> PoseGraphResult:
    """Optimize the poses of ``graph`` with LM; return a new graph (the input is not modified).

    ``options``: LM options (default :func:`default_options`; ``options.precision`` picks
    fp64 / fp32 / fp16 / mixed); ``solver``: ``"cgnr_ic"`` (CGNR with a static incomplete-
    Cholesky preconditioner, the mixed-precision recipe) or ``"cholesky"`` (fp64 sparse direct
    reference); ``callback``: called with each iteration record, return ``False`` to stop;
    ``fixed_ids``: nodes held constant (default: the graph's fixed ids, else its first node);
    ``preconditioner``: the incomplete-Cholesky options of ``cgnr_ic`` (e.g.
    ``IncompleteCholeskyFactory(drop_tolerance=0.0)`` for IC(0)); ``cache``: keep ``cgnr_ic``'s
    preconditioner choice and ordering across the solves of a growing graph
    (:class:`PreconditionerCache`; a reuse is listed first in the summary's ``linear_solver_changes``);
    ``loss``: a robust loss on the edges flagged in ``robust_edges`` ``(E,)`` (default all; the
    summary's costs are then the robust ones).
    chi2 values are ``sum e^T Omega e`` evaluated in float64 whatever the precision and loss.
    Raises :class:`~mp_slam_ros.errors.ProblemError` for an invalid graph and
    :class:`~mp_slam_ros.errors.ConfigError` for invalid options.
    """
    options = options or default_options()
    started = time.perf_counter()
    problem = PoseGraphProblem(graph, fixed_ids, loss, robust_edges)
    reuses = cache.reuses if cache is not None else 0
    linear_solver = make_linear_solver(solver, problem, preconditioner, options.linear, cache)
    setup_s = time.perf_counter() - started
    initial_chi2 = problem.chi2(problem.initial_state())
    result = solve(problem, linear_solver, options, callback)
    if cache is not None:
        _record_cache_use(cache, reuses, problem, result.summary)
    result.summary.timings.setup_s = setup_s
    result.summary.timings.total_s += setup_s
    return PoseGraphResult(
        graph=graph.with_poses(result.state),
        summary=result.summary,
        initial_chi2=initial_chi2,
        final_chi2=problem.chi2(result.state),
    )
