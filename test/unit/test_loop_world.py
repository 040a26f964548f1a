"""Synthetic keyframes for the loop-closure tests (no tests here): rooms of textured points (each
point one ORB-like descriptor), a camera circling inside with drifting odometry, twin rooms."""

from __future__ import annotations

import dataclasses

import numpy as np

from mp_slam_ros.config import with_updates
from mp_slam_ros.geometry.camera import PinholeCamera
from mp_slam_ros.geometry.lie import se3_exp, se3_inverse, se3_to_translation_quat
from mp_slam_ros.pipelines.loop_closure import LoopClosure
from mp_slam_ros.pipelines.loop_closure_config import LoopClosureConfig
from mp_slam_ros.types import CameraModel, KeyframeArrays

CAMERA = CameraModel.from_pinhole(PinholeCamera(300.0, 300.0, 320.0, 240.0, width=640, height=480), "camera")
K = CAMERA.camera_matrix


def room(rng: np.random.Generator, n: int = 2400, half: float = 3.0) -> np.ndarray:
    """Points ``(n, 3)`` on the four walls of a square room centred at the origin."""
    wall = rng.integers(0, 4, n)
    s, z = rng.uniform(-half, half, n), rng.uniform(0.0, 2.5, n)
    x = np.select([wall == 0, wall == 1, wall == 2], [np.full(n, half), np.full(n, -half), s], s)
    y = np.select([wall == 0, wall == 1, wall == 2], [s, s, np.full(n, half)], np.full(n, -half))
    return np.stack([x, y, z], axis=1)


def camera_on_circle(theta: float, centre: np.ndarray, radius: float = 1.2) -> np.ndarray:
    """``T_world_cam`` looking outward (optical z radial, y down)."""
    forward = np.array([np.cos(theta), np.sin(theta), 0.0])
    down = np.array([0.0, 0.0, -1.0])
    right = np.cross(down, forward)
    T = np.eye(4)
    T[:3, :3] = np.stack([right, down, forward], axis=1)
    T[:3, 3] = centre + radius * forward + np.array([0.0, 0.0, 1.2])
    return T


@dataclasses.dataclass
class World:
    points: np.ndarray
    descriptors: np.ndarray
    rng: np.random.Generator

    def keyframe(self, kf_id: int, stamp_s: float, T_world_cam: np.ndarray, T_odom_cam: np.ndarray) -> KeyframeArrays:
        """The points visible from ``T_world_cam`` (in the image, nearer than 6.5 m: walls hide the
        other rooms) with noisy pixels, depth and descriptor bits."""
        p_cam = (self.points - T_world_cam[:3, 3]) @ T_world_cam[:3, :3]
        uv = p_cam[:, :2] / p_cam[:, 2:3] * 300.0 + [320.0, 240.0]
        visible = (p_cam[:, 2] > 0.3) & (np.linalg.norm(p_cam, axis=1) < 6.5) & (uv[:, 0] > 5) & (uv[:, 0] < 635) & (uv[:, 1] > 5) & (uv[:, 1] < 475)
        idx = np.flatnonzero(visible)[:400]
        descriptors = self.descriptors[idx].copy()
        flips = self.rng.integers(0, 256, (len(idx), 3))
        for column in range(3):
            descriptors[np.arange(len(idx)), flips[:, column] // 8] ^= (1 << (flips[:, column] % 8)).astype(np.uint8)
        t, q = se3_to_translation_quat(T_odom_cam)
        return KeyframeArrays(
            kf_id, int(stamp_s * 1e9), "odom", np.concatenate([t[0], q[0]]), np.eye(6) * 1e-4, CAMERA,
            (uv[idx] + self.rng.normal(0, 0.5, (len(idx), 2))).astype(np.float32), descriptors,
            (p_cam[idx] * (1 + self.rng.normal(0, 0.002, (len(idx), 1)))).astype(np.float32),
        )


def make_world(seed: int, rooms: list[np.ndarray]) -> World:
    """Identical rooms (same points and descriptors) centred at ``rooms``."""
    rng = np.random.default_rng(seed)
    points = room(rng)
    descriptors = rng.integers(0, 256, (len(points), 32), dtype=np.uint8)
    return World(np.concatenate([points + c for c in rooms]), np.concatenate([descriptors] * len(rooms)), rng)


def drifting_odometry(T_world_cam: list[np.ndarray], rng: np.random.Generator, sigma: float = 0.004) -> list[np.ndarray]:
    """Odometry poses accumulating noisy relative motions."""
    out = [T_world_cam[0].copy()]
    for a, b in zip(T_world_cam[:-1], T_world_cam[1:]):
        noise = se3_exp(np.concatenate([rng.normal(0, sigma, 3), rng.normal(0, sigma / 2, 3)])[None])[0]
        out.append(out[-1] @ se3_inverse(a) @ b @ noise)
    return out


def circle_run(world: World, centre: np.ndarray, laps: float, steps_per_lap: int = 36, start_id: int = 0, start_s: float = 0.0):
    n = int(laps * steps_per_lap)
    truth = [camera_on_circle(2 * np.pi * k / steps_per_lap, centre) for k in range(n)]
    return truth, [start_s + k for k in range(n)], list(range(start_id, start_id + n))


def config(**updates: object) -> LoopClosureConfig:
    base = {"loop.min_age_s": 10.0, "places.train_keyframes": 5, "places.vocabulary_words": 400}
    return with_updates(LoopClosureConfig(), {**base, **updates})


def position_errors(T_est: np.ndarray, T_true: list[np.ndarray]) -> np.ndarray:
    """Position errors after moving the first estimate onto the first true pose."""
    T_align = np.asarray(T_true[0]) @ se3_inverse(T_est[0])
    return np.linalg.norm((T_align @ T_est)[:, :3, 3] - np.asarray(T_true)[:, :3, 3], axis=1)


def run(lc: LoopClosure, world: World, truth, stamps, ids, odometry):
    return [lc.add_keyframe(world.keyframe(i, s, T, O)) for i, s, T, O in zip(ids, stamps, truth, odometry)]
