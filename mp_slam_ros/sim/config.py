"""Configuration of a synthetic household sequence (one dataclass namespace, validated once).

Dotted keys (``camera.height_m``, ``depth.max_m``) are the same in the CLI error messages and in the
``sequence.json`` written next to the bag.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from mp_slam_ros.errors import ConfigError

#: Durations the generator accepts (seconds). Short sequences are allowed for tests.
MAX_DURATION_S = 3600.0


@dataclass(frozen=True)
class HouseConfig:
    """Procedural home: rooms on a grid, doors, furniture and textures."""

    n_rooms: int = 4
    room_size_m: tuple[float, float] = (3.2, 5.0)
    wall_height_m: float = 2.5
    wall_thickness_m: float = 0.12
    door_width_m: float = 0.9
    door_height_m: float = 2.05
    #: fraction of walls painted a plain colour (low texture)
    plain_wall_fraction: float = 0.3
    #: two rooms with the same size, furniture and textures (tests false loop closures)
    twin_rooms: bool = False
    #: furniture items per room (shelves, tables, boxes, posters)
    furniture_per_room: int = 5
    #: texture resolution factor (< 1: smaller, blurrier textures, faster set-up; for tests)
    texture_detail: float = 1.0


@dataclass(frozen=True)
class CameraConfig:
    """Pinhole RGB-D camera (and optional right stereo camera) on the robot."""

    width_px: int = 640
    height_px: int = 480
    #: focal length in pixels at full resolution (Kinect/TUM-like)
    focal_px: float = 525.0
    #: scales width, height and intrinsics (0.5 gives 320x240)
    image_scale: float = 1.0
    rate_hz: float = 30.0
    height_m: float = 0.6
    #: camera position in base_link (x forward, y left), metres
    offset_m: tuple[float, float] = (0.1, 0.0)
    #: downward tilt of the optical axis, degrees
    tilt_deg: float = 5.0
    #: stereo baseline in metres; 0 disables the right image
    stereo_baseline_m: float = 0.0
    near_m: float = 0.05
    #: std-dev of additive Gaussian image noise (8-bit levels); 0 keeps bags compressible
    image_noise_std: float = 0.0

    @property
    def width(self) -> int:
        """Image width in pixels after ``image_scale``."""
        return int(round(self.width_px * self.image_scale))

    @property
    def height(self) -> int:
        """Image height in pixels after ``image_scale``."""
        return int(round(self.height_px * self.image_scale))


@dataclass(frozen=True)
class DepthConfig:
    """Time-of-flight-like depth noise model (see :mod:`mp_slam_ros.sim.sensors`)."""

    enabled_noise: bool = True
    min_m: float = 0.2
    max_m: float = 6.0
    #: axial noise sigma(z) = sigma0 + sigma1 * z + sigma2 * z^2 (metres), scaled by 1/sqrt(albedo)
    sigma0_m: float = 0.001
    sigma1: float = 0.0015
    sigma2_per_m: float = 0.0005
    #: |cos| of the incidence angle below which the return is lost
    min_cos_incidence: float = 0.12
    #: relative depth jump between neighbours treated as a mixed ("flying") pixel and removed
    edge_jump_ratio: float = 0.04
    #: albedo below which returns drop out with probability ``dark_dropout``
    dark_albedo: float = 0.12
    dark_dropout: float = 0.5
    random_dropout: float = 0.002
    #: "16UC1" (millimetres, 0 = invalid) or "32FC1" (metres, NaN = invalid)
    encoding: str = "16UC1"


@dataclass(frozen=True)
class RobotConfig:
    """Differential-drive base and its wheel odometry."""

    radius_m: float = 0.22
    wheel_base_m: float = 0.3
    max_speed_mps: float = 0.35
    max_yaw_rate_rps: float = 0.7
    max_accel_mps2: float = 0.5
    max_yaw_accel_rps2: float = 1.5
    #: floor bumps: RMS of pitch/roll (degrees) and of height (metres)
    bump_tilt_deg: float = 0.6
    bump_height_m: float = 0.003
    odom_rate_hz: float = 50.0
    #: systematic wheel radius / wheel base errors (std-dev of the relative error drawn per sequence)
    odom_scale_error: float = 0.003
    odom_wheel_base_error: float = 0.01
    #: white noise on each wheel speed, m/s
    odom_speed_noise_mps: float = 0.01


@dataclass(frozen=True)
class SequenceConfig:
    """Everything that defines one generated sequence; same seed + config -> same bytes."""

    seed: int = 0
    duration_s: float = 20.0
    #: header stamp of the first message, nanoseconds since the epoch (fixed for reproducibility)
    start_time_ns: int = 1_700_000_000_000_000_000
    house: HouseConfig = field(default_factory=HouseConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    depth: DepthConfig = field(default_factory=DepthConfig)
    robot: RobotConfig = field(default_factory=RobotConfig)
    #: zstd chunk compression of the MCAP file ("none" or "zstd")
    compression: str = "zstd"

    def validate(self) -> SequenceConfig:
        """Return ``self`` or raise :class:`ConfigError` naming the first impossible value."""
        _check_sequence(self)
        _check_house(self.house)
        _check_camera(self.camera, self.house)
        x, y = self.camera.offset_m
        # the right camera sits at -baseline along base y (optical x points to the robot's right)
        offset = float(max(np.hypot(x, y), np.hypot(x, y - self.camera.stereo_baseline_m)))
        _require(
            offset <= self.robot.radius_m,
            "camera.offset_m",
            self.camera.offset_m,
            f"a camera is {offset:.2f} m from the robot centre, outside the robot (robot.radius_m={self.robot.radius_m}); "
            "it would pass through walls",
        )
        _check_depth(self.depth)
        _check_robot(self.robot)
        return self

    def as_dict(self) -> dict[str, object]:
        """Plain nested dict (for ``sequence.json``)."""
        return dataclasses.asdict(self)


def _require(ok: bool, key: str, value: object, reason: str) -> None:
    if not ok:
        raise ConfigError(key, value, reason)


def _check_sequence(cfg: SequenceConfig) -> None:
    _require(cfg.seed >= 0, "seed", cfg.seed, "must be >= 0")
    _require(
        0.0 < cfg.duration_s <= MAX_DURATION_S,
        "duration_s",
        cfg.duration_s,
        f"must be > 0 and <= {MAX_DURATION_S:g} s",
    )
    frames = int(cfg.duration_s * cfg.camera.rate_hz + 1e-9)
    _require(frames >= 2, "duration_s", cfg.duration_s, "too short for two camera frames at camera.rate_hz")
    _require(cfg.start_time_ns > 0, "start_time_ns", cfg.start_time_ns, "must be > 0")
    _require(cfg.compression in ("none", "zstd"), "compression", cfg.compression, "use 'none' or 'zstd'")


def _check_house(h: HouseConfig) -> None:
    _require(2 <= h.n_rooms <= 9, "house.n_rooms", h.n_rooms, "must be in [2, 9]")
    lo, hi = h.room_size_m
    _require(2.5 <= lo <= hi <= 12.0, "house.room_size_m", h.room_size_m, "need 2.5 <= min <= max <= 12 m")
    _require(2.0 <= h.wall_height_m <= 5.0, "house.wall_height_m", h.wall_height_m, "must be in [2, 5] m")
    _require(0.05 <= h.wall_thickness_m <= 0.5, "house.wall_thickness_m", h.wall_thickness_m, "must be in [0.05, 0.5] m")
    _require(0.7 <= h.door_width_m <= lo - 1.0, "house.door_width_m", h.door_width_m, "must be in [0.7, min room size - 1] m")
    _require(
        1.5 <= h.door_height_m < h.wall_height_m,
        "house.door_height_m",
        h.door_height_m,
        "must be >= 1.5 m and below the ceiling",
    )
    _require(0.0 <= h.plain_wall_fraction <= 1.0, "house.plain_wall_fraction", h.plain_wall_fraction, "must be in [0, 1]")
    _require(0 <= h.furniture_per_room <= 12, "house.furniture_per_room", h.furniture_per_room, "must be in [0, 12]")
    _require(0.05 <= h.texture_detail <= 2.0, "house.texture_detail", h.texture_detail, "must be in [0.05, 2]")


def _check_camera(c: CameraConfig, h: HouseConfig) -> None:
    _require(0.1 <= c.image_scale <= 2.0, "camera.image_scale", c.image_scale, "must be in [0.1, 2]")
    _require(c.width >= 16 and c.height >= 16, "camera.image_scale", c.image_scale, "image smaller than 16x16 px")
    _require(c.focal_px > 0, "camera.focal_px", c.focal_px, "must be > 0")
    _require(0.0 < c.rate_hz <= 120.0, "camera.rate_hz", c.rate_hz, "must be in (0, 120] Hz")
    _require(0.3 <= c.height_m <= 1.2, "camera.height_m", c.height_m, "household robot camera must be 0.3-1.2 m high")
    _require(
        c.height_m < h.door_height_m - 0.1,
        "camera.height_m",
        c.height_m,
        f"camera would hit the door lintel at {h.door_height_m} m",
    )
    _require(abs(c.tilt_deg) <= 30.0, "camera.tilt_deg", c.tilt_deg, "must be within +-30 degrees")
    _require(0.0 <= c.stereo_baseline_m <= 0.5, "camera.stereo_baseline_m", c.stereo_baseline_m, "must be in [0, 0.5] m")
    _require(0.01 <= c.near_m <= 0.3, "camera.near_m", c.near_m, "must be in [0.01, 0.3] m")
    _require(0.0 <= c.image_noise_std <= 20.0, "camera.image_noise_std", c.image_noise_std, "must be in [0, 20]")


def _check_depth(d: DepthConfig) -> None:
    _require(0.0 < d.min_m < d.max_m <= 20.0, "depth.max_m", d.max_m, "need 0 < depth.min_m < depth.max_m <= 20 m")
    _require(d.encoding in ("16UC1", "32FC1"), "depth.encoding", d.encoding, "use '16UC1' or '32FC1'")
    for key in ("dark_dropout", "random_dropout", "min_cos_incidence"):
        value = getattr(d, key)
        _require(0.0 <= value <= 1.0, f"depth.{key}", value, "must be in [0, 1]")


def _check_robot(r: RobotConfig) -> None:
    _require(0.1 <= r.radius_m <= 0.5, "robot.radius_m", r.radius_m, "must be in [0.1, 0.5] m")
    _require(0.05 <= r.max_speed_mps <= 2.0, "robot.max_speed_mps", r.max_speed_mps, "must be in [0.05, 2] m/s")
    _require(0.1 <= r.max_yaw_rate_rps <= 3.0, "robot.max_yaw_rate_rps", r.max_yaw_rate_rps, "must be in [0.1, 3] rad/s")
    _require(0.0 < r.odom_rate_hz <= 1000.0, "robot.odom_rate_hz", r.odom_rate_hz, "must be in (0, 1000] Hz")
    _require(0.0 <= r.bump_tilt_deg <= 5.0, "robot.bump_tilt_deg", r.bump_tilt_deg, "must be in [0, 5] degrees")
