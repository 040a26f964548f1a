"""Seeded generator of sliding-window visual-odometry BA problems of household-robot shape.

A window is what a VO front end hands its back end every keyframe: ``num_keyframes`` keyframes
taken at ~10 Hz by a camera 0.3-1.2 m above the floor of a furnished room, landmarks tracked
over 2-20 keyframes (in monocular windows those whose depth is not confirmed by
``parallax_confirmations`` observations at ``min_parallax_deg`` of parallax are dropped, as a
front end's triangulation check does), pixel noise and a few gross outliers (never on the
detection itself). Initial values are those of a warm-started window: keyframes solved in
earlier windows carry a small residual error, the newest ``fresh_keyframes`` come from a
drifting tracker and their new landmarks are back-projected from a noisy depth
(``fresh_keyframes = num_keyframes`` gives a cold start). The oldest keyframes are fixed (the
gauge, as a sliding window fixes what it has marginalized).

Scene: a box-shaped room (walls, floor, ceiling) with a few box-shaped pieces of furniture;
landmarks are sampled on their surfaces and seen only from the front of their surface (no
occlusion between surfaces is modelled). Everything is drawn from ``numpy.random.default_rng(seed)``:
the same seed gives the same window bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.geometry.camera import PinholeCamera
from mp_slam_ros.geometry.lie import se3_exp, se3_inverse
from mp_slam_ros.solvers.ba import BAProblem
from mp_slam_ros.solvers.robust import LossKind, RobustLoss

FloatArray = NDArray[np.float64]

#: Substeps of the robot's motion simulation per keyframe period.
_SUBSTEPS = 5
#: Density of candidate landmarks on surfaces: textured enough that a front end always finds
#: fresh features (a lost feature is never re-detected as the same landmark).
_LANDMARKS_PER_M2 = 150.0


@dataclass
class WindowConfig:
    """Parameters of a generated window (defaults: a Kinect-like RGB-D camera on a small robot).

    ``rgbd``: every observation also carries the depth camera's measurement as a right-image
    coordinate with a virtual baseline (``camera.baseline_m``); ``False`` gives monocular windows
    (two residual rows per observation), whose scale is only weakly fixed by the gauge cameras.
    ``num_fixed = 0`` fixes no camera: the window keeps its gauge freedom (7 similarity
    directions when monocular), as a BAL file does; see :meth:`monocular`. Monocular landmarks
    need ``parallax_confirmations`` observations at ``min_parallax_deg`` or more from their
    detection (see :func:`_with_parallax`: two under a robust loss, so that one mismatch cannot
    leave a landmark without depth and send it toward infinity).
    """

    camera: PinholeCamera = field(
        default_factory=lambda: PinholeCamera(525.0, 525.0, 319.5, 239.5, width=640, height=480,
                                              baseline_m=0.08)
    )
    keyframe_period_s: float = 0.1
    speed_mps: tuple[float, float] = (0.2, 0.5)
    max_yaw_rate_rps: float = 0.8
    camera_height_m: tuple[float, float] = (0.3, 1.2)
    room_size_m: tuple[float, float] = (3.5, 7.0)
    max_depth_m: float = 8.0
    observations_per_keyframe: int = 55
    track_length: tuple[int, int] = (2, 20)
    min_parallax_deg: float = 1.0
    parallax_confirmations: int = 2
    pixel_sigma_px: float = 0.7
    outlier_fraction: float = 0.02
    outlier_offset_px: tuple[float, float] = (15.0, 60.0)
    fresh_keyframes: int = 5
    pose_noise_m: float = 0.01
    pose_noise_rad: float = 0.005
    pose_drift_m: float = 0.003
    settled_noise_m: float = 0.002
    settled_noise_rad: float = 0.001
    settled_noise_relative: float = 0.005
    depth_noise_relative: float = 0.03
    rgbd: bool = True
    num_fixed: int = 2
    loss: RobustLoss = field(default_factory=lambda: RobustLoss(LossKind.HUBER, 2.0))

    @classmethod
    def monocular(cls, gauge_free: bool = True, plain_least_squares: bool = False) -> WindowConfig:
        """A monocular window (no depth); ``gauge_free``: no fixed camera (scale, rotation and
        translation free, the 7-DoF similarity gauge); ``plain_least_squares``: no robust loss,
        and then no outliers and a cold start (every keyframe from the drifting tracker), the
        shape of a BAL problem after outlier rejection that Ceres' bundle_adjuster solves."""
        config = cls(rgbd=False)
        if gauge_free:
            config.num_fixed = 0
        if plain_least_squares:
            config.loss = RobustLoss(LossKind.NONE, 1.0)
            config.outlier_fraction = 0.0
            config.fresh_keyframes = 1_000_000  # >= any window's size: a cold start
            config.parallax_confirmations = 1  # no mismatch to guard against
        return config

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first inconsistent parameter."""
        lo, hi = self.track_length
        if not 2 <= lo <= hi:
            raise ConfigError("track_length", self.track_length, "must satisfy 2 <= min <= max")
        if self.observations_per_keyframe < 1:
            raise ConfigError("observations_per_keyframe", self.observations_per_keyframe, "must be >= 1")
        if not 0.0 <= self.outlier_fraction < 1.0:
            raise ConfigError("outlier_fraction", self.outlier_fraction, "must be in [0, 1)")
        if self.pixel_sigma_px <= 0.0:
            raise ConfigError("pixel_sigma_px", self.pixel_sigma_px, "must be > 0")
        if self.num_fixed < 0:
            raise ConfigError("num_fixed", self.num_fixed, "must be >= 0")
        if self.parallax_confirmations < 1:
            raise ConfigError("parallax_confirmations", self.parallax_confirmations, "must be >= 1")


@dataclass
class BAWindow:
    """A generated problem with its ground truth."""

    problem: BAProblem
    T_world_cam_true: FloatArray  # (C, 4, 4)
    points_world_true: FloatArray  # (P, 3)
    is_outlier: NDArray[np.bool_]  # (N,)
    seed: int


def generate_window(num_keyframes: int, seed: int, config: WindowConfig | None = None) -> BAWindow:
    """One sliding-window BA problem with ``num_keyframes`` keyframes (deterministic in ``seed``)."""
    config = config or WindowConfig()
    config.validate()
    if num_keyframes < config.num_fixed + 1:
        raise ConfigError("num_keyframes", num_keyframes, f"must be > num_fixed={config.num_fixed}")
    rng = np.random.default_rng(seed)
    room = rng.uniform(*config.room_size_m, size=2)
    points, normals = _scene(room, rng)
    T_true = _trajectory(num_keyframes, room, config, rng)
    obs_cam, obs_point = _tracks(T_true, points, normals, config, rng)
    if not config.rgbd:  # with depth, every landmark's depth is measured: no parallax needed
        obs_cam, obs_point = _with_parallax(
            T_true, points, obs_cam, obs_point, config.min_parallax_deg, config.parallax_confirmations
        )
    used, obs_point = np.unique(obs_point, return_inverse=True)
    points, obs_point = points[used], obs_point.reshape(-1)
    return _measure(T_true, points, obs_cam, obs_point, config, rng, seed)


def generate_windows(
    count: int, num_keyframes: int, seed: int = 0, config: WindowConfig | None = None
) -> Iterator[BAWindow]:
    """``count`` windows with seeds ``seed, seed + 1, ...``."""
    for index in range(count):
        yield generate_window(num_keyframes, seed + index, config)


def _scene(room: FloatArray, rng: np.random.Generator) -> tuple[FloatArray, FloatArray]:
    """Landmarks ``(K, 3)`` on the room's surfaces and furniture, with outward normals."""
    height = rng.uniform(2.4, 2.8)
    boxes = [(np.zeros(3), np.array([room[0], room[1], height]), -1.0)]  # room: inward normals
    for _ in range(rng.integers(2, 6)):
        size = rng.uniform([0.4, 0.4, 0.4], [1.6, 1.0, 1.8])
        along_wall = rng.integers(4)
        low = np.array([rng.uniform(0.0, room[0] - size[0]), rng.uniform(0.0, room[1] - size[1]), 0.0])
        if along_wall < 2:
            low[along_wall] = 0.0 if rng.random() < 0.5 else room[along_wall] - size[along_wall]
        boxes.append((low, low + size, 1.0))
    points, normals = [], []
    for low, high, outward in boxes:
        for axis in range(3):
            for side in (0, 1):
                face_low, face_high = low.copy(), high.copy()
                face_low[axis] = face_high[axis] = (low, high)[side][axis]
                area = np.prod(np.delete(high - low, axis))
                count = rng.poisson(_LANDMARKS_PER_M2 * area)
                points.append(rng.uniform(face_low, face_high, size=(count, 3)))
                normal = np.zeros(3)
                normal[axis] = (1.0 if side else -1.0) * outward
                normals.append(np.broadcast_to(normal, (count, 3)))
    return np.concatenate(points), np.concatenate(normals)


def _trajectory(
    num_keyframes: int, room: FloatArray, config: WindowConfig, rng: np.random.Generator
) -> FloatArray:
    """True keyframe poses ``T_world_cam`` ``(C, 4, 4)``: a unicycle steering between waypoints."""
    margin = 0.6
    position = rng.uniform(margin, room - margin)
    yaw = rng.uniform(-np.pi, np.pi)
    waypoint = rng.uniform(margin, room - margin)
    speed = rng.uniform(*config.speed_mps)
    height = rng.uniform(*config.camera_height_m)
    pitch0 = rng.uniform(-0.15, 0.15)
    dt = config.keyframe_period_s / _SUBSTEPS
    poses = np.zeros((num_keyframes, 4, 4))
    for k in range(num_keyframes * _SUBSTEPS):
        if k % _SUBSTEPS == 0:
            t = k * dt
            pitch = pitch0 + 0.03 * np.sin(1.7 * t)
            roll = 0.01 * np.sin(2.3 * t)
            poses[k // _SUBSTEPS] = _camera_pose(position, height + 0.01 * np.sin(3.1 * t), yaw, pitch, roll)
        to_waypoint = waypoint - position
        if np.linalg.norm(to_waypoint) < 0.3:
            waypoint = rng.uniform(margin, room - margin)
        error = np.angle(np.exp(1j * (np.arctan2(to_waypoint[1], to_waypoint[0]) - yaw)))
        yaw += np.clip(2.0 * error, -config.max_yaw_rate_rps, config.max_yaw_rate_rps) * dt
        position = np.clip(position + speed * dt * np.array([np.cos(yaw), np.sin(yaw)]), 0.2, room - 0.2)
    return poses


def _camera_pose(xy: FloatArray, height: float, yaw: float, pitch: float, roll: float) -> FloatArray:
    """``T_world_cam`` of an optical camera (z forward, y down) looking along ``yaw``/``pitch``."""
    forward = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)])
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    c, s = np.cos(roll), np.sin(roll)
    T = np.eye(4)
    T[:3, :3] = np.stack([c * right + s * down, -s * right + c * down, forward], axis=1)
    T[:3, 3] = [xy[0], xy[1], height]
    return T


def _visible(T_world_cam: FloatArray, points: FloatArray, normals: FloatArray, config: WindowConfig) -> NDArray[np.bool_]:
    """``(K,)`` mask of landmarks a keyframe sees (in the image, in range, front face)."""
    T_cam_world = se3_inverse(T_world_cam)
    points_cam = points @ T_cam_world[:3, :3].T + T_cam_world[:3, 3]
    facing = np.einsum("ij,ij->i", normals, T_world_cam[:3, 3] - points) > 0.0
    in_range = points_cam[:, 2] < config.max_depth_m
    return facing & in_range & config.camera.in_image(points_cam, min_depth_m=0.2)


def _tracks(
    T_true: FloatArray, points: FloatArray, normals: FloatArray, config: WindowConfig, rng: np.random.Generator
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Observations ``(obs_cam, obs_point)``: features tracked for 2-20 keyframes, then lost."""
    lo, hi = config.track_length
    used = np.zeros(points.shape[0], bool)
    active: dict[int, int] = {}  # landmark -> keyframes left
    cams: list[int] = []
    landmarks: list[int] = []
    for k, T in enumerate(T_true):
        visible = _visible(T, points, normals, config)
        active = {j: left for j, left in active.items() if left > 0 and visible[j]}
        fresh = np.flatnonzero(visible & ~used)
        rng.shuffle(fresh)
        for j in fresh[: max(0, config.observations_per_keyframe - len(active))]:
            active[int(j)] = int(rng.integers(lo, hi + 1))
            used[j] = True
        for j in active:
            cams.append(k)
            landmarks.append(j)
            active[j] -= 1
    obs_cam, obs_point = np.asarray(cams, np.int64), np.asarray(landmarks, np.int64)
    keep = np.bincount(obs_point, minlength=points.shape[0])[obs_point] >= 2
    return obs_cam[keep], obs_point[keep]


def _with_parallax(
    T_true: FloatArray, points: FloatArray, obs_cam: NDArray[np.int64], obs_point: NDArray[np.int64],
    min_parallax_deg: float, confirmations: int,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Keep the tracks with ``confirmations`` observations whose ray is at least
    ``min_parallax_deg`` from the detection's (a front end's triangulation check).

    With one such observation (the usual check) the landmark's depth rests on that observation
    alone: if it is a mismatch, the rest of the track has no parallax and under a robust loss the
    landmark's cost keeps decreasing along its ray toward infinity (runaway landmarks at
    1e11-1e13 m: no optimum, and every solver stops somewhere along the crawl). Two confirming
    observations make the depth robust to one mismatch, as a front end that keeps a monocular
    point only once a third keyframe confirms it (ORB-SLAM's map-point culling); plain least
    squares, without mismatches, needs one.
    """
    rays = points[obs_point] - T_true[obs_cam, :3, 3]
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    first = np.unique(obs_point, return_index=True)[1]
    host_ray = np.zeros_like(points)
    host_ray[obs_point[first]] = rays[first]
    cos_to_host = np.einsum("ij,ij->i", rays, host_ray[obs_point])
    wide = cos_to_host <= np.cos(np.radians(min_parallax_deg))
    confirmed = np.bincount(obs_point, weights=wide, minlength=points.shape[0]) >= confirmations
    keep = confirmed[obs_point]
    return obs_cam[keep], obs_point[keep]


def _measure(
    T_true: FloatArray, points: FloatArray, obs_cam: NDArray[np.int64], obs_point: NDArray[np.int64],
    config: WindowConfig, rng: np.random.Generator, seed: int,
) -> BAWindow:
    """Noisy pixels and outliers, then initial values as a warm-started window has them."""
    camera = config.camera
    T_cam_world = se3_inverse(T_true)
    points_cam = np.einsum("nij,nj->ni", T_cam_world[obs_cam, :3, :3], points[obs_point]) + T_cam_world[obs_cam, :3, 3]
    uv = camera.project(points_cam) + config.pixel_sigma_px * rng.standard_normal((obs_cam.size, 2))
    first = np.unique(obs_point, return_index=True)[1]  # host (detection) of every landmark
    is_outlier = rng.random(obs_cam.size) < config.outlier_fraction
    is_outlier[first] = False  # a detection is never a mismatch; later matches can be
    angle = rng.uniform(0.0, 2.0 * np.pi, is_outlier.sum())
    offset = rng.uniform(*config.outlier_offset_px, is_outlier.sum())
    uv[is_outlier] += offset[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    depth = points_cam[:, 2] * (1.0 + config.depth_noise_relative * rng.standard_normal(obs_cam.size))
    T_init, points_init = _initial_values(T_true, points, obs_cam[first], uv[first], depth[first], config, rng)
    u_right = camera.right_coordinate(uv[:, 0], depth) if config.rgbd else None
    problem = BAProblem.from_camera(
        camera,
        T_world_cam=T_init, points_world=points_init, obs_cam=obs_cam, obs_point=obs_point,
        obs_uv=uv, obs_weight=np.full(obs_cam.size, 1.0 / config.pixel_sigma_px),
        obs_u_right=u_right, fixed_cams=np.arange(T_true.shape[0]) < config.num_fixed, loss=config.loss,
    )
    return BAWindow(problem, T_true, points, is_outlier, seed)


def _initial_values(
    T_true: FloatArray, points: FloatArray, host: NDArray[np.int64], uv_host: FloatArray,
    depth_host: FloatArray, config: WindowConfig, rng: np.random.Generator,
) -> tuple[FloatArray, FloatArray]:
    """Initial poses and landmarks of a sliding window solved before.

    Keyframes older than the newest ``fresh_keyframes`` keep the small error left by the
    previous solves (``settled_noise_*``); the fresh ones come from a drifting tracker
    (``pose_noise_*`` plus a random walk of ``pose_drift_m`` per keyframe). Landmarks hosted by
    settled keyframes carry a settled error proportional to their depth; fresh ones are
    back-projected from their detection pixel and a noisy depth through the noisy host pose.
    """
    num_cams = T_true.shape[0]
    fresh = np.arange(num_cams) >= num_cams - config.fresh_keyframes
    sigma = np.where(fresh[:, None], [config.pose_noise_m] * 3 + [config.pose_noise_rad] * 3,
                     [config.settled_noise_m] * 3 + [config.settled_noise_rad] * 3)
    drift = np.cumsum(config.pose_drift_m * rng.standard_normal((num_cams, 6)) * fresh[:, None], axis=0)
    noise = sigma * rng.standard_normal((num_cams, 6)) + drift * [1.0, 1.0, 1.0, 0.3, 0.3, 0.3]
    noise[: config.num_fixed] = 0.0
    T_init = T_true @ se3_exp(noise)
    in_host = config.camera.unproject(uv_host, depth_host)
    points_init = np.einsum("nij,nj->ni", T_init[host, :3, :3], in_host) + T_init[host, :3, 3]
    settled = ~fresh[host]
    settled_sigma = config.settled_noise_relative * depth_host[settled, None]
    points_init[settled] = points[settled] + settled_sigma * rng.standard_normal((int(settled.sum()), 3))
    return T_init, points_init
