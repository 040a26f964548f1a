"""Pinhole projection with BAL radial distortion: formula, Jacobian, image bounds, unprojection."""

from __future__ import annotations

import numpy as np
import pytest

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.geometry.camera import PinholeCamera, project

CAMERA = PinholeCamera(520.0, 515.0, 320.0, 240.0, k1=0.03, k2=-0.004, width=640, height=480, baseline_m=0.08)


def _points(count: int = 50, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(-1, 1, count), rng.uniform(-0.8, 0.8, count), rng.uniform(0.5, 5, count)])


def test_projection_follows_the_documented_model() -> None:
    p = _points()
    xn, yn = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
    r2 = xn**2 + yn**2
    d = 1 + CAMERA.k1 * r2 + CAMERA.k2 * r2**2
    expected = np.column_stack([CAMERA.fx * d * xn + CAMERA.cx, CAMERA.fy * d * yn + CAMERA.cy])
    np.testing.assert_allclose(CAMERA.project(p), expected, rtol=1e-13)


@pytest.mark.parametrize("k1, k2", [(0.0, 0.0), (0.03, -0.004), (-0.2, 0.05)])
def test_jacobian_matches_finite_differences(k1: float, k2: float) -> None:
    intrinsics = np.array([520.0, 515.0, 320.0, 240.0, k1, k2])
    p = _points(seed=1)
    _, J = project(intrinsics, p, with_jacobian=True)
    eps = 1e-6
    for axis in range(3):
        d = np.zeros(3)
        d[axis] = eps
        numeric = (project(intrinsics, p + d)[0] - project(intrinsics, p - d)[0]) / (2 * eps)
        np.testing.assert_allclose(J[:, :, axis], numeric, rtol=1e-6, atol=1e-5)


def test_per_point_intrinsics_and_float32() -> None:
    p = _points(4)
    rows = np.tile(CAMERA.intrinsics, (4, 1))
    rows[2, 0] = 600.0
    uv = project(rows, p)[0]
    assert uv[2, 0] != pytest.approx(CAMERA.project(p[2:3])[0, 0])
    uv32 = project(CAMERA.intrinsics, p.astype(np.float32))[0]
    assert uv32.dtype == np.float32
    np.testing.assert_allclose(uv32, CAMERA.project(p), rtol=1e-6)


def test_point_on_the_camera_plane_is_not_finite() -> None:
    assert not np.all(np.isfinite(CAMERA.project(np.array([[0.1, 0.2, 0.0]]))))


def test_in_image_and_unproject_round_trip() -> None:
    p = _points(200, seed=2)
    inside = CAMERA.in_image(p)
    uv = CAMERA.project(p)
    assert np.all((uv[inside] >= 0) & (uv[inside] <= [639, 479]))
    assert not CAMERA.in_image(np.array([[0.0, 0.0, -1.0]]))[0]
    back = CAMERA.unproject(uv[inside], p[inside, 2])
    np.testing.assert_allclose(back, p[inside], atol=1e-9)


def test_right_coordinate_of_depth() -> None:
    u = np.array([300.0])
    assert CAMERA.right_coordinate(u, np.array([2.0]))[0] == pytest.approx(300.0 - 520.0 * 0.08 / 2.0)


@pytest.mark.parametrize("field, value", [("fx", 0.0), ("fy", -1.0), ("cx", np.nan), ("k1", np.inf)])
def test_invalid_intrinsics_name_the_field(field: str, value: float) -> None:
    kwargs = dict(fx=500.0, fy=500.0, cx=320.0, cy=240.0)
    kwargs[field] = value
    with pytest.raises(ConfigError, match=f"camera.{field}"):
        PinholeCamera(**kwargs)


def test_from_matrix_reads_a_calibration_or_projection_matrix() -> None:
    P = np.array([[718.9, 0.0, 607.2, -386.1], [0.0, 718.8, 185.2, 0.0], [0.0, 0.0, 1.0, 0.0]])
    camera = PinholeCamera.from_matrix(P, width=1241, height=376, baseline_m=0.54)
    assert (camera.fx, camera.fy, camera.cx, camera.cy, camera.k1) == (718.9, 718.8, 607.2, 185.2, 0.0)
    assert (camera.width, camera.height, camera.baseline_m) == (1241, 376, 0.54)
    np.testing.assert_array_equal(PinholeCamera.from_matrix(camera.K).K, camera.K)
    with pytest.raises(ConfigError, match="camera.fx"):
        PinholeCamera.from_matrix(np.zeros((3, 3)))
