"""Loop closure, ROS-free: keyframes in; loops, optimised keyframe poses and ``T_map_odom`` out.

:meth:`LoopClosure.add_keyframe` reads top to bottom:

1. **check the input** (:mod:`.loop_closure_input`): out-of-order or duplicated keyframes and
   NaN poses are dropped, NaN covariances replaced, a VO restart (ids starting over) starts a new
   odometry segment, keyframes without descriptors skip place recognition; each is warned in the
   result and counted, never raised;
2. **add the node**: odometry edge from the previous keyframe with the VO's relative covariance;
3. **recognise the place** (vocabulary trained online, keyframes younger than ``loop.min_age_s``
   excluded, temporal consistency), and add the old keyframes nearest to the query's current map
   pose (``loop.proximity_*``: a revisit the vocabulary ranks low, or whose best-scoring view
   shares too few points, still gets its nearest views checked);
4. **verify** each candidate (descriptor matches + PnP RANSAC on the candidate's 3-D points; when
   they do not suffice, on those of its covisible neighbourhood, ``loop.neighbours``);
5. **check consistency** of all verified loops (odometry check + PCM maximum clique), and after
   a loaded map, **relocalise** on the first verified match against it;
6. **optimise** the pose graph when the accepted loops changed (inline with
   ``pgo.synchronous``, else by the caller's worker through :meth:`take_solve` /
   :meth:`finish_solve`) under a robust loss on every edge (``pgo.loss``: a VO glitch stays in
   its edge; least squares first when a loop starts far off, see
   :func:`~mp_slam_ros.backend.incremental_pgo.solve_snapshot`); an accepted loop no check could
   compare that the optimised graph contradicts is dropped, and the graph solved again.

:meth:`LoopClosure.refine_globally` then bundle-adjusts every keyframe with landmarks matched
between covisible keyframes (:mod:`~mp_slam_ros.backend.global_ba`): offline after the last
keyframe, in the node on request. A later PGO solve starts from the refined poses.

Node poses are camera poses: ``T_map_cam`` estimates of the keyframes' ``T_odom_cam``;
``T_map_odom = T_map_cam T_odom_cam^-1`` of the latest keyframe.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.backend import keyframe_store
from mp_slam_ros.backend.global_ba import GlobalBAResult, refine_keyframes
from mp_slam_ros.backend.incremental_pgo import GraphSnapshot, IncrementalPoseGraph, Loop, solve_snapshot, warm_up_pgo
from mp_slam_ros.backend.keyframe_store import KeyframeStore, StoredKeyframe
from mp_slam_ros.backend.loop_consistency import LoopMeasurement, OdometryChains, PairwiseConsistency
from mp_slam_ros.backend.loop_verification import verify_pnp
from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.backend.place_recognition import PlaceRecognizer
from mp_slam_ros.errors import ProblemError
from mp_slam_ros.geometry.lie import se3_inverse
from mp_slam_ros.pipelines.loop_closure_config import LoopClosureConfig
from mp_slam_ros.pipelines.loop_closure_input import InputCheck, check_keyframe, edge_information
from mp_slam_ros.solvers.summary import Summary
from mp_slam_ros.types import KeyframeArrays

FloatArray = NDArray[np.float64]
#: place-recognition stamp of loaded map keyframes: always old enough to be a candidate
_MAP_STAMP_NS = int(np.iinfo(np.int64).min)


@dataclass
class CandidateResult:
    """One place-recognition candidate and what became of it."""

    match_keyframe_id: int
    match_node: int
    score: float
    verified: bool
    accepted: bool
    reason: str
    inliers: int = 0
    proximity: bool = False  # proposed by the map pose (``loop.proximity_*``), not by appearance


@dataclass
class LoopResult:
    """What :meth:`LoopClosure.add_keyframe` did with one keyframe."""

    keyframe_id: int
    stamp_ns: int
    node: int | None  # None: the keyframe was dropped
    T_map_odom: FloatArray
    candidates: list[CandidateResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dropped_loops: int = 0  # earlier accepted loops the consistency check now rejects
    relocalized: bool = False  # this keyframe relocalised the session against a loaded map
    solved: bool = False
    summary: Summary | None = None
    T_map_cam: FloatArray | None = None  # (N, 4, 4) optimised keyframe poses after a solve
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def accepted(self) -> list[CandidateResult]:
        """The candidates accepted into the graph."""
        return [c for c in self.candidates if c.accepted]


class LoopClosure:
    """Place recognition, verification, PCM and incremental PGO over a stream of keyframes."""

    def __init__(self, config: LoopClosureConfig | None = None) -> None:
        self.config = config or LoopClosureConfig()
        warm_up_pgo(self.config.pgo)
        self.counts: Counter[str] = Counter()
        self.solve_summaries: list[Summary] = []
        self._lock = threading.RLock()
        self._reset_state()

    def _reset_state(self) -> None:
        self.graph = IncrementalPoseGraph()
        self.store = KeyframeStore()
        self.chains = OdometryChains()
        self.places = PlaceRecognizer(self.config.places)
        self.consistency = PairwiseConsistency(self.config.consistency)
        self._place_nodes: list[int] = []
        self._map_loops: list[Loop] = []  # loops of a loaded map (kept as they are)
        self._accepted = np.zeros(0, bool)
        self._session = 0
        self._relocalized = True
        self._dirty = False
        self._T_map_odom = np.eye(4)

    # ---- public API --------------------------------------------------------------------------

    def add_keyframe(self, keyframe: KeyframeArrays) -> LoopResult:
        """Process one keyframe (see the module docstring); never raises on bad content."""
        started = time.perf_counter()
        with self._lock:
            result = LoopResult(int(keyframe.keyframe_id), int(keyframe.stamp_ns), None, self._T_map_odom.copy())
            check = check_keyframe(keyframe, self._last_keyframe(), self.config.odometry)
            result.warnings += check.warnings
            self.counts.update(check.counters)
            if check.drop:
                return result
            self.counts["keyframes"] += 1
            node = self._add_node(keyframe, check)
            result.node = node
            t = time.perf_counter()
            candidates = self._recognize(node, keyframe, check)
            candidates += self._near(node, int(keyframe.stamp_ns), [match for match, _ in candidates]) if check.has_features else []
            result.timings_s["place_s"] = time.perf_counter() - t
            t = time.perf_counter()
            measurements = self._verify(node, keyframe, candidates, result)
            result.timings_s["verify_s"] = time.perf_counter() - t
            self._check_consistency(node, measurements, result)
            if self._dirty and self.config.pgo.synchronous:
                self._solve_inline(result)
            result.T_map_odom = self._T_map_odom.copy()
        result.timings_s["total_s"] = time.perf_counter() - started
        return result

    @property
    def T_map_odom(self) -> FloatArray:
        """The current ``map -> odom`` correction ``(4, 4)``."""
        with self._lock:
            return self._T_map_odom.copy()

    @property
    def relocalized(self) -> bool:
        """False after :meth:`load_map` until a keyframe matched the loaded map."""
        return self._relocalized

    def pose_graph(self) -> PoseGraph | None:
        """The current graph (nodes: keyframe indices, poses ``T_map_cam``), None when empty."""
        with self._lock:
            return self.graph.snapshot().graph if self.graph.num_nodes else None

    def poses(self) -> tuple[NDArray[np.int64], NDArray[np.int64], FloatArray]:
        """VO keyframe ids ``(N,)``, stamps ``(N,)`` ns and current ``T_map_cam`` ``(N, 4, 4)``."""
        with self._lock:
            ids = np.array([k.keyframe_id for k in self.store.keyframes], np.int64)
            stamps = np.array([k.stamp_ns for k in self.store.keyframes], np.int64)
            return ids, stamps, self.graph.T_map_node.copy()

    def take_solve(self) -> GraphSnapshot | None:
        """A snapshot to optimise when the accepted loops changed since the last one (else None)."""
        with self._lock:
            if not self.solve_pending:
                return None
            self._dirty = False
            return self.graph.snapshot()

    def finish_solve(self, snapshot: GraphSnapshot) -> Summary | None:
        """Optimise ``snapshot`` (any thread, without the lock) and apply the poses."""
        solution, summary = solve_snapshot(snapshot, self.config.pgo)
        if solution is None:
            return None
        with self._lock:
            self.graph.apply(snapshot, solution.graph.T_world_node)
            self._update_T_map_odom()
            self.counts["solves"] += 1
            self.solve_summaries.append(summary)
            self._veto_contradicted(snapshot, solution.graph.T_world_node)
        return summary

    @property
    def solve_pending(self) -> bool:
        """Whether the accepted loops changed since the last snapshot (a solve is due)."""
        with self._lock:
            return self._dirty and self._relocalized

    def optimize(self) -> Summary | None:
        """Solve now if the accepted loops changed (what ``pgo.synchronous`` does inline)."""
        snapshot = self.take_solve()
        return None if snapshot is None else self.finish_solve(snapshot)

    def refine_globally(self) -> GlobalBAResult | None:
        """Bundle-adjust every keyframe (``global_ba.*``; the solve runs without the lock) and
        apply the refined poses; None when there is nothing to adjust (fewer than two keyframes,
        no landmark seen twice, before relocalising on a loaded map) or the graph was reset
        meanwhile. Keyframes added during the solve move with the last refined one."""
        with self._lock:
            if not self._relocalized or self.graph.num_nodes < 2:
                return None
            graph, snapshot = self.graph, self.graph.snapshot()
            keyframes = list(self.store.keyframes[: snapshot.num_nodes])
        result = refine_keyframes(keyframes, snapshot.graph, self.config.global_ba)
        if result is None:
            return None
        with self._lock:
            if graph is not self.graph:
                return None
            self.graph.apply(snapshot, result.T_map_cam)
            self._update_T_map_odom()
            self.counts["global_ba"] += 1
        return result

    def update_config(self, config: LoopClosureConfig) -> None:
        """Use ``config`` from the next keyframe on (e.g. ``pgo.precision`` changed at runtime)."""
        with self._lock:
            self.config = config
            self.consistency.config = config.consistency
            self.places.config = config.places

    def reset(self) -> None:
        """Forget everything (graph, keyframes, vocabulary, loaded map); counters are kept."""
        with self._lock:
            self._reset_state()
            self.counts["resets"] += 1

    def save_map(self, directory: str | Path) -> Path:
        """Write the pose graph (g2o) and keyframe store (npz) atomically; returns the manifest."""
        with self._lock:
            if not self._relocalized:
                raise ProblemError("the session has not relocalised against the loaded map yet: nothing consistent to save")
            if self.graph.num_nodes == 0:
                raise ProblemError("no keyframes to save")
            snapshot = self.graph.snapshot()
            return keyframe_store.save_map(directory, snapshot.graph, self.store, self.places.vocabulary)

    def load_map(self, directory: str | Path) -> int:
        """Replace the state by a saved map; the next session relocalises against it. Returns
        the number of keyframes loaded."""
        saved = keyframe_store.load_map(directory)
        with self._lock:
            self._reset_state()
            graph = saved.graph
            order = np.argsort(graph.node_ids)
            if not np.array_equal(graph.node_ids[order], np.arange(graph.num_nodes)):
                raise ProblemError(f"{directory}: map node ids are not 0..{graph.num_nodes - 1}")
            for node in order:
                kf = saved.store[int(node)]
                kf.session = 0
                self.graph.add_node(graph.T_world_node[node])
                self.store.append(kf)
                self.chains.append(graph.T_world_node[node], 0)
            self._add_loaded_edges(graph)
            if saved.vocabulary is not None:
                self.places.set_vocabulary(saved.vocabulary)
                for node, kf in enumerate(self.store.keyframes):
                    if kf.in_places:
                        self.places.add(_MAP_STAMP_NS, kf.descriptors)
                        self._place_nodes.append(node)
            self._session = 1
            self._relocalized = False
            self.counts["maps_loaded"] += 1
            return graph.num_nodes

    # ---- steps -------------------------------------------------------------------------------

    def _last_keyframe(self) -> StoredKeyframe | None:
        if not self.store.keyframes or self.store.keyframes[-1].session != self._session:
            return None
        return self.store.keyframes[-1]

    def _add_node(self, keyframe: KeyframeArrays, check: InputCheck) -> int:
        """Node, odometry edge and stored features of an accepted keyframe."""
        previous = self._last_keyframe()
        T_odom_cam = check.T_odom_cam
        edge_covariance = None
        if previous is None:
            T_map_cam = self._T_map_odom @ T_odom_cam
            node = self.graph.add_node(T_map_cam)
        else:
            T_previous_cam = se3_inverse(previous.T_odom_cam) @ T_odom_cam
            gap_s = (int(keyframe.stamp_ns) - previous.stamp_ns) * 1e-9
            information = edge_information(check.covariance_cam, self.config.odometry, restart=check.restart, gap_s=gap_s)
            node = self.graph.add_node(None, len(self.store) - 1, T_previous_cam, information)
            edge_covariance = np.linalg.inv(information)
        self.chains.append(T_odom_cam, self._session, edge_covariance)
        self.store.append(StoredKeyframe(
            int(keyframe.keyframe_id), int(keyframe.stamp_ns), self._session, T_odom_cam,
            np.asarray(keyframe.camera.camera_matrix, np.float64), np.asarray(keyframe.keypoints_px, np.float32),
            np.asarray(keyframe.descriptors, np.uint8), np.asarray(keyframe.points_cam, np.float32), check.has_features,
        ))
        return node

    def _recognize(self, node: int, keyframe: KeyframeArrays, check: InputCheck) -> list[tuple[int, float]]:
        """``(match node, score)`` of the place candidates of ``node`` (best first)."""
        if not check.has_features:
            return []
        max_stamp_ns = int(keyframe.stamp_ns) - int(self.config.loop.min_age_s * 1e9)
        _, candidates = self.places.query_and_add(int(keyframe.stamp_ns), keyframe.descriptors, max_stamp_ns)
        self._place_nodes.append(node)
        out = [(self._place_nodes[c.index], c.score) for c in candidates]
        self.counts["candidates"] += len(out)
        return out

    def _near(self, node: int, stamp_ns: int, taken: list[int]) -> list[tuple[int, float]]:
        """``(match node, nan)`` of up to ``loop.proximity_candidates`` old keyframes whose current
        map pose lies within ``loop.proximity_m`` / ``proximity_deg`` of ``node``'s (nearest first;
        none within ``places.separation`` keyframes of ``taken`` or of each other)."""
        config = self.config.loop
        if config.proximity_candidates == 0 or not self._relocalized or node == 0:
            return []
        max_stamp_ns = stamp_ns - int(config.min_age_s * 1e9)
        session = self.store[node].session
        old = np.array([kf.in_places and (kf.session != session or kf.stamp_ns <= max_stamp_ns) for kf in self.store.keyframes[:node]])
        T_map_node = self.graph.T_map_node
        distance_m = np.linalg.norm(T_map_node[:node, :3, 3] - T_map_node[node, :3, 3], axis=1)
        angle_deg = np.degrees(np.arccos(np.clip(T_map_node[:node, :3, 2] @ T_map_node[node, :3, 2], -1.0, 1.0)))
        near = np.flatnonzero(old & (distance_m <= config.proximity_m) & (angle_deg <= config.proximity_deg))
        cost = distance_m[near] / max(config.proximity_m, 1e-9) + angle_deg[near] / max(config.proximity_deg, 1e-9)
        picked: list[int] = []
        for n in near[np.argsort(cost, kind="stable")]:
            if len(picked) == config.proximity_candidates:
                break
            if all(abs(int(n) - other) > self.config.places.separation for other in taken + picked):
                picked.append(int(n))
        self.counts["proximity_candidates"] += len(picked)
        return [(n, float("nan")) for n in picked]

    def _verify(self, node: int, keyframe: KeyframeArrays, candidates: list[tuple[int, float]], result: LoopResult) -> list[LoopMeasurement]:
        """Verified loop measurements ``match -> node``; every candidate reported in ``result``
        (score NaN: a proximity candidate)."""
        query = self.store[node]
        max_stamp_ns = int(keyframe.stamp_ns) - int(self.config.loop.min_age_s * 1e9)
        measurements = []
        for match, score in candidates:
            stored = self.store[match]
            check = verify_pnp(query.keypoints_px, query.descriptors, stored.points_cam, stored.descriptors, query.K, self.config.loop)
            if not check.accepted and self.config.loop.neighbours > 0:  # the covisible neighbourhood
                points_cam, descriptors, groups = self._neighbourhood(match, node, max_stamp_ns)
                if len(groups) > 1:
                    check = verify_pnp(query.keypoints_px, query.descriptors, points_cam, descriptors, query.K, self.config.loop, groups)
            result.candidates.append(CandidateResult(stored.keyframe_id, match, score, check.accepted, False, check.reason, check.inliers, bool(np.isnan(score))))
            if not check.accepted:
                self.counts["rejected_verification"] += 1
                self.counts["rejected_degenerate"] += int(check.degenerate)
                continue
            self.counts["verified"] += 1
            covariance = np.linalg.inv(edge_information(check.covariance, self.config.odometry))
            measurements.append(LoopMeasurement(match, node, check.T_match_query, covariance))
        return measurements

    def _neighbourhood(self, match: int, query: int, max_stamp_ns: int) -> tuple[FloatArray, NDArray[np.uint8], list[int]]:
        """3-D points ``(N, 3)`` in the camera frame of ``match`` and descriptors ``(N, D)`` of it
        and of its ``loop.neighbours`` keyframes either side (by odometry: same chain, edges
        certain to ``loop.neighbour_max_sigma_m``, old enough for the query), with the row count
        of each keyframe (``match`` first)."""
        config, chains = self.config.loop, self.chains
        nodes = [match]
        for step in (-1, 1):
            for n in range(match + step, match + step * (config.neighbours + 1), step):
                if not 0 <= n < query or not chains.connected(match, n) or not self.store[n].in_places:
                    break
                if self.store[n].session == self.store[query].session and self.store[n].stamp_ns > max_stamp_ns:
                    break
                if np.sqrt(abs(chains.variance[n][0] - chains.variance[match][0])) > config.neighbour_max_sigma_m:
                    break
                nodes.append(n)
        T_match_node = se3_inverse(self.store[match].T_odom_cam) @ np.array([self.store[n].T_odom_cam for n in nodes])
        points = [self.store[n].points_cam @ T[:3, :3].T + T[:3, 3] for n, T in zip(nodes, T_match_node)]
        descriptors = [self.store[n].descriptors for n in nodes]
        return np.concatenate(points), np.concatenate(descriptors), [len(d) for d in descriptors]

    def _check_consistency(self, node: int, measurements: list[LoopMeasurement], result: LoopResult) -> None:
        """PCM over all verified loops; relocalisation on the first match against a loaded map."""
        if not measurements:
            return
        first = len(self.consistency.loops)
        for loop in measurements:
            self.consistency.add(loop, self.chains)
        if not self._relocalized:
            self._relocalize(measurements, result)
        accepted = self.consistency.accepted()
        previous = np.concatenate([self._accepted, np.zeros(len(accepted) - len(self._accepted), bool)])
        result.dropped_loops = int(np.sum(previous & ~accepted))
        for offset, candidate in enumerate(c for c in result.candidates if c.verified):
            candidate.accepted = bool(accepted[first + offset])
            if not candidate.accepted:
                candidate.reason = "inconsistent with odometry or the other loops (PCM)"
        self.counts["accepted"] += int(accepted[first:].sum())
        self.counts["rejected_consistency"] += int((~accepted[first:]).sum()) + result.dropped_loops
        if not np.array_equal(previous, accepted):
            self._set_loops(accepted)

    def _relocalize(self, measurements: list[LoopMeasurement], result: LoopResult) -> None:
        """Move the live session into the map frame through its first match with the map."""
        for loop in measurements:
            if self.store[loop.match].session != 0:
                continue
            T_map_query = self.graph.T_map_node[loop.match] @ loop.T_match_query
            T_map_odom = T_map_query @ se3_inverse(self.store[loop.query].T_odom_cam)
            live = np.flatnonzero([kf.session != 0 for kf in self.store.keyframes])
            self.graph.set_poses(live, T_map_odom @ np.array([self.store[int(n)].T_odom_cam for n in live]))
            self._T_map_odom = T_map_odom
            self._relocalized = result.relocalized = True
            self.counts["relocalizations"] += 1
            return

    def _set_loops(self, accepted: NDArray[np.bool_]) -> None:
        """The graph's loop edges: the loaded map's and the ``accepted`` verified loops (keyed by index)."""
        self._accepted = accepted
        loops = [Loop(loop.match, loop.query, loop.T_match_query, np.linalg.inv(loop.covariance), int(index))
                 for index, loop in enumerate(self.consistency.loops) if accepted[index]]
        self.graph.set_loops(self._map_loops + loops)
        self._dirty = True

    def _veto_contradicted(self, snapshot: GraphSnapshot, T_map_node: FloatArray) -> None:
        """Drop the unchecked loop of ``snapshot`` that its optimised poses ``T_map_node``
        contradict (:meth:`PairwiseConsistency.contradicted`); the next solve goes without it."""
        index = self.consistency.contradicted(self._accepted, snapshot.loop_keys, T_map_node)
        if index is None:
            return
        self.consistency.veto(index)
        self.counts["vetoed"] += 1
        self.counts["rejected_consistency"] += 1
        self._set_loops(self.consistency.accepted())

    def _add_loaded_edges(self, graph: PoseGraph) -> None:
        """Odometry and loop edges of a loaded map (loops kept, never re-checked)."""
        edge_from, edge_to = graph.index_of(graph.edge_from), graph.index_of(graph.edge_to)
        for a, b, T, information, is_loop in zip(edge_from, edge_to, graph.T_from_to, graph.information, graph.is_loop):
            if is_loop:
                self._map_loops.append(Loop(int(a), int(b), T, information))
            else:
                self.graph.add_edge(int(a), int(b), T, information)
        self.graph.set_loops(self._map_loops)

    def _solve_inline(self, result: LoopResult) -> None:
        summary = self.optimize()
        while summary is not None and self.solve_pending:  # a loop the solution contradicts was dropped
            summary = self.optimize()
        if summary is not None:
            result.solved, result.summary = True, summary
            result.T_map_cam = self.graph.T_map_node.copy()
            result.timings_s["pgo_s"] = summary.timings.total_s

    def _update_T_map_odom(self) -> None:
        last = len(self.store) - 1
        if last >= 0 and self._relocalized:
            self._T_map_odom = self.graph.T_map_node[last] @ se3_inverse(self.store[last].T_odom_cam)
