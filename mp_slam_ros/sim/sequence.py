"""Generate a household sequence: house, trajectory, rendered sensors -> rosbag2 + TUM ground truth.

Output directory layout::

    OUT_DIR/bag/             rosbag2 (metadata.yaml + bag.mcap), standard message types
    OUT_DIR/groundtruth.tum  T_world_base at every camera stamp (TUM, seconds)
    OUT_DIR/odometry.tum     wheel odometry T_odom_base at every camera stamp (drifts)
    OUT_DIR/sequence.json    configuration, intrinsics, extrinsics, topics, house summary
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.io.bags import BagWriter
from mp_slam_ros.io.tum import TumTrajectory, write_tum
from mp_slam_ros.sim import messages
from mp_slam_ros.sim.config import SequenceConfig
from mp_slam_ros.sim.house import House, generate_house
from mp_slam_ros.sim.render import render
from mp_slam_ros.sim.rig import BASE_FRAME, CAMERA_FRAME, ODOM_FRAME, RIGHT_CAMERA_FRAME, WORLD_FRAME, Rig, make_rig
from mp_slam_ros.sim.sensors import WheelOdometry, camera_noise, encode_depth, tof_depth, wheel_odometry
from mp_slam_ros.sim.trajectory import Trajectory, plan_trajectory

#: role -> (topic, type); the right-camera topics exist only with a stereo baseline
TOPICS: dict[str, tuple[str, str]] = {
    "rgb": ("/camera/color/image_raw", "sensor_msgs/msg/Image"),
    "rgb_info": ("/camera/color/camera_info", "sensor_msgs/msg/CameraInfo"),
    "depth": ("/camera/aligned_depth_to_color/image_raw", "sensor_msgs/msg/Image"),
    "depth_info": ("/camera/aligned_depth_to_color/camera_info", "sensor_msgs/msg/CameraInfo"),
    "right": ("/camera/right/image_raw", "sensor_msgs/msg/Image"),
    "right_info": ("/camera/right/camera_info", "sensor_msgs/msg/CameraInfo"),
    "odom": ("/odom", "nav_msgs/msg/Odometry"),
    "ground_truth": ("/ground_truth/tf", "tf2_msgs/msg/TFMessage"),
    "tf_static": ("/tf_static", "tf2_msgs/msg/TFMessage"),
}
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class SequenceSummary:
    """What was written and how long it took."""

    out_dir: Path
    bag_dir: Path
    n_frames: int
    n_messages: int
    bag_bytes: int
    path_length_m: float
    render_s: float
    total_s: float


def check_camera_clearance(house: House, rig: Rig, T_world_base: NDArray[np.float64], times_s: NDArray[np.float64], cfg: SequenceConfig) -> None:
    """Reject configurations that put a camera inside a wall, the floor, ceiling or furniture."""
    margin = 1.5 * cfg.camera.near_m + 0.01
    mounts = [("camera", rig.T_base_cam)] + ([("right camera", rig.T_base_right)] if rig.T_base_right is not None else [])
    for name, T_base in mounts:
        centres = (T_world_base @ T_base)[:, :3, 3]
        for t, centre in zip(times_s, centres):
            hit = house.obstruction(centre, margin)
            if hit is not None:
                raise ConfigError(
                    "camera.offset_m/height_m",
                    (cfg.camera.offset_m, cfg.camera.height_m, cfg.camera.stereo_baseline_m),
                    f"the {name} would be inside or within {margin:.2f} m of {hit} at t={t:.2f} s "
                    f"(position {np.round(centre, 3).tolist()}); move the camera closer to the robot centre",
                )


def _prepare_output(out_dir: Path) -> Path:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError("output", str(out_dir), "exists and is not an empty directory; choose a new one")
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir / "bag"


def generate_sequence(cfg: SequenceConfig, out_dir: str | Path, progress: ProgressCallback | None = None) -> SequenceSummary:
    """Render and write the sequence defined by ``cfg`` into ``out_dir`` (must be new or empty)."""
    started = time.perf_counter()
    cfg.validate()
    house = generate_house(cfg.house, cfg.seed)
    rig = make_rig(cfg.camera)
    traj = plan_trajectory(house, cfg.robot, cfg.duration_s, cfg.seed)
    n_frames = int(cfg.duration_s * cfg.camera.rate_hz + 1e-9)
    frame_times = np.arange(n_frames) / cfg.camera.rate_hz
    T_world_base = traj.T_world_base(frame_times)
    check_camera_clearance(house, rig, T_world_base, frame_times, cfg)
    bag_dir = _prepare_output(Path(out_dir))
    odom = wheel_odometry(traj, cfg.robot, cfg.seed)
    writer = _SequenceWriter(cfg, house, rig, odom)
    with BagWriter(bag_dir, cfg.compression) as bag:
        render_s = writer.write(bag, frame_times, T_world_base, progress)
    _write_side_files(Path(out_dir), cfg, house, rig, traj, odom, frame_times, T_world_base)
    xy = np.stack([traj.x_m, traj.y_m], 1)
    return SequenceSummary(
        out_dir=Path(out_dir),
        bag_dir=bag_dir,
        n_frames=n_frames,
        n_messages=writer.n_messages,
        bag_bytes=sum(f.stat().st_size for f in bag_dir.iterdir()),
        path_length_m=float(np.sum(np.linalg.norm(np.diff(xy, axis=0), axis=1))),
        render_s=render_s,
        total_s=time.perf_counter() - started,
    )


class _SequenceWriter:
    """Writes the time-ordered message stream of one sequence into an open bag."""

    def __init__(self, cfg: SequenceConfig, house: House, rig: Rig, odom: WheelOdometry) -> None:
        self.cfg, self.house, self.rig, self.odom = cfg, house, rig, odom
        self.n_messages = 0
        self.stereo = rig.T_cam_right is not None

    def _stamp(self, t_s: float) -> int:
        return self.cfg.start_time_ns + int(round(t_s * 1e9))

    def _put(self, bag: BagWriter, role: str, stamp_ns: int, message: object) -> None:
        bag.write(TOPICS[role][0], stamp_ns, message)
        self.n_messages += 1

    def write(self, bag: BagWriter, frame_times: NDArray[np.float64], T_world_base: NDArray[np.float64], progress: ProgressCallback | None) -> float:
        """Write every message; returns the seconds spent rendering."""
        for role, (topic, msgtype) in TOPICS.items():
            if self.stereo or role not in ("right", "right_info"):
                bag.add_topic(topic, msgtype, latched=role == "tf_static")
        self._write_static(bag)
        odom_times = np.arange(0.0, frame_times[-1] + 1e-9, 1.0 / self.cfg.robot.odom_rate_hz)
        next_odom = 0
        render_s = 0.0
        for k, t in enumerate(frame_times):
            while next_odom < odom_times.size and odom_times[next_odom] <= t + 1e-12:
                self._write_odom(bag, float(odom_times[next_odom]))
                next_odom += 1
            tick = time.perf_counter()
            self._write_frame(bag, k, float(t), T_world_base[k])
            render_s += time.perf_counter() - tick
            if progress is not None:
                progress(k + 1, frame_times.size)
        return render_s

    def _write_static(self, bag: BagWriter) -> None:
        stamp = self._stamp(0.0)
        transforms = [messages.transform_stamped(self.rig.T_base_cam, stamp, BASE_FRAME, CAMERA_FRAME)]
        if self.rig.T_base_right is not None:
            transforms.append(messages.transform_stamped(self.rig.T_base_right, stamp, BASE_FRAME, RIGHT_CAMERA_FRAME))
        self._put(bag, "tf_static", stamp, messages.tf_msg(transforms))

    def _write_odom(self, bag: BagWriter, t: float) -> None:
        o = self.odom
        values = [float(np.interp(t, o.t_s, a)) for a in (o.x_m, o.y_m, o.yaw_rad, o.v_mps, o.omega_rps)]
        stamp = self._stamp(t)
        self._put(bag, "odom", stamp, messages.odometry_msg(stamp, *values, ODOM_FRAME, BASE_FRAME))

    def _write_frame(self, bag: BagWriter, k: int, t: float, T_world_base: NDArray[np.float64]) -> None:
        cam_cfg, stamp = self.cfg.camera, self._stamp(t)
        rng = np.random.default_rng([self.cfg.seed, 5, k])
        view = render(self.house.scene, self.rig.camera, T_world_base @ self.rig.T_base_cam, cam_cfg.near_m)
        rgb = camera_noise(view.rgb, cam_cfg.image_noise_std, rng)
        depth = encode_depth(tof_depth(view, self.cfg.depth, rng), self.cfg.depth.encoding)
        self._put(bag, "ground_truth", stamp, messages.tf_msg([messages.transform_stamped(T_world_base, stamp, WORLD_FRAME, BASE_FRAME)]))
        self._put(bag, "rgb_info", stamp, messages.camera_info_msg(self.rig.camera, stamp, CAMERA_FRAME))
        self._put(bag, "rgb", stamp, messages.image_msg(rgb, stamp, CAMERA_FRAME))
        self._put(bag, "depth_info", stamp, messages.camera_info_msg(self.rig.camera, stamp, CAMERA_FRAME))
        self._put(bag, "depth", stamp, messages.image_msg(depth, stamp, CAMERA_FRAME))
        if self.rig.T_base_right is not None:
            right = render(self.house.scene, self.rig.camera, T_world_base @ self.rig.T_base_right, cam_cfg.near_m)
            baseline = cam_cfg.stereo_baseline_m
            self._put(bag, "right_info", stamp, messages.camera_info_msg(self.rig.camera, stamp, RIGHT_CAMERA_FRAME, baseline))
            self._put(bag, "right", stamp, messages.image_msg(camera_noise(right.rgb, cam_cfg.image_noise_std, rng), stamp, RIGHT_CAMERA_FRAME))


def _planar_poses(x: NDArray[np.float64], y: NDArray[np.float64], yaw: NDArray[np.float64]) -> NDArray[np.float64]:
    """Poses ``(N, 4, 4)`` of planar states."""
    T = np.tile(np.eye(4), (np.size(x), 1, 1))
    T[:, :3, :3] = Rotation.from_euler("z", np.atleast_1d(yaw)[:, None]).as_matrix()
    T[:, 0, 3], T[:, 1, 3] = x, y
    return T


def _write_side_files(
    out_dir: Path, cfg: SequenceConfig, house: House, rig: Rig, traj: Trajectory, odom: WheelOdometry,
    frame_times: NDArray[np.float64], T_world_base: NDArray[np.float64],
) -> None:
    stamps_s = (cfg.start_time_ns + np.round(frame_times * 1e9)) / 1e9
    write_tum(out_dir / "groundtruth.tum", TumTrajectory.from_matrices(stamps_s, T_world_base), f"ground truth T_{WORLD_FRAME}_{BASE_FRAME}")
    x, y, yaw = (np.interp(frame_times, odom.t_s, a) for a in (odom.x_m, odom.y_m, odom.yaw_rad))
    T_odom_base = _planar_poses(x, y, yaw)
    write_tum(out_dir / "odometry.tum", TumTrajectory.from_matrices(stamps_s, T_odom_base), f"wheel odometry T_{ODOM_FRAME}_{BASE_FRAME}")
    info = {
        "config": cfg.as_dict(),
        "n_frames": int(frame_times.size),
        "camera": {"width": rig.camera.width, "height": rig.camera.height, "K": rig.camera.K.tolist(), "frame_id": CAMERA_FRAME},
        "T_base_cam": rig.T_base_cam.tolist(),
        "T_base_right": None if rig.T_base_right is None else rig.T_base_right.tolist(),
        "T_world_odom": _planar_poses(traj.x_m[:1], traj.y_m[:1], traj.yaw_rad[:1])[0].tolist(),
        "topics": {role: topic for role, (topic, _) in TOPICS.items()},
        "frames": {"world": WORLD_FRAME, "odom": ODOM_FRAME, "base": BASE_FRAME},
        "house": {
            "rooms": [{"index": r.index, "lo_xy": r.lo_xy, "hi_xy": r.hi_xy} for r in house.rooms],
            "doors": [{"rooms": d.rooms, "lo_xy": d.lo_xy, "hi_xy": d.hi_xy} for d in house.doors],
            "twin_rooms": house.twins,
            "n_quads": house.scene.n_quads,
        },
    }
    (out_dir / "sequence.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
