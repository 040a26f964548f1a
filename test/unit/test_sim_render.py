"""Renderer: exact projection and depth, textures fixed to surfaces, culling, speed-independent facts."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from mp_slam_ros.geometry.camera import PinholeCamera
from mp_slam_ros.sim.render import render
from mp_slam_ros.sim.rig import R_BASE_OPTICAL
from mp_slam_ros.sim.scene import QuadBuilder
from mp_slam_ros.sim.textures import build_atlas

CAMERA = PinholeCamera(100.0, 100.0, 79.5, 59.5, width=160, height=120)


def _wall_scene(material_kind: str = "wallpaper"):
    """One textured wall at x = 3 (facing -x), 4 m wide, 3 m high, plus a floor."""
    atlas = build_atlas([("wall", material_kind, 0.004), ("floor", "floor_tiles", 0.004)], seed=7, detail=0.25)
    builder = QuadBuilder(atlas, lights_w=[(0.0, 0.0, 2.5)])
    builder.vertical_wall((3.0, 2.0), (3.0, -2.0), (0.0, 3.0), 0, light=0, label="wall")
    builder.quad(np.array([-1.0, -2.0, 0.0]), np.array([4.0, 0, 0]), np.array([0, 4.0, 0]), 1, light=0, label="floor")
    return builder.build()


def _pose(position, yaw_deg=0.0, pitch_deg=0.0):
    """T_world_cam of an optical frame looking along world +x rotated by yaw, tilted by pitch."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("zy", [yaw_deg, pitch_deg], degrees=True).as_matrix() @ R_BASE_OPTICAL
    T[:3, 3] = position
    return T


def test_known_point_projects_to_rendered_pixel_and_depth() -> None:
    scene = _wall_scene()
    T_world_cam = _pose([0.5, 0.3, 1.2], yaw_deg=12.0, pitch_deg=4.0)
    view = render(scene, CAMERA, T_world_cam)
    rng = np.random.default_rng(0)
    points_w = np.column_stack([np.full(20, 3.0), rng.uniform(-1.0, 1.5, 20), rng.uniform(0.6, 2.0, 20)])
    points_c = (points_w - T_world_cam[:3, 3]) @ T_world_cam[:3, :3]
    uv = CAMERA.project(points_c)
    inside = (uv[:, 0] > 1) & (uv[:, 0] < CAMERA.width - 2) & (uv[:, 1] > 1) & (uv[:, 1] < CAMERA.height - 2)
    assert inside.sum() >= 10
    for (u, v), p_c in zip(uv[inside], points_c[inside]):
        col, row = int(round(u)), int(round(v))
        assert view.surface[row, col] == 0  # the wall
        # depth at the pixel centre is the plane depth there; the point itself is within a pixel
        ray = np.array([(col - CAMERA.cx) / CAMERA.fx, (row - CAMERA.cy) / CAMERA.fy, 1.0])
        normal_c = np.array([-1.0, 0.0, 0.0]) @ T_world_cam[:3, :3]
        plane_depth = normal_c @ p_c / (normal_c @ ray)
        assert view.depth_m[row, col] == pytest.approx(plane_depth, rel=1e-6)
        assert abs(view.depth_m[row, col] - p_c[2]) < 0.02 * p_c[2]


def test_depth_is_exact_plane_depth_everywhere() -> None:
    scene = _wall_scene()
    T_world_cam = _pose([0.0, 0.0, 1.0], yaw_deg=-20.0)
    view = render(scene, CAMERA, T_world_cam)
    rows, cols = np.nonzero(view.surface == 0)
    rays = np.stack([(cols - CAMERA.cx) / CAMERA.fx, (rows - CAMERA.cy) / CAMERA.fy, np.ones(rows.size)], 1)
    origin_c = (np.array([3.0, 0.0, 0.0]) - T_world_cam[:3, 3]) @ T_world_cam[:3, :3]
    normal_c = np.array([-1.0, 0.0, 0.0]) @ T_world_cam[:3, :3]
    expected = (normal_c @ origin_c) / (rays @ normal_c)
    np.testing.assert_allclose(view.depth_m[rows, cols], expected, rtol=1e-6)
    points_w = (rays * expected[:, None]) @ T_world_cam[:3, :3].T + T_world_cam[:3, 3]
    np.testing.assert_allclose(points_w[:, 0], 3.0, atol=1e-5)


def test_texture_is_attached_to_the_surface() -> None:
    """The same wall point has the same colour seen from two different poses."""
    scene = _wall_scene()
    T_a = _pose([1.0, 0.2, 1.2], yaw_deg=5.0)
    T_b = _pose([1.3, -0.2, 1.1], yaw_deg=-8.0)
    view_a, view_b = render(scene, CAMERA, T_a), render(scene, CAMERA, T_b)
    rng = np.random.default_rng(1)
    points_w = np.column_stack([np.full(200, 3.0), rng.uniform(-0.5, 0.5, 200), rng.uniform(0.9, 1.5, 200)])
    diffs = []
    for T, view in ((T_a, view_a), (T_b, view_b)):
        uv = CAMERA.project((points_w - T[:3, 3]) @ T[:3, :3])
        diffs.append(view.albedo[np.round(uv[:, 1]).astype(int), np.round(uv[:, 0]).astype(int)])
    # nearest-pixel lookups of a smooth-ish texture: same colour up to sub-pixel offsets
    assert np.median(np.abs(diffs[0] - diffs[1])) < 0.05
    # and the wall is textured: the albedo varies between points
    assert np.std(diffs[0]) > 0.03


def test_back_faces_and_points_behind_are_not_drawn() -> None:
    scene = _wall_scene()
    behind_wall = render(scene, CAMERA, _pose([4.0, 0.0, 1.0]))  # beyond the wall, looking away
    assert np.all(behind_wall.surface != 0)
    looking_back = render(scene, CAMERA, _pose([3.5, 0.0, 1.0], yaw_deg=180.0))  # wall's back side
    assert np.all(looking_back.surface != 0)


def test_render_is_deterministic_and_shapes_match() -> None:
    scene = _wall_scene("bricks")
    T = _pose([0.0, 0.0, 1.0])
    a, b = render(scene, CAMERA, T), render(scene, CAMERA, T)
    assert a.rgb.shape == (120, 160, 3) and a.rgb.dtype == np.uint8
    assert a.depth_m.dtype == np.float32 and a.surface.dtype == np.int32
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.depth_m, b.depth_m)
    assert np.all(a.depth_m[a.surface >= 0] > 0)
