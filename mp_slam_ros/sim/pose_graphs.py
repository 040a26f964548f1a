"""Seeded synthetic pose graphs with loop closures (2-D and 3-D) for tests and benchmarks.

Three worlds, each a ground-truth trajectory plus odometry and loop-closure edges:

* :func:`sphere_graph` (3-D): rings of poses on a sphere, each pose closing a loop to the pose
  below it on the previous ring (the shape of the classic ``sphere2500`` data set);
* :func:`grid_graph` (2-D or 3-D): a Manhattan random walk on a unit grid, closing loops when a
  cell is revisited (the shape of ``M3500``);
* :func:`household_graph` (2-D or 3-D): a robot touring a corridor and the rooms off it again
  and again, closing loops to earlier poses nearby with a similar heading, as place recognition
  does (the shape of a household robot's graph: bounded area, many revisits);
* :func:`city_graph` (2-D): driving a Manhattan street grid (turns only at intersections), a
  loop closure at nearly every revisited street position, ``city10000``-like noise and size;
* :func:`garage_graph` (3-D): a multi-level drive up and down the ramps of a parking garage with
  strongly anisotropic information (the shape of ``parking-garage``), optionally with some
  indefinite information matrices (as in the public ``cubicle`` graph);
* :func:`tiny_graph` (2-D or 3-D): a grid walk of a few to a hundred poses in a 3x3-cell box.

Every measurement is the true relative pose perturbed by Gaussian tangent noise of covariance
``Sigma`` (one for odometry edges, optionally a smaller one for loop closures, which in a real
robot come from visual geometric verification rather than wheels); each edge's information is the
inverse of the covariance its noise was drawn from (full matrices when ``correlated=True``).
Odometry may also carry a systematic error (scale, yaw per step) that the information does not
model, as with a real robot's uncalibrated wheels. The initial estimate is the dead-reckoning chain of the noisy odometry (``initial="odometry"``) or
the ground truth perturbed per pose (``initial="perturbed"``, the situation of an incremental
SLAM system). Everything is reproducible from ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from mp_slam_ros.backend.pose_graph import PoseGraph
from mp_slam_ros.errors import ConfigError
from mp_slam_ros.geometry import lie


@dataclass(frozen=True)
class GraphNoise:
    """Standard deviations of the measurement noise (per edge, tangent space) and odometry bias.

    ``translation_m``/``rotation_rad``: odometry noise, and loop-closure noise unless
    ``loop_translation_m``/``loop_rotation_rad`` are given (``None``: same as odometry);
    ``correlated``: draw a full (not diagonal) correlation, shared by both edge kinds, so
    information matrices are full; ``initial_*``: per-pose perturbation used by
    ``initial="perturbed"``. ``odometry_scale_bias``: relative error of every odometry
    translation (0.01: the wheels report 1 % more distance than driven);
    ``odometry_yaw_bias_rad``: yaw added to every odometry edge (a curvature bias, as from
    unequal wheel diameters). The biases are systematic and NOT in the edge information, as for a
    real robot whose odometry covariance does not know its calibration error. ``axis_scale``:
    per-coordinate factors ``[translation..., rotation...]`` (3 in 2-D, 6 in 3-D) on both edge
    kinds' sigmas, for anisotropic noise (e.g. a precise height, a loose heading).
    """

    translation_m: float = 0.05
    rotation_rad: float = 0.01
    correlated: bool = False
    initial_translation_m: float = 0.3
    initial_rotation_rad: float = 0.05
    loop_translation_m: float | None = None
    loop_rotation_rad: float | None = None
    odometry_scale_bias: float = 0.0
    odometry_yaw_bias_rad: float = 0.0
    axis_scale: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for field in ("translation_m", "rotation_rad", "loop_translation_m", "loop_rotation_rad"):
            value = getattr(self, field)
            if value is not None and not value > 0.0:
                raise ConfigError(f"noise.{field}", value, "must be a positive standard deviation")
        if not self.odometry_scale_bias > -1.0:
            raise ConfigError("noise.odometry_scale_bias", self.odometry_scale_bias, "must be > -1")
        if self.axis_scale is not None and not (len(self.axis_scale) in (3, 6) and min(self.axis_scale) > 0.0):
            raise ConfigError("noise.axis_scale", self.axis_scale, "must be 3 (2-D) or 6 (3-D) positive factors")

    def sigmas(self, k: int, loop: bool) -> np.ndarray:
        """Per-coordinate sigmas ``(k,)`` of odometry (or loop-closure) tangent noise."""
        translation, rotation = self.loop_sigmas if loop else (self.translation_m, self.rotation_rad)
        d = 3 if k == 6 else 2
        sigma = np.r_[np.full(d, translation), np.full(k - d, rotation)]
        if self.axis_scale is None:
            return sigma
        if len(self.axis_scale) != k:
            raise ConfigError("noise.axis_scale", self.axis_scale, f"needs {k} factors for this graph")
        return sigma * np.asarray(self.axis_scale)

    @property
    def loop_sigmas(self) -> tuple[float, float]:
        """(translation [m], rotation [rad]) sigmas of loop-closure edges."""
        translation = self.translation_m if self.loop_translation_m is None else self.loop_translation_m
        rotation = self.rotation_rad if self.loop_rotation_rad is None else self.loop_rotation_rad
        return translation, rotation


@dataclass
class SyntheticPoseGraph:
    """A generated problem: the graph (initial estimate as its poses) and the true poses."""

    graph: PoseGraph
    T_world_node_true: np.ndarray
    name: str


def _correlation(k: int, correlated: bool, rng: np.random.Generator) -> np.ndarray:
    """Correlation matrix ``(k, k)`` of tangent noise: identity, or a random full one."""
    if not correlated:
        return np.eye(k)
    factor = rng.uniform(-1.0, 1.0, (k, k))
    correlation = factor @ factor.T + k * np.eye(k)
    scale = 1.0 / np.sqrt(np.diag(correlation))
    return correlation * scale[:, None] * scale[None, :]


def _covariance(correlation: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Tangent covariance ``(k, k)`` of per-coordinate ``sigma`` ``(k,)`` with ``correlation``."""
    return correlation * sigma[:, None] * sigma[None, :]


def _with_odometry_bias(T_from_to: np.ndarray, noise: GraphNoise) -> np.ndarray:
    """Odometry measurements ``(E, d+1, d+1)`` with the systematic errors of ``noise`` applied:
    translations scaled by ``1 + odometry_scale_bias``, then a yaw of ``odometry_yaw_bias_rad``
    about the body's vertical axis appended. Returned unchanged when both are zero."""
    if noise.odometry_scale_bias == 0.0 and noise.odometry_yaw_bias_rad == 0.0:
        return T_from_to
    d = T_from_to.shape[-1] - 1
    biased = T_from_to.copy()
    biased[:, :d, d] *= 1.0 + noise.odometry_scale_bias
    yaw_xi = np.zeros((1, 6 if d == 3 else 3))
    yaw_xi[0, -1] = noise.odometry_yaw_bias_rad
    return biased @ _exp(yaw_xi)


def _exp(xi: np.ndarray) -> np.ndarray:
    return lie.se3_exp(xi) if xi.shape[1] == 6 else lie.se2_exp(xi)


def _inverse(T: np.ndarray) -> np.ndarray:
    return lie.se3_inverse(T) if T.shape[-1] == 4 else lie.se2_inverse(T)


def build_problem(
    T_world_true: np.ndarray,
    loops: np.ndarray,
    noise: GraphNoise,
    rng: np.random.Generator,
    initial: str = "odometry",
    name: str = "graph",
) -> SyntheticPoseGraph:
    """Odometry edges ``k -> k+1`` plus ``loops`` ``(L, 2)`` (older, newer) index pairs, noisy.

    ``T_world_true`` ``(N, d+1, d+1)`` are the true poses (node ids are ``0..N-1``).
    """
    if initial not in ("odometry", "perturbed"):
        raise ConfigError("initial", initial, "must be 'odometry' or 'perturbed'")
    n = T_world_true.shape[0]
    k = 6 if T_world_true.shape[-1] == 4 else 3
    odometry = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)
    pairs = np.concatenate([odometry, np.asarray(loops, dtype=np.int64).reshape(-1, 2)])
    correlation = _correlation(k, noise.correlated, rng)
    covariance = _covariance(correlation, noise.sigmas(k, loop=False))
    loop_covariance = _covariance(correlation, noise.sigmas(k, loop=True))
    standard_xi = rng.standard_normal((pairs.shape[0], k))
    noise_xi = standard_xi @ np.linalg.cholesky(covariance).T
    if not np.array_equal(loop_covariance, covariance):
        noise_xi[n - 1:] = standard_xi[n - 1:] @ np.linalg.cholesky(loop_covariance).T
    T_true_rel = _inverse(T_world_true[pairs[:, 0]]) @ T_world_true[pairs[:, 1]]
    T_from_to = T_true_rel @ _exp(noise_xi)
    T_from_to[: n - 1] = _with_odometry_bias(T_from_to[: n - 1], noise)
    information = np.empty((pairs.shape[0], k, k))
    information[: n - 1] = np.linalg.inv(covariance)
    information[n - 1:] = np.linalg.inv(loop_covariance)
    if initial == "odometry":
        T_init = np.empty_like(T_world_true)
        T_init[0] = T_world_true[0]
        for index in range(n - 1):  # a chained product: sequential by nature
            T_init[index + 1] = T_init[index] @ T_from_to[index]
    else:
        sigma = GraphNoise(noise.initial_translation_m, noise.initial_rotation_rad).sigmas(k, loop=False)
        T_init = T_world_true @ _exp(rng.standard_normal((n, k)) * sigma)
        T_init[0] = T_world_true[0]
    graph = PoseGraph(
        node_ids=np.arange(n),
        T_world_node=T_init,
        edge_from=pairs[:, 0],
        edge_to=pairs[:, 1],
        T_from_to=T_from_to,
        information=information,
        is_loop=np.arange(pairs.shape[0]) >= n - 1,
    )
    return SyntheticPoseGraph(graph, T_world_true, name)


def _planar_poses(xy: np.ndarray, yaw: np.ndarray, dim: int) -> np.ndarray:
    """True poses from planar positions ``(N, 2)`` and headings ``(N,)`` (z = 0 in 3-D)."""
    if dim == 2:
        return lie.se2_from_xytheta(np.column_stack([xy, yaw]))
    xi = np.zeros((xy.shape[0], 6))
    xi[:, 5] = yaw
    T = lie.se3_exp(xi)
    T[:, :2, 3] = xy
    return T


def sphere_graph(
    num_poses: int, seed: int = 0, noise: GraphNoise | None = None, initial: str = "odometry",
    radius_m: float = 50.0,
) -> SyntheticPoseGraph:
    """3-D poses on ``sqrt(N)`` rings of a sphere; each closes a loop to the ring below."""
    rng = np.random.default_rng(seed)
    rings = max(2, int(round(np.sqrt(num_poses))))
    per_ring = int(np.ceil(num_poses / rings))
    index = np.arange(num_poses)
    ring, slot = index // per_ring, index % per_ring
    latitude = np.deg2rad(-80.0 + 160.0 * ring / max(rings - 1, 1))
    longitude = 2.0 * np.pi * slot / per_ring
    up = np.column_stack([np.cos(latitude) * np.cos(longitude), np.cos(latitude) * np.sin(longitude), np.sin(latitude)])
    forward = np.column_stack([-np.sin(longitude), np.cos(longitude), np.zeros(num_poses)])
    T = np.zeros((num_poses, 4, 4))
    T[:, :3, 0] = forward
    T[:, :3, 1] = np.cross(up, forward)
    T[:, :3, 2] = up
    T[:, :3, 3] = radius_m * up
    T[:, 3, 3] = 1.0
    below = index - per_ring
    loops = np.column_stack([below, index])[(below >= 0) & (below != index - 1)]
    return build_problem(T, loops, noise or GraphNoise(), rng, initial, f"sphere{num_poses}")


def grid_graph(
    num_poses: int, dim: int = 2, seed: int = 0, noise: GraphNoise | None = None,
    initial: str = "odometry", loop_probability: float = 0.5, half_extent_cells: int | None = None,
    min_loop_gap: int = 30,
) -> SyntheticPoseGraph:
    """A Manhattan random walk (1 m steps, 90 degree turns) in a square of ``half_extent_cells``
    (default ``~sqrt(N)/4``) cells either side of the start; a cell revisited at least
    ``min_loop_gap`` poses later closes a loop to a random earlier visit with ``loop_probability``."""
    rng = np.random.default_rng(seed)
    half = half_extent_cells if half_extent_cells is not None else max(2, int(np.sqrt(num_poses) / 4))
    cells, heading = _street_walk(num_poses, half, 1, rng)
    loops = _revisit_loops(cells, heading * (np.pi / 2), 0.1, loop_probability, rng, min_gap=min_loop_gap)
    T = _planar_poses(cells, heading * (np.pi / 2), dim)
    return build_problem(T, loops, noise or GraphNoise(), rng, initial, f"grid{dim}d{num_poses}")


def tiny_graph(num_poses: int, dim: int = 2, seed: int = 0, noise: GraphNoise | None = None) -> SyntheticPoseGraph:
    """Laps of a 2 m square (1 m steps, 8 poses a lap) from dead reckoning: ``num_poses`` of 9 to
    100 as the small public graphs; 80 % of the poses after the first lap close a loop to a
    random earlier visit of the same spot."""
    rng = np.random.default_rng(seed)
    lap_xy = np.array([[0, 0], [1, 0], [2, 0], [2, 1], [2, 2], [1, 2], [0, 2], [0, 1]], dtype=np.float64)
    slot = np.arange(num_poses) % len(lap_xy)
    xy = lap_xy[slot]
    yaw = np.unwrap(np.floor(slot / 2) * (np.pi / 2))
    loops = _revisit_loops(xy, yaw, 0.1, 0.8, rng, min_gap=len(lap_xy))
    return build_problem(_planar_poses(xy, yaw, dim), loops, noise or GraphNoise(), rng, "odometry",
                         f"tiny{dim}d{num_poses}")


#: City odometry noise: from dead reckoning over 10,000 poses the chi2 at start is 7.2e8, as the
#: public ``city10000`` graph's (its files claim information diag(50, 50, 100), i.e. 0.14 m / 0.1 rad:
#: drawn at those sigmas the start is 6e9 and LM from odometry stops in a local minimum).
CITY_NOISE = GraphNoise(translation_m=0.1, rotation_rad=0.01)


def city_graph(
    num_poses: int = 10000, seed: int = 0, noise: GraphNoise | None = None, half_extent_m: int = 50,
    block_m: int = 10, loop_probability: float = 0.9,
) -> SyntheticPoseGraph:
    """Driving a Manhattan street grid (``block_m`` blocks, ``half_extent_m`` either side of the
    start, 1 m steps, turns only at intersections) from dead reckoning (``city10000``-like:
    ``CITY_NOISE``); a pose closes a loop with ``loop_probability`` to a random earlier pose at
    the same street position, in any heading, at least 10 poses older."""
    if half_extent_m % block_m:
        raise ConfigError("half_extent_m", half_extent_m, f"must be a multiple of block_m={block_m}")
    rng = np.random.default_rng(seed)
    cells, heading = _street_walk(num_poses, half_extent_m, block_m, rng)
    yaw = heading * (np.pi / 2)
    loops = _revisit_loops(cells, yaw, 0.1, loop_probability, rng, min_gap=10, max_heading_rad=np.pi)
    T = _planar_poses(cells, yaw, 2)
    return build_problem(T, loops, noise or CITY_NOISE, rng, "odometry", f"city2d{num_poses}")


def _street_walk(num_poses: int, half: int, block: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cells ``(N, 2)`` float64 and headings ``(N,)`` (multiples of 90 degrees) of a walk on the
    streets of a grid of ``block``-cell blocks within ``half`` cells of the origin: at an
    intersection it goes straight (60 %) or turns (20 % each way), turning further at the edge."""
    directions = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])
    cells, heading = np.zeros((num_poses, 2), dtype=np.int64), np.zeros(num_poses, dtype=np.int64)
    for k in range(1, num_poses):  # a random walk: sequential by nature
        direction = heading[k - 1]
        if not np.any(cells[k - 1] % block):  # an intersection
            direction = (direction + rng.choice([0, 1, -1], p=[0.6, 0.2, 0.2])) % 4
            while np.any(np.abs(cells[k - 1] + directions[direction]) > half):
                direction = (direction + 1) % 4
        heading[k], cells[k] = direction, cells[k - 1] + directions[direction]
    return cells.astype(np.float64), heading.astype(np.float64)


def household_graph(
    num_poses: int, dim: int = 3, seed: int = 0, noise: GraphNoise | None = None,
    initial: str = "odometry", loop_probability: float = 0.3, step_m: float = 0.3,
) -> SyntheticPoseGraph:
    """Repeated tours of a corridor (12 m) with six 4 m rooms off it; poses every ``step_m``.

    Each tour visits a random subset of rooms (corridor -> door -> one or two laps -> door)
    with a little lateral jitter; a pose closes a loop with ``loop_probability`` to an earlier
    pose within 0.5 m and 30 degrees heading that is at least 30 poses older.
    """
    rng = np.random.default_rng(seed)
    xy = _household_path(num_poses, step_m, rng)
    delta = np.diff(xy, axis=0, append=xy[-1:] + (xy[-1:] - xy[-2:-1]))
    yaw = np.unwrap(np.arctan2(delta[:, 1], delta[:, 0]))
    loops = _revisit_loops(xy, yaw, 0.5, loop_probability, rng)
    T = _planar_poses(xy, yaw, dim)
    return build_problem(T, loops, noise or GraphNoise(), rng, initial, f"household{dim}d{num_poses}")


#: Noise of a ``parking-garage``-like graph: odometry 0.1 m / 1e-3 rad sigmas with a 10x more
#: precise height, roll and pitch (per-axis information ratios of 100; rotation information 1e4
#: to 1e6 x translation information), loop closures (scan matching) 30x more precise than the
#: odometry. That mix is what makes the static incomplete Cholesky weak: with it the solver of
#: issue 9's time (before the fixes) ran 7 of 13 LM iterations at the 500-iteration CG cap, 20x
#: GTSAM's time; with loops as noisy as odometry it needs 6 iterations and a few CG steps.
GARAGE_NOISE = GraphNoise(translation_m=0.1, rotation_rad=1e-3, loop_translation_m=0.003, loop_rotation_rad=3e-5,
                          axis_scale=(1.0, 1.0, 0.1, 0.1, 0.1, 1.0))


def garage_graph(
    num_poses: int = 1600, seed: int = 0, noise: GraphNoise | None = None, levels: int = 4,
    indefinite_fraction: float = 0.0, indefinite_ratio: float = 0.002,
) -> SyntheticPoseGraph:
    """A drive up and down the ramps of a ``levels``-level parking garage (40 m x 20 m decks,
    3 m apart, poses every metre, two laps per deck, up and back down the same way) from dead
    reckoning with ``GARAGE_NOISE``; each revisit closes a loop to an earlier pose within 1 m
    (any heading, at least 30 poses older). ``indefinite_fraction`` of the edges then get an
    indefinite information matrix (see :func:`make_indefinite`)."""
    rng = np.random.default_rng(seed)
    xyz = _garage_path(num_poses, levels)
    delta = np.diff(xyz, axis=0, append=xyz[-1:] + (xyz[-1:] - xyz[-2:-1]))
    yaw = np.unwrap(np.arctan2(delta[:, 1], delta[:, 0]))
    pitch = -np.arctan2(delta[:, 2], np.linalg.norm(delta[:, :2], axis=1))
    T = np.tile(np.eye(4), (num_poses, 1, 1))
    T[:, :3, :3] = lie.so3_exp(np.column_stack([0 * yaw, 0 * yaw, yaw])) @ lie.so3_exp(
        np.column_stack([0 * pitch, pitch, 0 * pitch]))
    T[:, :3, 3] = xyz
    loops = _revisit_loops(xyz, yaw, 1.0, 1.0, rng, max_heading_rad=np.pi)
    problem = build_problem(T, loops, noise or GARAGE_NOISE, rng, "odometry", f"garage3d{num_poses}")
    if indefinite_fraction > 0.0:
        problem.graph.information = make_indefinite(problem.graph.information, indefinite_fraction, rng,
                                                     indefinite_ratio)
        problem.name += "-indefinite"
    return problem


def make_indefinite(
    information: np.ndarray, fraction: float, rng: np.random.Generator, ratio: float = 0.002,
) -> np.ndarray:
    """A copy of ``information`` ``(E, k, k)`` in which a random ``fraction`` of the edges have
    their smallest eigenvalue replaced by ``-ratio`` x their largest (indefinite, as some edges of
    the public ``cubicle`` graph, smallest eigenvalue -1.6e5)."""
    if not 0.0 <= fraction <= 1.0:
        raise ConfigError("indefinite_fraction", fraction, "must be in [0, 1]")
    if not ratio > 0.0:
        raise ConfigError("indefinite_ratio", ratio, "must be positive")
    chosen = np.flatnonzero(rng.random(information.shape[0]) < fraction)
    result = information.copy()
    eigenvalues, eigenvectors = np.linalg.eigh(information[chosen])
    eigenvalues[:, 0] = -ratio * eigenvalues[:, -1]
    indefinite = (eigenvectors * eigenvalues[:, None, :]) @ np.swapaxes(eigenvectors, 1, 2)
    result[chosen] = 0.5 * (indefinite + np.swapaxes(indefinite, 1, 2))
    return result


def _garage_path(num_poses: int, levels: int, width_m: float = 40.0, depth_m: float = 20.0,
                 height_m: float = 3.0) -> np.ndarray:
    """Positions ``(num_poses, 3)`` 1 m apart: round trips up and down the decks, the ramp being
    the first side of each deck's lap (rising from the deck below)."""
    corners = np.array([[width_m, 0.0], [width_m, depth_m], [0.0, depth_m], [0.0, 0.0]])
    up = [np.zeros(3)]
    for level in range(levels):
        for _ in range(2):
            up += [np.r_[corner, level * height_m] for corner in corners]
    down = [point.copy() for point in up[::-1][1:]]
    waypoints = up + down
    while len(waypoints) < 4 * num_poses:  # repeat round trips until long enough (> 1 m per side)
        waypoints += (up + down)[1:]
    points = np.asarray(waypoints)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))]
    samples = np.arange(num_poses, dtype=np.float64)
    return np.column_stack([np.interp(samples, arc, points[:, axis]) for axis in range(3)])


_ROOM_CENTERS_M = np.array([[2.0, 3.5], [6.0, 3.5], [10.0, 3.5], [2.0, -3.5], [6.0, -3.5], [10.0, -3.5]])


def _household_path(num_poses: int, step_m: float, rng: np.random.Generator) -> np.ndarray:
    """Waypoints of repeated tours, resampled to ``num_poses`` positions ``step_m`` apart."""
    waypoints = [np.zeros(2)]
    length = 0.0
    while length < num_poses * step_m * 1.05:
        for room in rng.permutation(len(_ROOM_CENTERS_M))[: rng.integers(2, 6)]:
            center = _ROOM_CENTERS_M[room]
            side = np.sign(center[1])
            door = np.array([center[0], 0.0]) + rng.uniform(-0.2, 0.2, 2)
            half = rng.uniform(1.0, 1.4)
            lap = center + half * np.array([[-1, -side], [-1, side], [1, side], [1, -side]])
            laps = np.concatenate([lap] * int(rng.integers(1, 3)))  # a room is covered once or twice
            route = [door, np.array([center[0], side * 1.5]), *laps, np.array([center[0], side * 1.5]), door]
            for point in route:
                length += float(np.linalg.norm(point - waypoints[-1]))
                waypoints.append(point)
        waypoints.append(rng.uniform(-0.2, 0.2, 2))
        length += float(np.linalg.norm(waypoints[-1] - waypoints[-2]))
    points = np.asarray(waypoints)
    arc = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(points, axis=0), axis=1))]
    samples = np.arange(num_poses) * step_m
    return np.column_stack([np.interp(samples, arc, points[:, 0]), np.interp(samples, arc, points[:, 1])])


def _revisit_loops(
    xy: np.ndarray, yaw: np.ndarray, radius_m: float, probability: float, rng: np.random.Generator,
    min_gap: int = 30, max_heading_rad: float = np.deg2rad(30.0),
) -> np.ndarray:
    """``(L, 2)`` (older, newer) pairs: each pose, with ``probability``, to one random earlier
    pose within ``radius_m`` and ``max_heading_rad`` that is at least ``min_gap`` poses older."""
    neighbours = cKDTree(xy).query_ball_point(xy, radius_m)
    chosen = np.flatnonzero(rng.random(xy.shape[0]) < probability)
    loops = []
    for newer in chosen.tolist():
        older = np.asarray(neighbours[newer], dtype=np.int64)
        heading_gap = np.abs(np.angle(np.exp(1j * (yaw[older] - yaw[newer]))))
        older = older[(older <= newer - min_gap) & (heading_gap <= max_heading_rad)]
        if older.size:
            loops.append((int(rng.choice(older)), newer))
    return np.asarray(loops, dtype=np.int64).reshape(-1, 2)
