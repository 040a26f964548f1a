"""Property tests of the vectorized Lie-group helpers (mp_slam_ros.geometry.lie)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mp_slam_ros.geometry import lie

_SETTINGS = settings(max_examples=40, deadline=None)
_TRANSLATION = st.floats(-50.0, 50.0, allow_nan=False)


def _rotation_vectors(count: int = 5, max_angle: float = np.pi - 1e-3) -> st.SearchStrategy:
    """Rotation vectors ``(count, 3)`` with angles in [0, max_angle], including tiny ones."""

    def build(directions: np.ndarray, angles: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(directions, axis=1, keepdims=True)
        unit = np.where(norms > 1e-6, directions / np.maximum(norms, 1e-12), [[0.0, 0.0, 1.0]])
        return unit * angles[:, None]

    angle = st.one_of(st.floats(0.0, max_angle), st.floats(0.0, 1e-5))
    return st.builds(
        build,
        arrays(np.float64, (count, 3), elements=st.floats(-1.0, 1.0)),
        arrays(np.float64, (count,), elements=angle),
    )


def _se3_tangents(count: int = 5) -> st.SearchStrategy:
    return st.builds(
        lambda rho, phi: np.concatenate([rho, phi], axis=1),
        arrays(np.float64, (count, 3), elements=_TRANSLATION),
        _rotation_vectors(count),
    )


def _se2_tangents(count: int = 5) -> st.SearchStrategy:
    theta = st.one_of(st.floats(-np.pi + 1e-3, np.pi - 1e-3), st.floats(-1e-5, 1e-5))
    return st.builds(
        lambda xy, t: np.column_stack([xy, t]),
        arrays(np.float64, (count, 2), elements=_TRANSLATION),
        arrays(np.float64, (count,), elements=theta),
    )


def _numeric_right_jacobian(exp, log, inverse, xi: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """``d log(exp(xi)^-1 exp(xi + d)) / dd`` at 0 by central differences."""
    k = xi.shape[1]
    J = np.zeros((xi.shape[0], k, k))
    T_inv = inverse(exp(xi))
    for axis in range(k):
        d = np.zeros(k)
        d[axis] = h
        J[:, :, axis] = (log(T_inv @ exp(xi + d)) - log(T_inv @ exp(xi - d))) / (2 * h)
    return J


@_SETTINGS
@given(_rotation_vectors())
def test_so3_exp_log_round_trip(phi: np.ndarray) -> None:
    R = lie.so3_exp(phi)
    np.testing.assert_allclose(np.swapaxes(R, 1, 2) @ R, np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    np.testing.assert_allclose(lie.so3_log(R), phi, atol=1e-9)


@_SETTINGS
@given(arrays(np.float64, (4, 3), elements=st.floats(-3.0, 3.0)), arrays(np.float64, (4, 3), elements=st.floats(-3.0, 3.0)))
def test_hat_is_the_cross_product(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(np.einsum("nij,nj->ni", lie.hat(a), b), np.cross(a, b), atol=1e-12)


@_SETTINGS
@given(_se3_tangents())
def test_se3_exp_log_round_trip(xi: np.ndarray) -> None:
    T = lie.se3_exp(xi)
    np.testing.assert_allclose(lie.se3_log(T), xi, atol=1e-8)
    np.testing.assert_allclose(lie.se3_exp(lie.se3_log(T)), T, atol=1e-10)


@_SETTINGS
@given(_se3_tangents(), _se3_tangents())
def test_se3_inverse_compose_and_adjoint(xi: np.ndarray, eta: np.ndarray) -> None:
    T, U = lie.se3_exp(xi), lie.se3_exp(eta)
    np.testing.assert_allclose(T @ lie.se3_inverse(T), np.broadcast_to(np.eye(4), T.shape), atol=1e-10)
    np.testing.assert_allclose(lie.se3_inverse(T @ U), lie.se3_inverse(U) @ lie.se3_inverse(T), atol=1e-9)
    small = 1e-3 * eta
    lhs = T @ lie.se3_exp(small) @ lie.se3_inverse(T)
    rhs = lie.se3_exp(np.einsum("nij,nj->ni", lie.se3_adjoint(T), small))
    np.testing.assert_allclose(lhs, rhs, atol=1e-9)
    np.testing.assert_allclose(lie.se3_adjoint(T @ U), lie.se3_adjoint(T) @ lie.se3_adjoint(U), atol=1e-8)


_GROUPS = {
    "se3": (lie.se3_exp, lie.se3_log, lie.se3_inverse, lie.se3_adjoint, lie.se3_right_jacobian,
            lie.se3_right_jacobian_inv, lie.se3_left_jacobian, lie.se3_left_jacobian_inv, 3),
    "se2": (lie.se2_exp, lie.se2_log, lie.se2_inverse, lie.se2_adjoint, lie.se2_right_jacobian,
            lie.se2_right_jacobian_inv, lie.se2_left_jacobian, lie.se2_left_jacobian_inv, 2),
}


@_SETTINGS
@given(st.data())
@pytest.mark.parametrize("group", sorted(_GROUPS))
def test_se_jacobians(group: str, data: st.DataObject) -> None:
    exp, log, inverse, adjoint, right, right_inv, left, left_inv, d = _GROUPS[group]
    xi = data.draw(_se3_tangents(count=3) if group == "se3" else _se2_tangents(count=3))
    xi = xi / np.maximum(1.0, np.linalg.norm(xi[:, :d], axis=1, keepdims=True) / 5.0)  # keep h well-scaled
    J_r = right(xi)
    np.testing.assert_allclose(J_r, _numeric_right_jacobian(exp, log, inverse, xi), atol=2e-6)
    eye = np.broadcast_to(np.eye(J_r.shape[-1]), J_r.shape)
    np.testing.assert_allclose(J_r @ right_inv(xi), eye, atol=1e-9)
    J_l = left(xi)
    np.testing.assert_allclose(J_l, adjoint(exp(xi)) @ J_r, atol=1e-9)
    np.testing.assert_allclose(J_l @ left_inv(xi), eye, atol=1e-9)


@_SETTINGS
@given(_rotation_vectors(count=3))
def test_so3_jacobians(phi: np.ndarray) -> None:
    J_r = lie.so3_right_jacobian(phi)
    numeric = _numeric_right_jacobian(lie.so3_exp, lie.so3_log, lambda R: np.swapaxes(R, -1, -2), phi)
    np.testing.assert_allclose(J_r, numeric, atol=2e-6)
    eye = np.broadcast_to(np.eye(3), J_r.shape)
    np.testing.assert_allclose(J_r @ lie.so3_right_jacobian_inv(phi), eye, atol=1e-9)
    np.testing.assert_allclose(lie.so3_left_jacobian(phi) @ lie.so3_left_jacobian_inv(phi), eye, atol=1e-9)


@_SETTINGS
@given(_se2_tangents())
def test_se2_exp_log_inverse_adjoint(xi: np.ndarray) -> None:
    T = lie.se2_exp(xi)
    np.testing.assert_allclose(lie.se2_log(T), xi, atol=1e-9)
    np.testing.assert_allclose(T @ lie.se2_inverse(T), np.broadcast_to(np.eye(3), T.shape), atol=1e-10)
    small = 1e-3 * xi[::-1]
    lhs = T @ lie.se2_exp(small) @ lie.se2_inverse(T)
    rhs = lie.se2_exp(np.einsum("nij,nj->ni", lie.se2_adjoint(T), small))
    np.testing.assert_allclose(lhs, rhs, atol=1e-9)
    np.testing.assert_allclose(lie.se2_from_xytheta(lie.se2_to_xytheta(T)), T, atol=1e-12)


@_SETTINGS
@given(arrays(np.float64, (4, 3), elements=_TRANSLATION), arrays(np.float64, (4, 4), elements=st.floats(-1.0, 1.0)))
def test_translation_quaternion_round_trip(t_xyz: np.ndarray, quat: np.ndarray) -> None:
    norms = np.linalg.norm(quat, axis=1, keepdims=True)
    quat_xyzw = np.where(norms > 1e-3, quat / np.maximum(norms, 1e-12), [[0.0, 0.0, 0.0, 1.0]])
    T = lie.se3_from_translation_quat(t_xyz, quat_xyzw)
    t_back, q_back = lie.se3_to_translation_quat(T)
    np.testing.assert_allclose(t_back, t_xyz, atol=1e-12)
    assert np.all(q_back[:, 3] >= 0.0)
    np.testing.assert_allclose(np.abs(np.sum(q_back * quat_xyzw, axis=1)), 1.0, atol=1e-9)


@pytest.mark.parametrize("angle", [np.pi - 1e-7, 1e-9, 0.0])
def test_se3_log_at_the_edges_of_the_angle_range(angle: float) -> None:
    xi = np.array([[1.0, -2.0, 0.5, 0.0, angle, 0.0]])
    np.testing.assert_allclose(lie.se3_exp(lie.se3_log(lie.se3_exp(xi))), lie.se3_exp(xi), atol=1e-9)
