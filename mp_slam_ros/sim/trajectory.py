"""Differential-drive trajectory through the house: room tours with loops, on a bumpy floor.

Planning: an occupancy grid of the floor (rooms and door passages minus furniture), obstacles
inflated by the robot radius, shortest paths by Dijkstra (scipy.sparse.csgraph) with a cost that
prefers clearance. Control: pure pursuit with speed, yaw-rate and acceleration limits, integrated
at ``SIM_RATE_HZ``. Floor bumps add small height, pitch and roll (smooth fields of position).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import gaussian_filter1d
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra
from scipy.spatial.transform import Rotation

from mp_slam_ros.errors import ProblemError
from mp_slam_ros.sim.config import RobotConfig
from mp_slam_ros.sim.house import House

SIM_RATE_HZ = 200.0
GRID_M = 0.05
_LOOKAHEAD_M = 0.3
_TURN_IN_PLACE_RAD = 0.7
_CLEARANCE_MARGIN_M = 0.12

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Trajectory:
    """Base poses sampled at ``SIM_RATE_HZ`` from t = 0 (seconds since the first frame)."""

    t_s: FloatArray
    x_m: FloatArray
    y_m: FloatArray
    yaw_rad: FloatArray  # unwrapped
    v_mps: FloatArray  # forward speed
    omega_rps: FloatArray  # yaw rate
    z_m: FloatArray  # floor bump height
    roll_rad: FloatArray
    pitch_rad: FloatArray

    def T_world_base(self, times_s: FloatArray) -> FloatArray:
        """Poses ``(N, 4, 4)`` of base_link in the world at ``times_s`` (linear interpolation)."""
        times_s = np.atleast_1d(np.asarray(times_s, np.float64))
        get = lambda values: np.interp(times_s, self.t_s, values)  # noqa: E731
        T = np.tile(np.eye(4), (times_s.size, 1, 1))
        T[:, :3, :3] = Rotation.from_euler("ZYX", np.stack([get(self.yaw_rad), get(self.pitch_rad), get(self.roll_rad)], 1)).as_matrix()
        T[:, :3, 3] = np.stack([get(self.x_m), get(self.y_m), get(self.z_m)], 1)
        return T

    def planar(self, times_s: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
        """``x, y, yaw, v, omega`` at ``times_s`` (linear interpolation)."""
        times_s = np.atleast_1d(np.asarray(times_s, np.float64))
        return tuple(np.interp(times_s, self.t_s, a) for a in (self.x_m, self.y_m, self.yaw_rad, self.v_mps, self.omega_rps))  # type: ignore[return-value]


@dataclass(frozen=True)
class FloorGrid:
    """Occupancy of the floor: ``clearance_m[i, j]`` is the distance to the nearest obstacle."""

    origin_xy: tuple[float, float]
    clearance_m: NDArray[np.float32]

    def cell(self, xy: tuple[float, float]) -> tuple[int, int]:
        """Row/column of a world point."""
        return int((xy[1] - self.origin_xy[1]) / GRID_M), int((xy[0] - self.origin_xy[0]) / GRID_M)

    def point(self, rows: NDArray[np.int64], cols: NDArray[np.int64]) -> FloatArray:
        """World xy ``(N, 2)`` of cell centres."""
        return np.stack([self.origin_xy[0] + (cols + 0.5) * GRID_M, self.origin_xy[1] + (rows + 0.5) * GRID_M], 1)


def floor_grid(house: House) -> FloorGrid:
    """Rasterize free floor (rooms and doors minus furniture) and its clearance (distance transform)."""
    x_hi = max(r.hi_xy[0] for r in house.rooms) + 0.2
    y_hi = max(r.hi_xy[1] for r in house.rooms) + 0.2
    origin = (-0.2, -0.2)
    free = np.zeros((int((y_hi - origin[1]) / GRID_M) + 1, int((x_hi - origin[0]) / GRID_M) + 1), np.uint8)

    def fill(lo: tuple[float, float], hi: tuple[float, float], value: int) -> None:
        c0, r0 = (int(np.ceil((lo[i] - origin[i]) / GRID_M - 0.5)) for i in range(2))
        c1, r1 = (int(np.floor((hi[i] - origin[i]) / GRID_M - 0.5)) for i in range(2))
        free[max(r0, 0) : r1 + 1, max(c0, 0) : c1 + 1] = value

    for room in house.rooms:
        fill(room.lo_xy, room.hi_xy, 1)
    for door in house.doors:
        fill(door.lo_xy, door.hi_xy, 1)
    for solid in house.solids:
        if solid.blocks_floor:
            fill(solid.lo[:2], solid.hi[:2], 0)
    clearance = cv2.distanceTransform(free, cv2.DIST_L2, cv2.DIST_MASK_PRECISE) * GRID_M
    return FloorGrid(origin, clearance.astype(np.float32))


def _grid_graph(clearance: NDArray[np.float32], min_clearance: float) -> tuple[coo_matrix, NDArray[np.int64]]:
    """8-connected graph over traversable cells; edge cost = length * (1 + 0.3 m / clearance)."""
    ok = clearance > min_clearance
    ids = np.full(ok.shape, -1, np.int64)
    ids[ok] = np.arange(int(ok.sum()))
    rows, cols, costs = [], [], []
    for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = ids[: ids.shape[0] - dr, max(0, -dc) : ids.shape[1] - max(0, dc)]
        b = ids[dr:, max(0, dc) : ids.shape[1] - max(0, -dc)]
        ca = clearance[: ids.shape[0] - dr, max(0, -dc) : ids.shape[1] - max(0, dc)]
        cb = clearance[dr:, max(0, dc) : ids.shape[1] - max(0, -dc)]
        both = (a >= 0) & (b >= 0)
        step = GRID_M * np.hypot(dr, dc)
        cost = step * (1.0 + 0.3 / np.minimum(ca, cb)[both])
        rows.append(a[both])
        cols.append(b[both])
        costs.append(cost)
    n = int(ok.sum())
    graph = coo_matrix((np.concatenate(costs), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return graph.tocsr(), ids


def _room_waypoints(rng: np.random.Generator, house: House, grid: FloorGrid, min_clearance: float) -> list[list[tuple[int, int]]]:
    """Up to four goal cells per room, one per quadrant in counter-clockwise order: driving through
    them in turn circles the room. Each is the well-cleared cell nearest to a point part-way
    (random 45-70 %) from the room centre to that quadrant's corner."""
    goals = []
    for room in house.rooms:
        r0, c0 = grid.cell(room.lo_xy)
        r1, c1 = grid.cell(room.hi_xy)
        open_cells = np.argwhere(grid.clearance_m[r0:r1, c0:c1] > min_clearance + 0.25)
        if open_cells.size == 0:
            raise ProblemError(f"{room.label} has no free floor for the robot (too much furniture?)")
        centre = np.array([(r1 - r0) / 2.0, (c1 - c0) / 2.0])
        room_goals = []
        for corner in ((0, 0), (0, 1), (1, 1), (1, 0)):  # (row, col) = (y, x): CCW seen from above
            target = centre + rng.uniform(0.45, 0.7) * (np.array(corner) * [r1 - r0, c1 - c0] - centre)
            in_quadrant = open_cells[np.all((open_cells >= centre) == np.array(corner, bool), axis=1)]
            if in_quadrant.size:
                best = in_quadrant[int(np.argmin(np.linalg.norm(in_quadrant - target, axis=1)))]
                room_goals.append((r0 + int(best[0]), c0 + int(best[1])))
        goals.append(room_goals or [(r0 + int(open_cells[0][0]), c0 + int(open_cells[0][1]))])
    return goals


def _waypoints(goals: list[list[tuple[int, int]]], tour: list[int], lap: int) -> list[tuple[int, int]]:
    """Goal cells of one lap: lap 0 circles the start room and drives its first leg again (an
    overlapping loop); later laps tour all rooms (alternating direction) and return to the start
    room, so places are revisited."""
    if lap == 0:
        return [*goals[0][1:], *goals[0][:2]]
    order = tour[1:] if lap % 2 == 1 else tour[-2::-1]
    return [goals[room][(lap + visit) % len(goals[room])] for visit, room in enumerate(order)]


def _room_tour(house: House) -> list[int]:
    """Depth-first tour over the door graph from room 0 and back (rooms repeat when backtracking)."""
    neighbours: dict[int, list[int]] = {r.index: [] for r in house.rooms}
    for door in house.doors:
        a, b = door.rooms
        neighbours[a].append(b)
        neighbours[b].append(a)
    tour, seen = [0], {0}

    def visit(room: int) -> None:
        for nxt in sorted(neighbours[room]):
            if nxt not in seen:
                seen.add(nxt)
                tour.append(nxt)
                visit(nxt)
                tour.append(room)

    visit(0)
    return tour


def _plan_path(house: House, grid: FloorGrid, rng: np.random.Generator, min_clearance: float, length_m: float) -> FloatArray:
    """Polyline ``(N, 2)`` of at least ``length_m`` metres: repeated room tours, smoothed."""
    graph, ids = _grid_graph(grid.clearance_m, min_clearance)
    goals = _room_waypoints(rng, house, grid, min_clearance)
    tour = _room_tour(house)
    cells = np.argwhere(ids >= 0)
    pieces: list[FloatArray] = []
    total, lap, current = 0.0, 0, goals[0][0]
    while total < length_m:
        for target in _waypoints(goals, tour, lap):
            _, pred = dijkstra(graph, directed=False, indices=int(ids[target]), return_predecessors=True)
            node, chain = int(ids[current]), []
            if pred[node] < 0 and node != ids[target]:
                raise ProblemError(f"no path for the robot to {grid.point(np.array([target[0]]), np.array([target[1]]))[0]}: a door is blocked")
            while node >= 0:
                chain.append(node)
                node = int(pred[node])
            xy = grid.point(cells[chain, 0], cells[chain, 1])
            pieces.append(xy)
            total += float(np.sum(np.linalg.norm(np.diff(xy, axis=0), axis=1)))
            current = target
        lap += 1
    path = np.concatenate(pieces)
    keep = np.concatenate([[True], np.linalg.norm(np.diff(path, axis=0), axis=1) > 1e-9])
    path = path[keep]
    return np.stack([gaussian_filter1d(path[:, i], 2.0, mode="nearest") for i in range(2)], 1)


def _pure_pursuit(path: FloatArray, cfg: RobotConfig, duration_s: float) -> tuple[FloatArray, ...]:
    """Drive the path with a unicycle model; returns arrays x, y, yaw, v, omega at SIM_RATE_HZ."""
    dt = 1.0 / SIM_RATE_HZ
    n = int(np.ceil(duration_s * SIM_RATE_HZ)) + 2
    out = np.zeros((5, n))
    seg = np.diff(path, axis=0)
    s_path = np.concatenate([[0.0], np.cumsum(np.linalg.norm(seg, axis=1))])
    x, y = path[0]
    ahead = path[min(len(path) - 1, int(np.searchsorted(s_path, _LOOKAHEAD_M)))]
    yaw = float(np.arctan2(ahead[1] - y, ahead[0] - x))
    v = omega = 0.0
    progress = 0
    for k in range(n):
        out[:, k] = x, y, yaw, v, omega
        window = path[progress : progress + 40]
        progress += int(np.argmin(np.linalg.norm(window - (x, y), axis=1)))
        goal = min(len(path) - 1, int(np.searchsorted(s_path, s_path[progress] + _LOOKAHEAD_M)))
        dx, dy = path[goal, 0] - x, path[goal, 1] - y
        alpha = float(np.arctan2(dy, dx) - yaw)
        alpha = (alpha + np.pi) % (2 * np.pi) - np.pi
        if abs(alpha) > _TURN_IN_PLACE_RAD:
            v_cmd, w_cmd = 0.0, float(np.sign(alpha)) * cfg.max_yaw_rate_rps
        else:
            v_cmd = cfg.max_speed_mps * (1.0 - 0.7 * abs(alpha) / _TURN_IN_PLACE_RAD)
            w_cmd = v_cmd * 2.0 * np.sin(alpha) / max(np.hypot(dx, dy), 1e-3)
            if abs(w_cmd) > cfg.max_yaw_rate_rps:
                v_cmd *= cfg.max_yaw_rate_rps / abs(w_cmd)
                w_cmd = float(np.sign(w_cmd)) * cfg.max_yaw_rate_rps
        v += float(np.clip(v_cmd - v, -cfg.max_accel_mps2 * dt, cfg.max_accel_mps2 * dt))
        omega += float(np.clip(w_cmd - omega, -cfg.max_yaw_accel_rps2 * dt, cfg.max_yaw_accel_rps2 * dt))
        heading = yaw + 0.5 * omega * dt
        x += v * np.cos(heading) * dt
        y += v * np.sin(heading) * dt
        yaw += omega * dt
    return tuple(out)


def _bump_field(rng: np.random.Generator, amplitude: float, xy: FloatArray) -> FloatArray:
    """Smooth random field over the floor with RMS ``amplitude``: 6 plane waves, wavelengths 0.4-2 m."""
    waves = rng.uniform(2 * np.pi / 2.0, 2 * np.pi / 0.4, 6)
    angles = rng.uniform(0.0, 2 * np.pi, 6)
    phases = rng.uniform(0.0, 2 * np.pi, 6)
    k = waves[None, :] * np.stack([np.cos(angles), np.sin(angles)])  # (2, 6) wave vectors
    return amplitude / np.sqrt(3.0) * np.sum(np.sin(xy @ k + phases), axis=1)


def plan_trajectory(house: House, cfg: RobotConfig, duration_s: float, seed: int) -> Trajectory:
    """Trajectory of ``duration_s`` seconds touring the rooms (deterministic in ``seed``)."""
    rng = np.random.default_rng([seed, 2])
    grid = floor_grid(house)
    min_clearance = cfg.radius_m + _CLEARANCE_MARGIN_M
    path = _plan_path(house, grid, rng, min_clearance, cfg.max_speed_mps * duration_s + 2.0)
    x, y, yaw, v, omega = _pure_pursuit(path, cfg, duration_s)
    xy = np.stack([x, y], 1)
    tilt = np.radians(cfg.bump_tilt_deg)
    return Trajectory(
        t_s=np.arange(x.size) / SIM_RATE_HZ,
        x_m=x, y_m=y, yaw_rad=yaw, v_mps=v, omega_rps=omega,
        z_m=_bump_field(rng, cfg.bump_height_m, xy),
        roll_rad=_bump_field(rng, tilt, xy),
        pitch_rad=_bump_field(rng, tilt, xy),
    )
