"""Sensor models: time-of-flight-like depth (noise and holes), camera noise, drifting wheel odometry.

All randomness comes from the generators passed in, so a seed reproduces every byte.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.sim.config import DepthConfig, RobotConfig
from mp_slam_ros.sim.render import RenderResult
from mp_slam_ros.sim.trajectory import SIM_RATE_HZ, Trajectory

FloatArray = NDArray[np.float64]


def tof_depth(view: RenderResult, cfg: DepthConfig, rng: np.random.Generator) -> NDArray[np.float32]:
    """Noisy depth in metres (0 = no return) from an exact rendered view.

    Model: returns are lost outside ``[min_m, max_m]``, at grazing incidence, on mixed pixels at
    depth discontinuities (a 4-neighbour more than ``edge_jump_ratio`` away, relative), on dark
    surfaces (with probability ``dark_dropout``) and at random; valid returns get Gaussian axial
    noise ``(sigma0 + sigma1 z + sigma2 z^2) / sqrt(albedo)``.
    """
    if not cfg.enabled_noise:
        z = view.depth_m
        return np.where((z >= cfg.min_m) & (z <= cfg.max_m), z, 0.0).astype(np.float32)
    shape = view.depth_m.shape
    dark_draw = rng.random(shape, dtype=np.float32)
    drop_draw = rng.random(shape, dtype=np.float32)
    normal_draw = rng.standard_normal(shape, dtype=np.float32)
    return _tof_kernel(
        view.depth_m, view.cos_incidence, view.albedo, dark_draw, drop_draw, normal_draw,
        cfg.min_m, cfg.max_m, cfg.min_cos_incidence, cfg.edge_jump_ratio, cfg.dark_albedo, cfg.dark_dropout,
        cfg.random_dropout, cfg.sigma0_m, cfg.sigma1, cfg.sigma2_per_m,
    )


@numba.njit(cache=True)
def _tof_kernel(depth, cos_incidence, albedo, dark_draw, drop_draw, normal_draw, min_m, max_m, min_cos,
                edge_ratio, dark_albedo, dark_dropout, random_dropout, sigma0, sigma1, sigma2):  # type: ignore[no-untyped-def]
    """Per-pixel ToF model of :func:`tof_depth` with pre-drawn random numbers (one pass)."""
    height, width = depth.shape
    out = np.zeros((height, width), np.float32)
    for r in range(height):
        for c in range(width):
            z = np.float64(depth[r, c])
            if z < min_m or z > max_m or cos_incidence[r, c] < min_cos or drop_draw[r, c] < random_dropout:
                continue
            a = max(np.float64(albedo[r, c]), 0.05)
            if a < dark_albedo and dark_draw[r, c] < dark_dropout:
                continue
            mixed = False
            for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                rr, cc = r + dr, c + dc
                if 0 <= rr < height and 0 <= cc < width:
                    other = np.float64(depth[rr, cc])
                    if abs(other - z) > edge_ratio * min(other, z):
                        mixed = True
            if mixed:
                continue
            sigma = (sigma0 + sigma1 * z + sigma2 * z * z) / np.sqrt(a)
            out[r, c] = max(z + sigma * normal_draw[r, c], 0.0)
    return out


def encode_depth(depth_m: NDArray[np.float32], encoding: str) -> NDArray[np.generic]:
    """``16UC1``: millimetres, 0 invalid; ``32FC1``: metres, NaN invalid (REP 118)."""
    if encoding == "16UC1":
        return np.clip(np.round(depth_m * 1000.0), 0, 65535).astype(np.uint16)
    return np.where(depth_m > 0.0, depth_m, np.nan).astype(np.float32)


def camera_noise(rgb: NDArray[np.uint8], std: float, rng: np.random.Generator) -> NDArray[np.uint8]:
    """Additive Gaussian read noise on 8-bit images (rounded and clipped)."""
    if std <= 0.0:
        return rgb
    noisy = rgb.astype(np.float32) + rng.normal(0.0, std, rgb.shape).astype(np.float32)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class WheelOdometry:
    """Dead-reckoned base pose in the odom frame (= the start pose), with measured twist."""

    t_s: FloatArray
    x_m: FloatArray
    y_m: FloatArray
    yaw_rad: FloatArray
    v_mps: FloatArray
    omega_rps: FloatArray


def wheel_odometry(traj: Trajectory, cfg: RobotConfig, seed: int) -> WheelOdometry:
    """Integrate wheel speeds with per-sequence scale/wheel-base errors and white noise.

    Sampled at ``SIM_RATE_HZ`` like ``traj``; callers resample with ``numpy.interp``.
    """
    rng = np.random.default_rng([seed, 4])
    scale_right, scale_left = 1.0 + cfg.odom_scale_error * rng.standard_normal(2)
    wheel_base_est = cfg.wheel_base_m * (1.0 + cfg.odom_wheel_base_error * rng.standard_normal())
    half = cfg.wheel_base_m / 2.0
    right = traj.v_mps + traj.omega_rps * half
    left = traj.v_mps - traj.omega_rps * half
    right_meas = right * scale_right + cfg.odom_speed_noise_mps * rng.standard_normal(right.size) * (np.abs(right) > 1e-4)
    left_meas = left * scale_left + cfg.odom_speed_noise_mps * rng.standard_normal(left.size) * (np.abs(left) > 1e-4)
    v = (right_meas + left_meas) / 2.0
    omega = (right_meas - left_meas) / wheel_base_est
    dt = 1.0 / SIM_RATE_HZ
    yaw = np.concatenate([[0.0], np.cumsum(omega[:-1] * dt)])
    heading = yaw + 0.5 * omega * dt
    x = np.concatenate([[0.0], np.cumsum((v * np.cos(heading))[:-1] * dt)])
    y = np.concatenate([[0.0], np.cumsum((v * np.sin(heading))[:-1] * dt)])
    return WheelOdometry(traj.t_s, x, y, yaw, v, omega)
