"""Global bundle adjustment of the loop closure's keyframes (ROS-free).

A pose graph can only move keyframes as rigid bodies along its edges; where the VO is already good,
what remains is each keyframe's own error, and only the keyframes' shared observations can remove
it. :func:`refine_keyframes` therefore

1. **pairs covisible keyframes**: each keyframe with the next ``neighbours`` of its session, the two
   ends of every loop edge, and up to ``covisible_max`` older keyframes whose camera is within
   ``covisible_radius_m`` in the map and looks within ``covisible_angle_deg`` the same way;
2. **matches each pair guided by the map poses**: a keyframe's 3-D points (depth or stereo) are
   projected into the other keyframe; the nearest keypoints within ``search_radius_px`` compete by
   Hamming distance (``max_hamming``, Lowe ratio ``ratio``), the winner's measured depth must agree
   (``depth_tolerance_*``), each keypoint is matched once per pair, and a pair with fewer than
   ``min_pair_matches`` matches contributes none;
3. **joins matches into landmarks**, best match first (:mod:`~mp_slam_ros.backend.tracks`: a
   match that would give a landmark two keypoints of one keyframe is refused, the landmark keeps
   its better matches), each started at the mean of its observers' 3-D points; keyframes that see
   fewer than ``min_observations`` landmarks are left out (they move with the previous adjusted
   keyframe);
4. **bundle-adjusts** all keyframe poses and landmarks with the core
   (:func:`~mp_slam_ros.solvers.ba.bundle_adjust`: mixed precision by default), each observation a
   pixel plus its depth as a virtual-stereo coordinate (``virtual_baseline_m`` sets the depth's
   weight against the pixels, as in the VO's window), under a robust loss; the odometry edge
   between consecutive adjusted keyframes rides along as four virtual points both see exactly as
   the odometry says (``odometry_sigma_px``; not across lost tracking or a VO restart), so a
   segment that few landmarks join cannot swing; then once more without the observations that
   err beyond ``outlier_threshold_px`` (wrong matches). One keyframe per linked group is fixed
   (the gauge).

The map poses come in as the pose graph's (the PGO's) and go out refined; nothing is changed in
place. Measured on generated 180-s household runs in ``results/loop_closure/global_ba/``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from mp_slam_ros.backend.keyframe_store import StoredKeyframe
from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.backend.tracks import join_tracks
from mp_slam_ros.config import option
from mp_slam_ros.errors import ConfigError
from mp_slam_ros.geometry.camera import matrix_intrinsics, project
from mp_slam_ros.geometry.lie import se3_inverse
from mp_slam_ros.precision import Precision
from mp_slam_ros.solvers.ba import LinearSolverKind, ba_solver_options, bundle_adjust
from mp_slam_ros.solvers.ba_problem import BAProblem, BAState
from mp_slam_ros.solvers.robust import LossKind, RobustLoss
from mp_slam_ros.solvers.summary import Summary

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
#: set bits of every byte value (Hamming distance of ORB descriptors)
_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(axis=1).astype(np.int32)
#: keypoints a projected point is compared with (the nearest within the search radius)
_CANDIDATES = 4


@dataclass(frozen=True)
class GlobalBAConfig:
    """The global bundle adjustment over all keyframes (offline after the last keyframe, the node on
    ``~/refine_map``)."""

    enabled: bool = option(True, "mp-slam slam: bundle-adjust every keyframe after the last one (the node: on ~/refine_map)")
    neighbours: int = option(4, "following keyframes of the same session each keyframe is matched with", 0, 100)
    covisible_radius_m: float = option(5.0, "older keyframes whose camera is this close in the map are matched too (m)", 0.0, 100.0)
    covisible_angle_deg: float = option(60.0, "... if their optical axes differ by less than this (deg)", 0.0, 180.0)
    covisible_max: int = option(40, "older covisible keyframes matched per keyframe (the nearest)", 0, 1000)
    search_radius_px: float = option(10.0, "a projected point's match lies within this distance (px)", 0.1, 1000.0)
    max_hamming: int = option(50, "largest descriptor distance of a match (bits)", 0, 256)
    ratio: float = option(0.8, "best / second-best descriptor distance among the nearby keypoints", 0.01, 1.0)
    depth_tolerance_m: float = option(0.05, "a match's measured depth agrees with the projection within this ...", 0.0, 100.0)
    depth_tolerance_ratio: float = option(0.05, "... plus this share of the depth", 0.0, 10.0)
    min_pair_matches: int = option(10, "a pair with fewer matches contributes none (a few matches between two views are more likely chance than overlap)", 1, 100000)
    pixel_sigma_px: float = option(1.0, "keypoint noise (px)", 0.01, 100.0)
    virtual_baseline_m: float = option(0.8, "virtual stereo baseline of the depth measurements (m): their weight against the pixels", 0.001, 10.0)
    loss: LossKind = option(LossKind.CAUCHY, "robust loss: keypoint errors are heavy-tailed (a core of about 0.2 px, tails of pixels where a keypoint slid along an edge), so a loss that stops counting them early")
    loss_scale: float = option(0.6, "robust loss scale (whitened residual norm: px at pixel_sigma_px 1)", 0.01, 1000.0)
    precision: Precision = option(Precision.MIXED, "BA precision (fp64|fp32|fp16|mixed)")
    solver: str = option("iterative_schur", "linear solver: iterative_schur, cgnr or schur (fp64 direct reference)")
    max_iterations: int = option(30, "LM iterations (per pass)", 1, 1000)
    preconditioner_band: int = option(0, "iterative_schur: precondition with an incomplete Cholesky factor of the couplings between keyframes at most this many apart (0: the 6x6 diagonal blocks, Schur-Jacobi; at least the map's keyframe count: the whole reduced camera system)", 0, 100000)
    odometry_sigma_px: float = option(2.0, "noise (px) of the virtual points that carry each odometry edge between adjusted keyframes into the BA, so that a segment few landmarks join cannot swing (0: no odometry)", 0.0, 1000.0)
    odometry_max_sigma_m: float = option(0.05, "odometry edges less certain than this (translation sigma, m: lost tracking, VO restarts) are not carried", 1e-6, 1000.0)
    min_observations: int = option(15, "keyframes that see fewer landmarks are not adjusted but move with the previous adjusted keyframe (few observations cannot outvote a wrong match)", 1, 100000)
    outlier_threshold_px: float = option(3.0, "observations whose pixel or virtual-stereo coordinate errs more than this after the first pass are dropped, then solved again (px; 0: one pass)", 0.0, 1000.0)

    def validate(self, prefix: str = "") -> None:
        """Cross-field checks (the walker checks the bounds)."""
        solvers = [kind.value for kind in LinearSolverKind]
        if self.solver not in solvers:
            raise ConfigError(f"{prefix}solver", self.solver, f"must be one of {', '.join(solvers)}")


@dataclass
class GlobalBAResult:
    """The refined keyframe poses and what the adjustment ran on."""

    T_map_cam: FloatArray  # (N, 4, 4) refined poses of every keyframe
    T_map_cam_before: FloatArray  # (N, 4, 4) the poses it started from
    summary: Summary
    pairs: int  # keyframe pairs matched
    matches: int  # keypoint matches over all pairs
    landmarks: int
    observations: int
    refined: int  # keyframes in the adjustment (the others moved with a neighbour)
    fixed: int  # gauge keyframes (one per group linked by landmarks or odometry)
    association_s: float
    solve_s: float
    #: landmarks the last pass left erring beyond ``outlier_threshold_px`` in an observation: the
    #: summary's convergence is the cost's and does not cover them (0 when the threshold is 0)
    unsettled_landmarks: int = 0

    def as_dict(self) -> dict[str, object]:
        """JSON-ready counts, cost and timings."""
        s = self.summary
        return {
            "pairs": self.pairs, "matches": self.matches, "landmarks": self.landmarks,
            "observations": self.observations, "keyframes_refined": self.refined, "keyframes_fixed": self.fixed,
            "unsettled_landmarks": self.unsettled_landmarks,
            "termination": s.termination.value, "converged": s.converged, "initial_cost": s.initial_cost,
            "final_cost": s.final_cost, "precision": s.precision_used.value, "iterations": s.num_iterations,
            "association_s": round(self.association_s, 3), "solve_s": round(self.solve_s, 3),
        }


def refine_keyframes(keyframes: list[StoredKeyframe], graph: PoseGraph, config: GlobalBAConfig) -> GlobalBAResult | None:
    """Bundle-adjust ``keyframes``, the nodes of ``graph`` (its poses ``T_world_node``: their
    current map poses; its loop edges pair keyframes, its odometry edges hold segments together;
    see the module docstring); None when no keyframe sees ``min_observations`` landmarks that
    another such keyframe sees too."""
    started = time.perf_counter()
    T_before = np.asarray(graph.T_world_node, dtype=np.float64).reshape(-1, 4, 4)
    odometry = _odometry_links(graph, config.odometry_max_sigma_m)
    association = associate(keyframes, T_before, graph, config)
    if association is None:
        return None
    pairs, matched, landmarks = association
    association_s = time.perf_counter() - started
    options = ba_solver_options(config.precision, max_iterations=config.max_iterations)
    T_refined = T_before
    passes = 2 if config.outlier_threshold_px > 0.0 else 1
    for step in range(passes):
        problem, in_ba, fixed = _problem(keyframes, T_refined, landmarks, odometry, config)
        result = bundle_adjust(problem, options, solver=config.solver, preconditioner_band=config.preconditioner_band)
        T_refined = _with_refined(T_refined, result.state.T_world_cam, in_ba)
        solved = landmarks
        inliers = _inliers(landmarks, problem, result.state, config.outlier_threshold_px) if step + 1 < passes else None
        if inliers is None:
            break
        landmarks = _usable(inliers, len(keyframes), config.min_observations)
        if landmarks is None:
            break
    unsettled = _unsettled(solved, problem, result.state, config.outlier_threshold_px) if config.outlier_threshold_px > 0.0 else 0
    return GlobalBAResult(
        T_refined, T_before, result.summary, len(pairs), int(sum(len(m) for m in matched)), len(solved.points_map),
        len(solved.obs_keyframe), int(in_ba.sum()), int(fixed.sum()), association_s,
        time.perf_counter() - started - association_s, unsettled,
    )


def associate(
    keyframes: list[StoredKeyframe], T_map_cam: FloatArray, graph: PoseGraph, config: GlobalBAConfig,
) -> tuple[list[tuple[int, int]], list[IntArray], _Landmarks] | None:
    """Steps 1-3 of the module docstring at the map poses ``T_map_cam`` ``(N, 4, 4)``: the
    covisible pairs, each pair's matches (:func:`match_pair`) and the usable landmarks; None
    when no keyframe sees ``min_observations`` landmarks that another such keyframe sees too."""
    loops = np.stack([graph.edge_from, graph.edge_to], axis=1)[graph.is_loop]
    offsets = np.concatenate([[0], np.cumsum([len(k.keypoints_px) for k in keyframes])]).astype(np.int64)
    pairs = covisible_pairs(keyframes, T_map_cam, loops, config)
    trees = [cKDTree(np.asarray(k.keypoints_px, np.float64).reshape(-1, 2)) for k in keyframes]
    matched = [match_pair(keyframes[a], keyframes[b], trees[b], se3_inverse(T_map_cam[b]) @ T_map_cam[a], config) for a, b in pairs]
    a_rows = np.concatenate([offsets[a] + m[:, 0] for (a, _), m in zip(pairs, matched)] or [np.zeros(0, np.int64)])
    b_rows = np.concatenate([offsets[b] + m[:, 1] for (_, b), m in zip(pairs, matched)] or [np.zeros(0, np.int64)])
    distance = np.concatenate([m[:, 2] for m in matched] or [np.zeros(0, np.int64)])
    landmarks = _usable(_landmarks(keyframes, T_map_cam, offsets, a_rows, b_rows, distance), len(keyframes), config.min_observations)
    return None if landmarks is None else (pairs, matched, landmarks)


def covisible_pairs(keyframes: list[StoredKeyframe], T_map_cam: FloatArray, loops: IntArray, config: GlobalBAConfig) -> list[tuple[int, int]]:
    """Keyframe index pairs ``(older, newer)`` to match: session neighbours, the ends of each loop
    (``(L, 2)``) and covisible older keyframes by map pose."""
    sessions = np.array([k.session for k in keyframes])
    loops = np.sort(np.asarray(loops, np.int64).reshape(-1, 2), axis=1)
    pairs: set[tuple[int, int]] = {(int(a), int(b)) for a, b in loops if a != b}
    n = len(keyframes)
    for step in range(1, config.neighbours + 1):
        a = np.arange(n - step)
        same = sessions[a] == sessions[a + step]
        pairs.update(zip(a[same].tolist(), (a[same] + step).tolist()))
    if config.covisible_max and n > 1:
        centres, axes = T_map_cam[:, :3, 3], T_map_cam[:, :3, 2]
        tree = cKDTree(centres)
        min_cos = np.cos(np.radians(config.covisible_angle_deg))
        for b, near in enumerate(tree.query_ball_point(centres, config.covisible_radius_m)):
            older = np.array([a for a in near if a < b - config.neighbours or (a < b and sessions[a] != sessions[b])], np.int64)
            older = older[axes[older] @ axes[b] >= min_cos] if older.size else older
            order = np.argsort(np.linalg.norm(centres[older] - centres[b], axis=1), kind="stable")
            pairs.update((int(a), b) for a in older[order[: config.covisible_max]])
    return sorted(pairs)


def match_pair(a: StoredKeyframe, b: StoredKeyframe, tree_b: cKDTree, T_b_a: FloatArray, config: GlobalBAConfig) -> IntArray:
    """Feature index pairs and their descriptor distance ``(M, 3)`` ``[row in a, row in b, bits]``:
    ``a``'s 3-D points projected into ``b`` by ``T_b_a`` ``(4, 4)`` matched to the nearby keypoints
    of ``b`` (module docstring, step 2)."""
    points_a = np.asarray(a.points_cam, np.float64).reshape(-1, 3)
    rows = np.flatnonzero(np.isfinite(points_a).all(axis=1))
    points_b = points_a[rows] @ T_b_a[:3, :3].T + T_b_a[:3, 3]
    front = points_b[:, 2] > 1e-3
    rows, points_b = rows[front], points_b[front]
    uv = project(matrix_intrinsics(b.K), points_b)[0]
    count = min(_CANDIDATES, tree_b.n)
    if count == 0 or rows.size == 0:
        return np.zeros((0, 3), np.int64)
    _, near = tree_b.query(uv, k=count, distance_upper_bound=config.search_radius_px)
    near = near.reshape(len(rows), count)
    valid = near < tree_b.n
    safe = np.where(valid, near, 0)
    desc_b = np.asarray(b.descriptors, np.uint8)[safe]  # (M, k, D)
    desc_a = np.asarray(a.descriptors, np.uint8)[rows][:, None, :]
    distance = np.where(valid, _POPCOUNT[np.bitwise_xor(desc_a, desc_b)].sum(axis=2), 10**6)
    order = np.argsort(distance, axis=1, kind="stable")
    best = np.take_along_axis(distance, order[:, :1], axis=1)[:, 0]
    second = np.take_along_axis(distance, order[:, 1:2], axis=1)[:, 0] if count > 1 else np.full_like(best, 10**6)
    col = np.take_along_axis(safe, order[:, :1], axis=1)[:, 0]
    z_b = np.asarray(b.points_cam, np.float64).reshape(-1, 3)[col, 2]
    depth_ok = ~np.isfinite(z_b) | (np.abs(z_b - points_b[:, 2]) <= config.depth_tolerance_m + config.depth_tolerance_ratio * points_b[:, 2])
    ok = (best <= config.max_hamming) & (best <= config.ratio * second) & depth_ok
    matches = np.stack([rows[ok], col[ok], best[ok]], axis=1).astype(np.int64)
    matches = matches[np.lexsort((matches[:, 2], matches[:, 1]))]  # one match per keypoint of b: the closest
    first = np.concatenate([[True], matches[1:, 1] != matches[:-1, 1]]) if len(matches) else np.zeros(0, bool)
    return matches[first] if first.sum() >= config.min_pair_matches else np.zeros((0, 3), np.int64)


@dataclass
class _Landmarks:
    obs_keyframe: IntArray  # (M,)
    obs_landmark: IntArray  # (M,)
    obs_uv: FloatArray  # (M, 2)
    obs_depth: FloatArray  # (M,) NaN without depth
    points_map: FloatArray  # (L, 3)

    def subset(self, keep: NDArray[np.bool_]) -> _Landmarks | None:
        """The observations ``keep`` ``(M,)`` and the landmarks they still see; None if none."""
        if not keep.any():
            return None
        seen = np.zeros(len(self.points_map), bool)
        seen[self.obs_landmark[keep]] = True
        index = np.cumsum(seen) - 1
        return _Landmarks(self.obs_keyframe[keep], index[self.obs_landmark[keep]], self.obs_uv[keep], self.obs_depth[keep], self.points_map[seen])


def _landmarks(
    keyframes: list[StoredKeyframe], T_map_cam: FloatArray, offsets: IntArray, rows: IntArray, cols: IntArray, distance: IntArray,
) -> _Landmarks | None:
    """Landmarks from the matches (global feature rows ``rows`` ~ ``cols``, descriptor ``distance``
    ``(M,)``): tracks joined best match first, none twice in one keyframe
    (:func:`~mp_slam_ros.backend.tracks.join_tracks`), with depth in at least one keyframe."""
    if rows.size == 0:
        return None
    keyframe = np.repeat(np.arange(len(keyframes)), np.diff(offsets))
    label = join_tracks(keyframe, rows, cols, distance)
    _, inverse, size = np.unique(label, return_inverse=True, return_counts=True)
    feature = np.flatnonzero(size[inverse] >= 2)
    label, keyframe = label[feature], keyframe[feature]
    p_cam = np.concatenate([np.asarray(k.points_cam, np.float64).reshape(-1, 3) for k in keyframes])[feature]
    has_depth = np.isfinite(p_cam).all(axis=1)
    T = T_map_cam[keyframe]
    p_map = np.einsum("nij,nj->ni", T[:, :3, :3], np.nan_to_num(p_cam)) + T[:, :3, 3]
    landmarks, landmark = np.unique(label, return_inverse=True)
    sums = np.zeros((len(landmarks), 3))
    np.add.at(sums, landmark[has_depth], p_map[has_depth])
    counts = np.bincount(landmark[has_depth], minlength=len(landmarks))
    uv = np.concatenate([np.asarray(k.keypoints_px, np.float64).reshape(-1, 2) for k in keyframes])[feature]
    placed = _Landmarks(keyframe, landmark, uv, p_cam[:, 2], sums / np.maximum(counts, 1)[:, None])
    return placed.subset(counts[landmark] > 0)


def _usable(landmarks: _Landmarks | None, num_keyframes: int, min_observations: int) -> _Landmarks | None:
    """``landmarks`` without the keyframes that see fewer than ``min_observations`` of them (too
    few to place a keyframe against wrong matches: they move with a neighbour instead) and
    without the landmarks then seen by fewer than two keyframes."""
    if landmarks is None:
        return None
    keep = np.ones(len(landmarks.obs_keyframe), bool)
    while True:
        per_keyframe = np.bincount(landmarks.obs_keyframe[keep], minlength=num_keyframes)
        per_landmark = np.bincount(landmarks.obs_landmark[keep], minlength=len(landmarks.points_map))
        now = keep & (per_keyframe[landmarks.obs_keyframe] >= min_observations) & (per_landmark[landmarks.obs_landmark] >= 2)
        if np.array_equal(now, keep):
            return landmarks.subset(keep)
        keep = now


def _odometry_links(graph: PoseGraph, max_sigma_m: float) -> tuple[FloatArray, NDArray[np.bool_]]:
    """``T_node_next`` ``(N - 1, 4, 4)`` of the odometry edge from each node to the next and
    whether it is certain enough to hold the BA (translation sigma <= ``max_sigma_m``: not a gap
    of lost tracking or a VO restart)."""
    n = graph.num_nodes
    T_next, usable = np.tile(np.eye(4), (max(n - 1, 0), 1, 1)), np.zeros(max(n - 1, 0), bool)
    chain = np.flatnonzero(~graph.is_loop & (graph.edge_to == graph.edge_from + 1))
    if chain.size:
        covariance = np.linalg.pinv(graph.information[chain])
        sigma_m = np.sqrt(np.max(np.diagonal(covariance[:, :3, :3], axis1=1, axis2=2), axis=1))
        T_next[graph.edge_from[chain]] = graph.T_from_to[chain]
        usable[graph.edge_from[chain]] = sigma_m <= max_sigma_m
    return T_next, usable


#: the virtual points that carry an odometry edge into the BA, in the older camera (m): a
#: tetrahedron in front of it, so that their pixels and depths in both cameras fix the relative pose
_VIRTUAL_POINTS_CAM = np.array([[-0.5, -0.5, 1.5], [0.5, -0.5, 2.5], [-0.5, 0.5, 2.5], [0.5, 0.5, 1.5]])


def _problem(
    keyframes: list[StoredKeyframe], T_map_cam: FloatArray, landmarks: _Landmarks,
    odometry: tuple[FloatArray, NDArray[np.bool_]], config: GlobalBAConfig,
) -> tuple[BAProblem, NDArray[np.bool_], NDArray[np.bool_]]:
    """The BA problem over the keyframes that observe ``landmarks`` (their observations first, in
    order), plus the odometry between consecutive ones as virtual points; the mask of those
    keyframes and, among them, the gauge (the first keyframe of each linked group)."""
    in_ba = np.zeros(len(keyframes), bool)
    in_ba[landmarks.obs_keyframe] = True
    cam = np.cumsum(in_ba)[landmarks.obs_keyframe] - 1
    virtual = _virtual_odometry(T_map_cam, in_ba, odometry, config.odometry_sigma_px)
    obs_point = np.concatenate([landmarks.obs_landmark, len(landmarks.points_map) + virtual.obs_landmark])
    cam = np.concatenate([cam, np.cumsum(in_ba)[virtual.obs_keyframe] - 1])
    num_cams, num_points = int(in_ba.sum()), len(landmarks.points_map) + len(virtual.points_map)
    links = coo_matrix((np.ones(cam.size, np.int8), (cam, num_cams + obs_point)), shape=(num_cams + num_points,) * 2)
    _, group = connected_components(links, directed=False)
    _, first = np.unique(group[:num_cams], return_index=True)
    fixed = np.zeros(num_cams, bool)
    fixed[first] = True
    intrinsics = matrix_intrinsics(np.array([k.K for k, used in zip(keyframes, in_ba) if used]).reshape(-1, 3, 3))
    fx_baseline = intrinsics[:, 0] * config.virtual_baseline_m
    virtual_uv = project(intrinsics[cam[len(landmarks.obs_keyframe):]], virtual.points_cam)[0]
    uv = np.concatenate([landmarks.obs_uv, virtual_uv])
    depth = np.concatenate([landmarks.obs_depth, virtual.points_cam[:, 2]])
    with np.errstate(divide="ignore", invalid="ignore"):
        u_right = np.where(np.isfinite(depth) & (depth > 0), uv[:, 0] - fx_baseline[cam] / depth, np.nan)
    weight = np.concatenate([np.full(len(landmarks.obs_keyframe), 1.0 / config.pixel_sigma_px),
                             np.full(len(virtual.obs_keyframe), 1.0 / max(config.odometry_sigma_px, 1e-9))])
    problem = BAProblem(
        T_world_cam=T_map_cam[in_ba], points_world=np.concatenate([landmarks.points_map, virtual.points_map]),
        intrinsics=intrinsics,
        obs_cam=cam, obs_point=obs_point, obs_uv=uv, obs_u_right=u_right,
        fx_baseline=fx_baseline, obs_weight=weight, fixed_cams=fixed, loss=RobustLoss(config.loss, config.loss_scale),
    )
    return problem, in_ba, fixed


@dataclass
class _Virtual:
    obs_keyframe: IntArray  # (V,)
    obs_landmark: IntArray  # (V,) among the virtual points
    points_cam: FloatArray  # (V, 3) the point in the observing camera (exact measurement)
    points_map: FloatArray  # (P, 3) initial positions


def _virtual_odometry(T_map_cam: FloatArray, in_ba: NDArray[np.bool_], odometry: tuple[FloatArray, NDArray[np.bool_]], sigma_px: float) -> _Virtual:
    """Virtual points that make each pair of consecutive adjusted keyframes keep the relative pose
    their odometry measured (composed over the keyframes left out between them), for every pair
    whose odometry edges are all usable; none with ``sigma_px`` 0."""
    T_next, usable = odometry
    nodes = np.flatnonzero(in_ba)
    a_nodes: list[int] = []
    b_nodes: list[int] = []
    T_a_b: list[FloatArray] = []
    if sigma_px > 0.0:
        for a, b in zip(nodes[:-1], nodes[1:]):
            if usable[a:b].all():
                T = np.eye(4)
                for T_step in T_next[a:b]:
                    T = T @ T_step
                a_nodes.append(int(a)), b_nodes.append(int(b)), T_a_b.append(T)
    k = len(_VIRTUAL_POINTS_CAM)
    if not a_nodes:
        empty = np.zeros(0, np.int64)
        return _Virtual(empty, empty, np.zeros((0, 3)), np.zeros((0, 3)))
    T_b_a = se3_inverse(np.array(T_a_b))
    in_a = np.tile(_VIRTUAL_POINTS_CAM, (len(a_nodes), 1))
    in_b = (np.einsum("nij,kj->nki", T_b_a[:, :3, :3], _VIRTUAL_POINTS_CAM) + T_b_a[:, None, :3, 3]).reshape(-1, 3)
    T_a = T_map_cam[a_nodes]
    points_map = (np.einsum("nij,kj->nki", T_a[:, :3, :3], _VIRTUAL_POINTS_CAM) + T_a[:, None, :3, 3]).reshape(-1, 3)
    point = np.arange(len(points_map))
    return _Virtual(
        np.concatenate([np.repeat(a_nodes, k), np.repeat(b_nodes, k)]), np.concatenate([point, point]),
        np.concatenate([in_a, in_b]), points_map,
    )


def _inliers(landmarks: _Landmarks, problem: BAProblem, state: BAState, threshold_px: float) -> _Landmarks | None:
    """``landmarks`` (the observations of ``problem``, in order) at the solution ``state``, without
    the observations that err more than ``threshold_px`` there (:func:`_agrees`); None when none
    errs."""
    keep = _agrees(len(landmarks.obs_keyframe), problem, state, threshold_px)
    if keep.all():
        return None
    points = state.points_world[: len(landmarks.points_map)]
    at_solution = _Landmarks(landmarks.obs_keyframe, landmarks.obs_landmark, landmarks.obs_uv, landmarks.obs_depth, points)
    return at_solution.subset(keep)


def _unsettled(landmarks: _Landmarks, problem: BAProblem, state: BAState, threshold_px: float) -> int:
    """Landmarks that an observation disagrees with at the solution ``state`` by more than
    ``threshold_px`` (:func:`_agrees`), which the cost's convergence does not cover (a landmark
    whose depth disagrees with its pixels can drift far along its rays at a bounded cost)."""
    keep = _agrees(len(landmarks.obs_keyframe), problem, state, threshold_px)
    return int(np.unique(landmarks.obs_landmark[~keep]).size)


def _agrees(count: int, problem: BAProblem, state: BAState, threshold_px: float) -> NDArray[np.bool_]:
    """Whether each of the first ``count`` observations of ``problem`` (the landmarks'; the virtual
    odometry points come after) errs at most ``threshold_px`` at ``state`` in its pixel and its
    virtual-stereo coordinate, in front of the camera."""
    real = slice(0, count)
    obs_cam, obs_point = problem.obs_cam[real], problem.obs_point[real]
    T_cam_world = se3_inverse(state.T_world_cam)[obs_cam]
    p_cam = np.einsum("nij,nj->ni", T_cam_world[:, :3, :3], state.points_world[obs_point]) + T_cam_world[:, :3, 3]
    uv = project(problem.intrinsics[obs_cam], p_cam)[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        u_right = uv[:, 0] - problem.fx_baseline[obs_cam] / p_cam[:, 2]
    error = np.abs(uv - problem.obs_uv[real]).max(axis=1)
    error = np.where(np.isfinite(problem.obs_u_right[real]), np.maximum(error, np.abs(u_right - problem.obs_u_right[real])), error)
    return (p_cam[:, 2] > 0.0) & (error <= threshold_px)


def _with_refined(T_map_cam: FloatArray, T_adjusted: FloatArray, in_ba: NDArray[np.bool_]) -> FloatArray:
    """``T_map_cam`` with the adjusted poses of the ``in_ba`` keyframes; the others move rigidly
    with the nearest earlier adjusted one (the first ones, before any, with the first adjusted)."""
    refined = T_map_cam.copy()
    refined[in_ba] = T_adjusted
    done = np.flatnonzero(in_ba)
    for node in np.flatnonzero(~in_ba):
        earlier = done[done < node]
        ref = earlier[-1] if earlier.size else done[0]
        refined[node] = refined[ref] @ se3_inverse(T_map_cam[ref]) @ T_map_cam[node]
    return refined
