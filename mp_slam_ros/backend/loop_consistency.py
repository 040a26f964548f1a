"""Graph-level outlier rejection of verified loops: pairwise consistency maximisation (PCM).

As in Kimera-RPGO (Mangelson et al., ICRA 2018): a loop ``i -> j`` with measurement
``Z = T_i_j`` and covariance ``Sigma_Z`` (right perturbation at ``j``) is checked

* against odometry (``odometry check``): ``e = log(Z^-1 T_i_j^odo)``;
* against every other loop ``a, b`` (``pairwise check``) through the odometry chains between
  their ends: ``e = log(Z_a T^odo_{ja jb} Z_b^-1 T^odo_{ib ia})``;

each by its Mahalanobis distance ``e^T Sigma^-1 e`` against ``consistency.max_chi2``. The
covariance adds the loops' covariances (moved to the cycle's frame by their adjoints) and the
odometry drift of each chain, modelled as isotropic with standard deviations growing with the
distance travelled along it (``drift_translation_ratio`` metres per metre,
``drift_rotation_deg_per_m``) above a floor, plus the largest variances of the chain's odometry
edges (a keyframe the odometry reports as uncertain loosens the check). An edge that carries no
orientation (a VO restart: :data:`BREAK_ROTATION_SIGMA_DEG`) breaks the chain, as a new session
does: its unknown turn moves everything after it by its lever arm, which an isotropic drift cannot
model (house s2 at 640x480: a restart 85 deg off made 151 true loops on one side inconsistent with
those on the other, and the larger set dropped them). The accepted loops are the largest set of mutually
consistent loops that pass the odometry check: a maximum clique of the consistency graph, found
greedily from every high-degree loop (the heuristic of PMC, exact on the graphs loops make:
a cluster of mutually consistent true loops and scattered, inconsistent wrong ones).

A loop whose ends lie in chain pieces that no other accepted loop joins (after a VO restart, the
first loop from the new piece to an old one) is *unchecked*: neither test can see it, so it
joins any clique. Cycles through several pieces can still contradict it (piece 3 joined to piece
1 by 41 loops, piece 1 to piece 0 by 210, and one loop from piece 3 to piece 0 placing it 6.2 m off
in a twin room: twin house s4 stereo at 640x480, ATE 9.6 cm -> 65 cm). Those cycles are closed
in the optimised graph: :meth:`PairwiseConsistency.unchecked` names such loops, and the loop
closure drops one whose residual there exceeds ``consistency.unchecked_max_chi2``
(:meth:`PairwiseConsistency.veto`; that loop's chi2 was 14,665, the largest of the correct ones 394).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.config import option
from mp_slam_ros.geometry.lie import se3_adjoint, se3_inverse, se3_log

FloatArray = NDArray[np.float64]
#: an odometry edge whose rotation sigma is at least this (deg) carries no orientation: chains
#: across it are broken (the loop closure's VO-restart edges have ``odometry.restart_sigma_deg``, 180)
BREAK_ROTATION_SIGMA_DEG = 90.0


@dataclass(frozen=True)
class ConsistencyConfig:
    """The odometry and pairwise checks of loops (PCM)."""

    enabled: bool = option(True, "reject loops inconsistent with odometry or with the other loops (PCM)")
    max_chi2: float = option(16.81, "largest Mahalanobis distance of a consistent cycle (16.81: chi2 99%, 6 dof)", 0.1, 1e6)
    drift_translation_ratio: float = option(0.03, "odometry translation drift (m per m travelled, 1 sigma)", 0.0, 10.0)
    drift_rotation_deg_per_m: float = option(0.5, "odometry rotation drift (deg per m travelled, 1 sigma)", 0.0, 180.0)
    drift_floor_m: float = option(0.02, "smallest odometry translation sigma of a chain (m)", 1e-6, 100.0)
    drift_floor_deg: float = option(0.5, "smallest odometry rotation sigma of a chain (deg)", 1e-6, 180.0)
    max_clique_starts: int = option(32, "greedy clique searches started from the highest-degree loops", 1, 100000)
    unchecked_max_chi2: float = option(
        1000.0, "a loop no check could see (its ends in chain pieces no other accepted loop joins, e.g. across a VO restart) "
        "is dropped when the optimised graph leaves it a residual above this (Mahalanobis, its own covariance)", 1.0, 1e12)


@dataclass(frozen=True)
class LoopMeasurement:
    """A verified loop: node indices ``match`` (older) and ``query``, ``T_match_query`` and its
    covariance ``(6, 6)`` (right perturbation at the query)."""

    match: int
    query: int
    T_match_query: FloatArray
    covariance: FloatArray


class OdometryChains:
    """Chain poses ``T_odom_node`` ``(N, 4, 4)``, sessions ``(N,)`` and the distance travelled
    ``(N,)`` (m) of every node: what the checks compare loops with."""

    def __init__(self) -> None:
        self.T_odom_node: list[FloatArray] = []
        self.session: list[int] = []
        self.segment: list[int] = []  # chain pieces between breaks (a new session or a restart edge)
        self.travelled_m: list[float] = []
        self.variance: list[FloatArray] = []  # cumulative (translation m^2, rotation rad^2) of the edges

    def __len__(self) -> int:
        return len(self.session)

    def append(self, T_odom_node: FloatArray, session: int, edge_covariance: FloatArray | None = None) -> None:
        """Add the next node (its distance is chained from the previous node of its session);
        ``edge_covariance`` ``(6, 6)``: of its odometry edge, whose largest translation and
        rotation variances add to the chain's (a keyframe after lost tracking with a large
        covariance makes chains across it uncertain); one with no orientation
        (:data:`BREAK_ROTATION_SIGMA_DEG`, a VO restart) breaks the chain."""
        step = 0.0
        if self.session and self.session[-1] == session:
            step = float(np.linalg.norm(T_odom_node[:3, 3] - self.T_odom_node[-1][:3, 3]))
        self.travelled_m.append((self.travelled_m[-1] if self.travelled_m else 0.0) + step)
        added = np.zeros(2)
        if edge_covariance is not None:
            added = np.array([np.linalg.eigvalsh(edge_covariance[:3, :3])[-1], np.linalg.eigvalsh(edge_covariance[3:, 3:])[-1]])
        self.variance.append((self.variance[-1] if self.variance else np.zeros(2)) + added)
        broken = not self.session or self.session[-1] != session or added[1] >= np.radians(BREAK_ROTATION_SIGMA_DEG) ** 2
        self.segment.append((self.segment[-1] if self.segment else -1) + int(broken))
        self.T_odom_node.append(np.array(T_odom_node, np.float64))
        self.session.append(int(session))

    def connected(self, a: int, b: int) -> bool:
        """Whether nodes ``a`` and ``b`` share an odometry chain (one session, no break between)."""
        return self.segment[a] == self.segment[b]

    def relative(self, a: int, b: int) -> FloatArray:
        """``T_a_b`` ``(4, 4)`` by odometry."""
        return se3_inverse(self.T_odom_node[a]) @ self.T_odom_node[b]

    def drift_covariance(self, a: int, b: int, config: ConsistencyConfig) -> FloatArray:
        """Isotropic drift covariance ``(6, 6)`` of the chain between ``a`` and ``b``."""
        distance = abs(self.travelled_m[b] - self.travelled_m[a])
        sigma_t = max(config.drift_translation_ratio * distance, config.drift_floor_m)
        sigma_r = np.radians(max(config.drift_rotation_deg_per_m * distance, config.drift_floor_deg))
        edges = np.abs(self.variance[b] - self.variance[a])
        return np.diag([sigma_t**2 + edges[0]] * 3 + [sigma_r**2 + edges[1]] * 3)


def _chi2(E: FloatArray, covariance: FloatArray) -> float:
    error = se3_log(E[None])[0]
    return float(error @ np.linalg.solve(covariance, error))


def odometry_chi2(loop: LoopMeasurement, chains: OdometryChains, config: ConsistencyConfig) -> float:
    """Mahalanobis distance of ``loop`` from odometry (inf across sessions: nothing to compare)."""
    if not chains.connected(loop.match, loop.query):
        return float("inf")
    E = se3_inverse(loop.T_match_query) @ chains.relative(loop.match, loop.query)
    return _chi2(E, loop.covariance + chains.drift_covariance(loop.match, loop.query, config))


def _share_chains(a: LoopMeasurement, b: LoopMeasurement, chains: OdometryChains) -> bool:
    """Whether the pairwise check can compare loops ``a`` and ``b`` (their ends share chains)."""
    return chains.connected(a.match, b.match) and chains.connected(a.query, b.query)


def pairwise_chi2(a: LoopMeasurement, b: LoopMeasurement, chains: OdometryChains, config: ConsistencyConfig) -> float:
    """Mahalanobis distance of the cycle through loops ``a`` and ``b`` (0 when their ends do not
    share chains: no evidence either way)."""
    if not _share_chains(a, b, chains):
        return 0.0
    T_queries = chains.relative(a.query, b.query)
    E = a.T_match_query @ T_queries @ se3_inverse(b.T_match_query) @ chains.relative(b.match, a.match)
    Ad_a = se3_adjoint(a.T_match_query[None])[0]
    Ad_b = se3_adjoint((a.T_match_query @ T_queries)[None])[0]
    covariance = (
        Ad_a @ a.covariance @ Ad_a.T + Ad_b @ b.covariance @ Ad_b.T
        + chains.drift_covariance(a.query, b.query, config) + chains.drift_covariance(a.match, b.match, config)
    )
    return _chi2(E, covariance)


class PairwiseConsistency:
    """The consistency graph of all verified loops, updated one loop at a time."""

    def __init__(self, config: ConsistencyConfig | None = None) -> None:
        self.config = config or ConsistencyConfig()
        self.loops: list[LoopMeasurement] = []
        self.odometry_ok = np.zeros(0, bool)
        self.odometry_checked = np.zeros(0, bool)  # the odometry check could compare (one chain piece)
        self.vetoed = np.zeros(0, bool)  # dropped by the optimised graph (:meth:`veto`)
        self._adjacency = np.zeros((0, 0), bool)
        self._comparable = np.zeros((0, 0), bool)  # the pairwise check could compare (ends share chains)

    def add(self, loop: LoopMeasurement, chains: OdometryChains, check_odometry: bool = True) -> float:
        """Add a verified loop; returns its odometry chi2 (``check_odometry=False``: 0, e.g. the
        relocalising loop of a loaded map)."""
        chi2 = odometry_chi2(loop, chains, self.config) if check_odometry else 0.0
        ok = np.isinf(chi2) or chi2 <= self.config.max_chi2  # inf: across sessions, nothing to check
        row = np.array([pairwise_chi2(loop, other, chains, self.config) <= self.config.max_chi2 for other in self.loops], bool)
        comparable = np.array([_share_chains(loop, other, chains) for other in self.loops], bool)
        self._adjacency = _grown(self._adjacency, row)
        self._comparable = _grown(self._comparable, comparable)
        self.loops.append(loop)
        self.odometry_ok = np.append(self.odometry_ok, bool(ok))
        self.odometry_checked = np.append(self.odometry_checked, bool(check_odometry and np.isfinite(chi2)))
        self.vetoed = np.append(self.vetoed, False)
        return chi2

    def accepted(self) -> NDArray[np.bool_]:
        """Mask ``(L,)`` of the loops in the maximum consistent set (all that pass the odometry
        check when ``consistency.enabled`` is off); vetoed loops never."""
        if not self.config.enabled:
            return ~self.vetoed
        return max_clique(self._adjacency, self.odometry_ok & ~self.vetoed, self.config.max_clique_starts)

    def unchecked(self, accepted: NDArray[np.bool_]) -> NDArray[np.bool_]:
        """Mask ``(L,)`` of the ``accepted`` loops that no check could see: not compared with
        odometry (their ends in different chain pieces) nor with any other accepted loop."""
        supported = (self._comparable & accepted[None, :]).any(axis=1)
        return accepted & ~self.odometry_checked & ~supported

    def contradicted(self, accepted: NDArray[np.bool_], keys: NDArray[np.int64], T_world_node: FloatArray) -> int | None:
        """The :meth:`unchecked` loop among ``keys`` (indices of loops that were in a solve; others,
        e.g. a loaded map's, negative) whose residual under that solve's poses ``T_world_node``
        ``(N, 4, 4)`` is largest, when its chi2 (own covariance) exceeds
        ``consistency.unchecked_max_chi2``; else None."""
        unchecked = self.unchecked(accepted)
        keys = keys[(keys >= 0) & (keys < len(unchecked))]
        keys = keys[unchecked[keys]]
        if not len(keys):
            return None
        chi2 = [_chi2(se3_inverse(loop.T_match_query) @ se3_inverse(T_world_node[loop.match]) @ T_world_node[loop.query],
                      loop.covariance) for loop in (self.loops[k] for k in keys)]
        worst = int(np.argmax(chi2))
        return int(keys[worst]) if chi2[worst] > self.config.unchecked_max_chi2 else None

    def veto(self, index: int) -> None:
        """Drop loop ``index`` for good (the optimised graph contradicts it)."""
        self.vetoed[index] = True


def _grown(matrix: NDArray[np.bool_], row: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The symmetric ``matrix`` ``(n, n)`` with one more row and column, ``row`` ``(n,)``."""
    n = len(row)
    grown = np.zeros((n + 1, n + 1), bool)
    grown[:n, :n] = matrix
    grown[n, :n] = grown[:n, n] = row
    return grown


def max_clique(adjacency: NDArray[np.bool_], allowed: NDArray[np.bool_], starts: int) -> NDArray[np.bool_]:
    """A large clique (mask) of the symmetric ``adjacency`` among ``allowed`` vertices: greedy
    growth (highest remaining degree first) from the ``starts`` highest-degree vertices."""
    n = len(allowed)
    best = np.zeros(n, bool)
    if n == 0 or not allowed.any():
        return best
    graph = adjacency & allowed[None, :] & allowed[:, None]
    degree = graph.sum(axis=1)
    order = [v for v in np.argsort(-degree, kind="stable") if allowed[v]][:starts]
    for start in order:
        if degree[start] + 1 <= best.sum():
            break
        clique = np.zeros(n, bool)
        clique[start] = True
        candidates = graph[start].copy()
        while candidates.any():
            inner = (graph[candidates][:, candidates]).sum(axis=1)
            pick = np.flatnonzero(candidates)[int(np.argmax(inner))]
            clique[pick] = True
            candidates &= graph[pick]
        if clique.sum() > best.sum():
            best = clique
    return best
