"""House generation, trajectory, sensors and configuration checks of the simulator."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.sim.config import CameraConfig, HouseConfig, RobotConfig, SequenceConfig
from mp_slam_ros.sim.house import generate_house
from mp_slam_ros.sim.rig import make_rig
from mp_slam_ros.sim.sensors import wheel_odometry
from mp_slam_ros.sim.sequence import check_camera_clearance
from mp_slam_ros.sim.trajectory import SIM_RATE_HZ, floor_grid, plan_trajectory

HOUSE = HouseConfig(texture_detail=0.1)


@pytest.fixture(scope="module")
def house():
    return generate_house(HOUSE, seed=11)


@pytest.fixture(scope="module")
def trajectory(house):
    return plan_trajectory(house, RobotConfig(), duration_s=60.0, seed=11)


def test_house_is_deterministic_and_seed_dependent(house) -> None:
    again = generate_house(HOUSE, seed=11)
    np.testing.assert_array_equal(again.scene.origin_w, house.scene.origin_w)
    np.testing.assert_array_equal(again.scene.atlas.texels, house.scene.atlas.texels)
    other = generate_house(HOUSE, seed=12)
    assert other.scene.n_quads != house.scene.n_quads or not np.array_equal(other.scene.origin_w, house.scene.origin_w)


def test_house_has_rooms_doors_furniture_and_closed_walls(house) -> None:
    assert len(house.rooms) == HOUSE.n_rooms
    assert len(house.doors) >= HOUSE.n_rooms - 1  # connected
    assert any("shelf" in s.label for s in house.solids)
    normals = house.scene.normal_w
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0)
    # every room centre at camera height is free space, a point inside a wall is not
    for room in house.rooms:
        assert house.obstruction(np.array([*room.center_xy, 0.6]), 0.1) is None
    first = house.rooms[0]
    wall_point = np.array([first.hi_xy[0] + HOUSE.wall_thickness_m / 2, first.lo_xy[1] + 0.2, 1.0])
    assert "wall" in house.obstruction(wall_point, 0.05)
    assert house.obstruction(np.array([*first.center_xy, HOUSE.wall_height_m - 0.01]), 0.05) == "the ceiling"


def test_twin_rooms_look_alike() -> None:
    twin = generate_house(replace(HOUSE, twin_rooms=True), seed=5)
    a, b = twin.twins
    offset = np.array([*np.subtract(twin.rooms[b].lo_xy, twin.rooms[a].lo_xy), 0.0])
    solids_a = [s for s in twin.solids if s.label.startswith(f"room{a}/")]
    solids_b = [s for s in twin.solids if s.label.startswith(f"room{b}/")]
    assert len(solids_a) == len(solids_b) > 0
    for sa, sb in zip(solids_a, solids_b):
        np.testing.assert_allclose(np.add(sa.lo, offset), sb.lo, atol=1e-9)
    walls = lambda r: [(m, tuple(o)) for m, o, label in zip(twin.scene.material, twin.scene.tex_offset_m, twin.scene.labels) if label.startswith(f"room{r}/floor")]  # noqa: E731
    assert walls(a) == walls(b)


def test_trajectory_is_feasible_and_revisits_rooms(house, trajectory) -> None:
    cfg = RobotConfig()
    assert trajectory.t_s[-1] >= 60.0
    assert np.all(np.abs(trajectory.v_mps) <= cfg.max_speed_mps + 1e-9)
    assert np.all(np.abs(trajectory.omega_rps) <= cfg.max_yaw_rate_rps + 1e-9)
    assert np.all(np.abs(np.diff(trajectory.v_mps)) * SIM_RATE_HZ <= cfg.max_accel_mps2 + 1e-6)
    # the robot body stays clear of walls and furniture
    grid = floor_grid(house)
    cells = [grid.cell((x, y)) for x, y in zip(trajectory.x_m[::20], trajectory.y_m[::20])]
    clearance = np.array([grid.clearance_m[r, c] for r, c in cells])
    assert clearance.min() > cfg.radius_m
    # small tilts from floor bumps
    assert np.degrees(trajectory.roll_rad).std() == pytest.approx(cfg.bump_tilt_deg, rel=0.5)
    assert np.abs(np.degrees(trajectory.pitch_rad)).max() < 4 * cfg.bump_tilt_deg


def test_trajectory_loops(house, trajectory) -> None:
    """It comes back near its start after going > 1.5 m away (a loop), then tours other rooms."""
    xy = np.stack([trajectory.x_m, trajectory.y_m], 1)
    from_start = np.linalg.norm(xy - xy[0], axis=1)
    went_away = np.argmax(from_start > 1.5)
    assert went_away > 0 and from_start[went_away:].min() < 0.5
    room_of = [next((r.index for r in house.rooms if r.lo_xy[0] <= x <= r.hi_xy[0] and r.lo_xy[1] <= y <= r.hi_xy[1]), -1) for x, y in xy[::100]]
    assert len({r for r in room_of if r >= 0}) >= 2


def test_wheel_odometry_drifts_but_follows(trajectory) -> None:
    odom = wheel_odometry(trajectory, RobotConfig(), seed=3)
    travelled = np.sum(np.abs(trajectory.v_mps)) / SIM_RATE_HZ
    odom_travelled = np.sum(np.abs(odom.v_mps)) / SIM_RATE_HZ
    assert odom_travelled == pytest.approx(travelled, rel=0.05)
    T = trajectory.T_world_base(trajectory.t_s)
    true_xy = np.einsum("ij,nj->ni", T[0, :2, :2].T, T[:, :2, 3] - T[0, :2, 3])
    error = np.hypot(odom.x_m - true_xy[:, 0], odom.y_m - true_xy[:, 1])
    assert 0.0 < error[-1] < 0.2 * travelled


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        (SequenceConfig(duration_s=0.0), "duration_s"),
        (SequenceConfig(duration_s=-3.0), "duration_s"),
        (SequenceConfig(camera=CameraConfig(height_m=2.0)), "camera.height_m"),
        (SequenceConfig(camera=CameraConfig(offset_m=(1.5, 0.0))), "camera.offset_m"),
        (SequenceConfig(camera=CameraConfig(image_scale=0.0)), "camera.image_scale"),
        (SequenceConfig(house=HouseConfig(n_rooms=1)), "house.n_rooms"),
        (SequenceConfig(house=HouseConfig(room_size_m=(5.0, 3.0))), "house.room_size_m"),
    ],
)
def test_impossible_configs_are_rejected(cfg: SequenceConfig, key: str) -> None:
    with pytest.raises(ConfigError) as error:
        cfg.validate()
    assert error.value.key == key
    assert key in str(error.value)


def test_camera_inside_a_wall_is_rejected(house) -> None:
    cfg = SequenceConfig(house=HOUSE)
    rig = make_rig(cfg.camera)
    room = house.rooms[0]
    T_world_base = np.tile(np.eye(4), (2, 1, 1))
    T_world_base[:, :3, 3] = [*room.center_xy, 0.0]
    check_camera_clearance(house, rig, T_world_base, np.array([0.0, 0.1]), cfg)  # fine
    T_world_base[1, 0, 3] = room.hi_xy[0] - 0.05  # camera (0.1 m ahead) ends up in the wall
    with pytest.raises(ConfigError, match=r"camera would be inside or within .* of a wall of room0 .*at t=0.10 s"):
        check_camera_clearance(house, rig, T_world_base, np.array([0.0, 0.1]), cfg)


def test_tof_depth_model() -> None:
    from mp_slam_ros.sim.config import DepthConfig
    from mp_slam_ros.sim.render import RenderResult
    from mp_slam_ros.sim.sensors import tof_depth

    h, w = 200, 200
    depth = np.full((h, w), 2.0, np.float32)
    depth[:, 150:] = 3.0  # a depth step -> mixed pixels on both sides of it
    depth[:10] = 7.0  # beyond max range
    cos = np.ones((h, w), np.float32)
    cos[190:] = 0.05  # grazing
    albedo = np.full((h, w), 0.5, np.float32)
    cfg = DepthConfig(random_dropout=0.0)
    view = RenderResult(np.zeros((h, w, 3), np.uint8), depth, np.zeros((h, w), np.int32), albedo, cos)
    noisy = tof_depth(view, cfg, np.random.default_rng(0))
    assert np.all(noisy[:10] == 0) and np.all(noisy[190:] == 0)
    assert np.all(noisy[20:180, 149:151] == 0) and np.all(noisy[20:180, 148] > 0)
    flat = noisy[20:180, :140]
    expected_sigma = (cfg.sigma0_m + cfg.sigma1 * 2.0 + cfg.sigma2_per_m * 4.0) / np.sqrt(0.5)
    assert flat.mean() == pytest.approx(2.0, abs=3e-4)
    assert flat.std() == pytest.approx(expected_sigma, rel=0.03)
    again = tof_depth(view, cfg, np.random.default_rng(0))
    np.testing.assert_array_equal(noisy, again)
