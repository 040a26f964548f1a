"""An incrementally growing pose graph with warm-started solves on the core PGO.

Keyframes are appended one at a time (:meth:`IncrementalPoseGraph.add_node`); a new node's
estimate is chained from its predecessor's *optimised* pose through the odometry, so between
solves the map moves rigidly with the last correction and a solve starts from the previous
optimum (warm start). Loop edges are set as a whole (:meth:`set_loops`): the consistency check
may drop earlier loops. Solving is split so a caller can run it in a worker thread:
:meth:`snapshot` copies the graph (O(N) arrays, no solver state), :func:`solve_snapshot` runs
:func:`~mp_slam_ros.solvers.pgo.optimize_pose_graph`, and :meth:`apply` writes the optimised
poses back and re-chains the nodes appended during the solve.

The graph keeps what ``cgnr_ic`` decided and ordered for its static incomplete-Cholesky
preconditioner across solves (:class:`~mp_slam_ros.solvers.pgo.PreconditionerCache`): each solve
only refactors it, with the appended nodes ordered last, until the graph has grown by a quarter.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.config import option
from mp_slam_ros.errors import ConfigError
from mp_slam_ros.precision import Precision
from mp_slam_ros.solvers.pgo import SOLVERS, PoseGraphResult, PreconditionerCache, default_options, optimize_pose_graph
from mp_slam_ros.solvers.robust import LossKind, RobustLoss
from mp_slam_ros.solvers.summary import Summary, Timings

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PGOConfig:
    """The pose-graph optimisation run after a change of the accepted loops."""

    precision: Precision = option(Precision.MIXED, "PGO precision (fp64|fp32|fp16|mixed)")
    solver: str = option("cgnr_ic", "linear solver: cgnr_ic (mixed-precision recipe) or cholesky (fp64 reference)")
    # 50: of 724 solves of 8 kept runs, one crawled linearly (Cauchy's concave side) and took 45, the
    # rest at most 14 (results/loop_closure/pgo_iterations/README.md)
    max_iterations: int = option(50, "LM iterations per solve (per stage with a loss)", 1, 1000)
    loss: LossKind = option(LossKind.CAUCHY, "robust loss on every edge (none|huber|cauchy; after a least-squares solve when a loop starts beyond 10 scales): a VO glitch or a poor loop then moves the map less")
    loss_scale: float = option(3.0, "robust loss scale (whitened residual norm, sigmas)", 0.01, 1000.0)
    synchronous: bool = option(True, "solve inside add_keyframe (offline runs, tests); the node solves in a worker thread")

    def validate(self, prefix: str = "") -> None:
        """Cross-field checks (the walker checks the bounds)."""
        if self.solver not in SOLVERS:
            raise ConfigError(f"{prefix}solver", self.solver, f"must be one of {', '.join(SOLVERS)}")


class _Rows:
    """A growable stack of equally shaped rows (capacity doubling)."""

    def __init__(self, shape: tuple[int, ...], dtype: type = np.float64) -> None:
        self._data = np.zeros((16, *shape), dtype)
        self._size = 0

    def append(self, row: object) -> None:
        if self._size == len(self._data):
            self._data = np.concatenate([self._data, np.zeros_like(self._data)])
        self._data[self._size] = row
        self._size += 1

    @property
    def view(self) -> np.ndarray:
        return self._data[: self._size]

    def __len__(self) -> int:
        return self._size


@dataclass(frozen=True)
class Loop:
    """A loop edge ``match -> query`` (node indices) with ``T_match_query`` and information."""

    match: int
    query: int
    T_match_query: FloatArray
    information: FloatArray
    key: int = -1  # the caller's name for it (the loop closure: its index among the verified loops)


@dataclass
class GraphSnapshot:
    """A copy of the graph to solve: its first ``num_nodes`` nodes and the edges among them,
    and the growing graph's preconditioner cache (shared, not copied: one solve at a time)."""

    graph: PoseGraph
    num_nodes: int
    cache: PreconditionerCache | None = None
    loop_keys: NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))  # Loop.key of the loop edges, in order


class IncrementalPoseGraph:
    """Nodes (poses ``T_map_node``), odometry edges to their predecessors, and loop edges."""

    def __init__(self) -> None:
        self._T_map_node = _Rows((4, 4))
        self._odometry_from = _Rows((), np.int64)
        self._odometry_to = _Rows((), np.int64)
        self._odometry_T = _Rows((4, 4))
        self._odometry_information = _Rows((6, 6))
        self.loops: list[Loop] = []
        self.fixed: list[int] = [0]
        self.preconditioner_cache = PreconditionerCache()

    @property
    def num_nodes(self) -> int:
        """Number of nodes."""
        return len(self._T_map_node)

    @property
    def T_map_node(self) -> FloatArray:
        """Current estimates ``(N, 4, 4)`` (a view: copy before keeping)."""
        return self._T_map_node.view

    def add_node(self, T_map_node: FloatArray | None, previous: int | None = None,
                 T_previous_node: FloatArray | None = None, information: FloatArray | None = None) -> int:
        """Append a node; with ``previous``, an odometry edge ``previous -> node`` measuring
        ``T_previous_node`` with ``information`` ``(6, 6)``, and (when ``T_map_node`` is None)
        the estimate chained from ``previous``'s current one. Returns the node index."""
        index = self.num_nodes
        if previous is not None:
            assert T_previous_node is not None and information is not None
            self.add_edge(previous, index, T_previous_node, information)
            if T_map_node is None:
                T_map_node = self.T_map_node[previous] @ T_previous_node
        self._T_map_node.append(np.eye(4) if T_map_node is None else T_map_node)
        return index

    def add_edge(self, a: int, b: int, T_a_b: FloatArray, information: FloatArray) -> None:
        """An odometry edge ``a -> b`` (``b`` may be the node about to be added)."""
        self._odometry_from.append(a)
        self._odometry_to.append(b)
        self._odometry_T.append(T_a_b)
        self._odometry_information.append(information)

    def set_loops(self, loops: list[Loop]) -> None:
        """Replace the loop edges."""
        self.loops = list(loops)

    def set_poses(self, nodes: NDArray[np.int64], T_map_node: FloatArray) -> None:
        """Overwrite the estimates of ``nodes`` (e.g. a relocalised session moved into the map)."""
        self._T_map_node.view[nodes] = T_map_node

    def snapshot(self) -> GraphSnapshot:
        """The graph as it is now (copied), ready for :func:`solve_snapshot`."""
        n = self.num_nodes
        loops = self.loops
        T = np.concatenate([self._odometry_T.view, np.array([loop.T_match_query for loop in loops]).reshape(-1, 4, 4)])
        information = np.concatenate([self._odometry_information.view, np.array([loop.information for loop in loops]).reshape(-1, 6, 6)])
        graph = PoseGraph(
            node_ids=np.arange(n),
            T_world_node=self.T_map_node.copy(),
            edge_from=np.concatenate([self._odometry_from.view, [loop.match for loop in loops]]).astype(np.int64),
            edge_to=np.concatenate([self._odometry_to.view, [loop.query for loop in loops]]).astype(np.int64),
            T_from_to=T,
            information=information,
            is_loop=np.concatenate([np.zeros(len(self._odometry_from), bool), np.ones(len(loops), bool)]),
            fixed_ids=np.array(self.fixed, np.int64),
        )
        return GraphSnapshot(graph, n, self.preconditioner_cache, np.array([loop.key for loop in loops], np.int64))

    def apply(self, snapshot: GraphSnapshot, T_map_node: FloatArray) -> None:
        """Write optimised poses of ``snapshot``'s nodes; nodes appended since are re-chained
        through their odometry edges from the corrected poses."""
        n = snapshot.num_nodes
        poses = self._T_map_node.view
        poses[:n] = T_map_node
        edges_to = self._odometry_to.view
        for edge in np.flatnonzero(edges_to >= n):
            poses[edges_to[edge]] = poses[self._odometry_from.view[edge]] @ self._odometry_T.view[edge]


#: With a robust loss, the least-squares solve comes first when a loop edge starts farther than
#: this many loss scales from its measurement (whitened residual norm): out there a heavy-tailed
#: loss (Cauchy's weight at ten scales is 1/101) may settle with the loop barely pulled in, e.g. the
#: first loop after a long drift. Closer, the robust solve starts from the warm start itself.
#: (Odometry edges are not asked: a VO glitch stays far off at the robust optimum, by design.)
LEAST_SQUARES_FIRST_SCALES = 10.0


def solve_snapshot(snapshot: GraphSnapshot, config: PGOConfig) -> tuple[PoseGraphResult | None, Summary | None]:
    """Optimise ``snapshot`` (warm-started at its current poses); ``(None, None)`` without loops.

    With ``config.loss``, a loop edge that starts beyond :data:`LEAST_SQUARES_FIRST_SCALES` has the
    plain least-squares optimum computed first, and the robust solve starts from it; the summary
    is then the robust solve's, its timings and iterations covering both stages."""
    if not snapshot.graph.is_loop.any():
        return None, None
    options = replace(default_options(precision=config.precision), max_iterations=config.max_iterations)
    loss = RobustLoss(config.loss, config.loss_scale)
    graph, first = snapshot.graph, None
    if loss.is_trivial or graph.edge_chi2(graph.is_loop).max() > (LEAST_SQUARES_FIRST_SCALES * loss.scale) ** 2:
        first = optimize_pose_graph(graph, options, solver=config.solver, cache=snapshot.cache)
        if loss.is_trivial:
            return first, first.summary
        graph = first.graph
    result = optimize_pose_graph(graph, options, solver=config.solver, cache=snapshot.cache, loss=loss)
    if first is not None:
        result.summary = _both_stages(first.summary, result.summary, loss)
    return result, result.summary


def _both_stages(plain: Summary, robust: Summary, loss: RobustLoss) -> Summary:
    """The robust solve's summary with the least-squares stage's timings and iterations added."""
    timings = Timings(**{f.name: getattr(plain.timings, f.name) + getattr(robust.timings, f.name) for f in fields(Timings)})
    iterations = plain.iterations + [replace(r, iteration=r.iteration + len(plain.iterations)) for r in robust.iterations]
    message = f"least squares: {plain.termination.value} after {len(plain.iterations)} iterations; {loss.describe()}: {robust.message}"
    return replace(robust, timings=timings, iterations=iterations, message=message)


def warm_up_pgo(config: PGOConfig) -> None:
    """Solve a small loop once in both linear-solver paths (iterative recipe and direct) so the
    first real solve does not pay the numba compilation or cache load (seconds on a cold cache:
    long enough for a replay to end before the first correction is published)."""
    n = 12
    angles = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    T_true = np.tile(np.eye(4), (n, 1, 1))
    T_true[:, 0, 3], T_true[:, 1, 3] = np.cos(angles), np.sin(angles)
    edge_from, edge_to = np.arange(n), (np.arange(n) + 1) % n  # a ring: the last edge closes it
    T_initial = T_true.copy()
    T_initial[1:, :3, 3] += 0.05 * np.arange(1, n)[:, None]  # drifted start: a few LM iterations
    graph = PoseGraph(
        node_ids=np.arange(n), T_world_node=T_initial, edge_from=edge_from, edge_to=edge_to,
        T_from_to=np.linalg.inv(T_true[edge_from]) @ T_true[edge_to],
        information=np.tile(np.eye(6) * 100.0, (n, 1, 1)), is_loop=edge_to < edge_from,
    )
    options = replace(default_options(precision=config.precision), max_iterations=3)
    optimize_pose_graph(graph, options, solver="cholesky")
    recipe = replace(options, linear=replace(options.linear, direct_max_parameters=0))
    optimize_pose_graph(graph, recipe, solver=config.solver)
