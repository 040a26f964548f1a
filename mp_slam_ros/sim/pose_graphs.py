"""Seeded synthetic pose graphs with loop closures (2-D and 3-D) for tests and benchmarks.

Three worlds, each a ground-truth trajectory plus odometry and loop-closure edges:

* :func:`sphere_graph` (3-D): rings of poses on a sphere, each pose closing a loop to the pose
  below it on the previous ring (the shape of the classic ``sphere2500`` data set);
* :func:`grid_graph` (2-D or 3-D): a Manhattan random walk on a unit grid, closing loops when a
  cell is revisited (the shape of ``M3500``);
* :func:`household_graph` (2-D or 3-D): a robot touring a corridor and the rooms off it again
  and again, closing loops to earlier poses nearby with a similar heading, as place recognition
  does (the shape of a household robot's graph: bounded area, many revisits).

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
    real robot whose odometry covariance does not know its calibration error.
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

    def __post_init__(self) -> None:
        for field in ("translation_m", "rotation_rad", "loop_translation_m", "loop_rotation_rad"):
            value = getattr(self, field)
            if value is not None and not value > 0.0:
                raise ConfigError(f"noise.{field}", value, "must be a positive standard deviation")
        if not self.odometry_scale_bias > -1.0:
            raise ConfigError("noise.odometry_scale_bias", self.odometry_scale_bias, "must be > -1")

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


def _tangent_sigma(k: int, translation: float, rotation: float) -> np.ndarray:
    """Per-coordinate sigmas ``(k,)`` of a tangent vector ``[translation, rotation]``."""
    d = 3 if k == 6 else 2
    return np.r_[np.full(d, translation), np.full(k - d, rotation)]


def _correlation(k: int, correlated: bool, rng: np.random.Generator) -> np.ndarray:
    """Correlation matrix ``(k, k)`` of tangent noise: identity, or a random full one."""
    if not correlated:
        return np.eye(k)
    factor = rng.uniform(-1.0, 1.0, (k, k))
    correlation = factor @ factor.T + k * np.eye(k)
    scale = 1.0 / np.sqrt(np.diag(correlation))
    return correlation * scale[:, None] * scale[None, :]


def _covariance(correlation: np.ndarray, translation: float, rotation: float) -> np.ndarray:
    """Tangent covariance ``(k, k)`` of ``[translation, rotation]`` sigmas with ``correlation``."""
    sigma = _tangent_sigma(correlation.shape[0], translation, rotation)
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
    covariance = _covariance(correlation, noise.translation_m, noise.rotation_rad)
    loop_covariance = _covariance(correlation, *noise.loop_sigmas)
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
        sigma = _tangent_sigma(k, noise.initial_translation_m, noise.initial_rotation_rad)
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
    initial: str = "odometry", loop_probability: float = 0.5,
) -> SyntheticPoseGraph:
    """A Manhattan random walk (1 m steps, 90 degree turns) in a square of ``~sqrt(N)/2`` cells;
    a revisited cell closes a loop to a random earlier visit with ``loop_probability``."""
    rng = np.random.default_rng(seed)
    half = max(2, int(np.sqrt(num_poses) / 4))
    directions = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])
    cells, heading = np.zeros((num_poses, 2), dtype=np.int64), np.zeros(num_poses, dtype=np.int64)
    for k in range(1, num_poses):  # a random walk: sequential by nature
        turn = rng.choice([0, 1, -1], p=[0.6, 0.2, 0.2])
        direction = (heading[k - 1] + turn) % 4
        while np.any(np.abs(cells[k - 1] + directions[direction]) > half):
            direction = (direction + 1) % 4
        heading[k], cells[k] = direction, cells[k - 1] + directions[direction]
    loops = _revisit_loops(cells.astype(np.float64), heading * (np.pi / 2), 0.1, loop_probability, rng)
    T = _planar_poses(cells.astype(np.float64), heading * (np.pi / 2), dim)
    return build_problem(T, loops, noise or GraphNoise(), rng, initial, f"grid{dim}d{num_poses}")


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
