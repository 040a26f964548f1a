"""Vectorized Lie-group helpers for SO(3), SE(3) and SE(2).

Conventions (used everywhere in the package):

* Poses are homogeneous matrices ``T_a_b`` of shape ``(N, 4, 4)`` (SE(3)) or ``(N, 3, 3)``
  (SE(2)) that map points from frame ``b`` to frame ``a``: ``p_a = T_a_b @ p_b``.
* SE(3) tangent vectors are ``xi = [rho, phi]`` of shape ``(N, 6)``: translation part first, then
  rotation (the order of g2o's information matrices). SE(2) tangents are ``[x, y, theta]``.
* Perturbations are on the right: ``T (+) delta = T @ exp(delta)``.
* Quaternions are ``quat_xyzw`` (scalar last, as in g2o, TUM and ROS messages).

All functions take stacked inputs (a leading batch axis) and compute in float64.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

FloatArray = NDArray[np.float64]

#: Below this angle the coefficient functions use their Taylor series: their closed forms lose
#: digits to cancellation as the angle shrinks (e.g. ``theta^2 + 2 cos(theta) - 2`` is
#: ``theta^4 / 12`` computed from terms of size 2), while 5 series terms are exact to ~1e-16 here.
_SERIES_BELOW_RAD = 0.2

#: Taylor coefficients (in powers of theta^2) of the coefficient functions below.
_SERIES = {
    "sin_t/t": [1.0, -1 / 6, 1 / 120, -1 / 5040, 1 / 362880],
    "(1-cos_t)/t^2": [1 / 2, -1 / 24, 1 / 720, -1 / 40320, 1 / 3628800],
    "(t-sin_t)/t^3": [1 / 6, -1 / 120, 1 / 5040, -1 / 362880, 1 / 39916800],
    "(t^2+2cos_t-2)/(2t^4)": [1 / 24, -1 / 720, 1 / 40320, -1 / 3628800, 1 / 479001600],
    "(2t-3sin_t+t*cos_t)/(2t^5)": [1 / 120, -1 / 2520, 1 / 120960, -1 / 9979200, 5 / 6227020800],
    "1/t^2-(1+cos_t)/(2t*sin_t)": [1 / 12, 1 / 720, 1 / 30240, 1 / 1209600, 1 / 47900160],
}


def _series(name: str, theta: FloatArray) -> FloatArray:
    """The Taylor series ``name`` of :data:`_SERIES` evaluated at ``theta``."""
    return np.polynomial.polynomial.polyval(theta * theta, _SERIES[name])


def hat(phi: FloatArray) -> FloatArray:
    """Skew-symmetric matrices ``(N, 3, 3)`` of vectors ``phi`` ``(N, 3)``: ``hat(a) @ b = a x b``."""
    phi = np.asarray(phi, dtype=np.float64)
    out = np.zeros(phi.shape[:-1] + (3, 3))
    out[..., 0, 1] = -phi[..., 2]
    out[..., 0, 2] = phi[..., 1]
    out[..., 1, 0] = phi[..., 2]
    out[..., 1, 2] = -phi[..., 0]
    out[..., 2, 0] = -phi[..., 1]
    out[..., 2, 1] = phi[..., 0]
    return out


def so3_exp(phi: FloatArray) -> FloatArray:
    """Rotation matrices ``(N, 3, 3)`` from rotation vectors ``phi`` ``(N, 3)`` (radians)."""
    return Rotation.from_rotvec(np.asarray(phi, dtype=np.float64).reshape(-1, 3)).as_matrix()


def so3_log(R: FloatArray) -> FloatArray:
    """Rotation vectors ``(N, 3)`` (radians, norm <= pi) of rotation matrices ``R`` ``(N, 3, 3)``."""
    return Rotation.from_matrix(np.asarray(R, dtype=np.float64).reshape(-1, 3, 3)).as_rotvec()


def _angle_coefficients(theta: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Return ``(sin t / t, (1 - cos t) / t^2, (t - sin t) / t^3)``, series for small angles."""
    small = theta < _SERIES_BELOW_RAD
    t = np.where(small, 1.0, theta)
    a = np.where(small, _series("sin_t/t", theta), np.sin(t) / t)
    b = np.where(small, _series("(1-cos_t)/t^2", theta), (1.0 - np.cos(t)) / (t * t))
    c = np.where(small, _series("(t-sin_t)/t^3", theta), (t - np.sin(t)) / (t * t * t))
    return a, b, c


def so3_left_jacobian(phi: FloatArray) -> FloatArray:
    """Left Jacobians ``(N, 3, 3)`` of SO(3): ``exp(phi + d) ~ exp(J_l d) exp(phi)``."""
    phi = np.asarray(phi, dtype=np.float64).reshape(-1, 3)
    _, b, c = _angle_coefficients(np.linalg.norm(phi, axis=1))
    K = hat(phi)
    return np.eye(3) + b[:, None, None] * K + c[:, None, None] * (K @ K)


def so3_right_jacobian(phi: FloatArray) -> FloatArray:
    """Right Jacobians ``(N, 3, 3)`` of SO(3): ``exp(phi + d) ~ exp(phi) exp(J_r d)``."""
    return so3_left_jacobian(-np.asarray(phi, dtype=np.float64))


def so3_left_jacobian_inv(phi: FloatArray) -> FloatArray:
    """Inverses ``(N, 3, 3)`` of :func:`so3_left_jacobian` in closed form."""
    phi = np.asarray(phi, dtype=np.float64).reshape(-1, 3)
    theta = np.linalg.norm(phi, axis=1)
    small = theta < _SERIES_BELOW_RAD
    t = np.where(small, 1.0, theta)
    coeff = np.where(
        small,
        _series("1/t^2-(1+cos_t)/(2t*sin_t)", theta),
        1.0 / (t * t) - (1.0 + np.cos(t)) / (2.0 * t * np.sin(t)),
    )
    K = hat(phi)
    return np.eye(3) - 0.5 * K + coeff[:, None, None] * (K @ K)


def so3_right_jacobian_inv(phi: FloatArray) -> FloatArray:
    """Inverses ``(N, 3, 3)`` of :func:`so3_right_jacobian`."""
    return so3_left_jacobian_inv(-np.asarray(phi, dtype=np.float64))


def _se3_q_matrix(rho: FloatArray, phi: FloatArray) -> FloatArray:
    """Barfoot's ``Q(rho, phi)`` block ``(N, 3, 3)`` of the SE(3) left Jacobian."""
    theta = np.linalg.norm(phi, axis=1)
    small = theta < _SERIES_BELOW_RAD
    t = np.where(small, 1.0, theta)
    _, _, c1 = _angle_coefficients(theta)
    c2 = np.where(
        small, _series("(t^2+2cos_t-2)/(2t^4)", theta), (t * t + 2.0 * np.cos(t) - 2.0) / (2.0 * t**4)
    )
    c3 = np.where(
        small,
        _series("(2t-3sin_t+t*cos_t)/(2t^5)", theta),
        (2.0 * t - 3.0 * np.sin(t) + t * np.cos(t)) / (2.0 * t**5),
    )
    P, R = hat(phi), hat(rho)
    PR, RP = P @ R, R @ P
    PRP = PR @ P
    return (
        0.5 * R
        + c1[:, None, None] * (PR + RP + PRP)
        + c2[:, None, None] * (P @ PR + RP @ P - 3.0 * PRP)
        + c3[:, None, None] * (PRP @ P + P @ PRP)
    )


def se3_exp(xi: FloatArray) -> FloatArray:
    """Poses ``(N, 4, 4)`` from tangent vectors ``xi = [rho, phi]`` ``(N, 6)``."""
    xi = np.asarray(xi, dtype=np.float64).reshape(-1, 6)
    T = np.zeros((xi.shape[0], 4, 4))
    T[:, :3, :3] = so3_exp(xi[:, 3:])
    T[:, :3, 3] = np.einsum("nij,nj->ni", so3_left_jacobian(xi[:, 3:]), xi[:, :3])
    T[:, 3, 3] = 1.0
    return T


def se3_log(T: FloatArray) -> FloatArray:
    """Tangent vectors ``(N, 6)`` ``[rho, phi]`` of poses ``T`` ``(N, 4, 4)``."""
    T = np.asarray(T, dtype=np.float64).reshape(-1, 4, 4)
    phi = so3_log(T[:, :3, :3])
    rho = np.einsum("nij,nj->ni", so3_left_jacobian_inv(phi), T[:, :3, 3])
    return np.concatenate([rho, phi], axis=1)


def se3_inverse(T: FloatArray) -> FloatArray:
    """Inverse poses ``(N, 4, 4)`` (uses the rotation transpose, no general matrix inverse)."""
    T = np.asarray(T, dtype=np.float64)
    R_t = np.swapaxes(T[..., :3, :3], -1, -2)
    out = np.zeros_like(T)
    out[..., :3, :3] = R_t
    out[..., :3, 3] = -np.einsum("...ij,...j->...i", R_t, T[..., :3, 3])
    out[..., 3, 3] = 1.0
    return out


def se3_adjoint(T: FloatArray) -> FloatArray:
    """Adjoint matrices ``(N, 6, 6)``: ``T exp(xi) T^-1 = exp(Ad(T) xi)`` for ``xi = [rho, phi]``."""
    T = np.asarray(T, dtype=np.float64).reshape(-1, 4, 4)
    R = T[:, :3, :3]
    Ad = np.zeros((T.shape[0], 6, 6))
    Ad[:, :3, :3] = R
    Ad[:, 3:, 3:] = R
    Ad[:, :3, 3:] = hat(T[:, :3, 3]) @ R
    return Ad


def se3_left_jacobian(xi: FloatArray) -> FloatArray:
    """Left Jacobians ``(N, 6, 6)`` of SE(3): ``exp(xi + d) ~ exp(J_l d) exp(xi)``."""
    xi = np.asarray(xi, dtype=np.float64).reshape(-1, 6)
    J = np.zeros((xi.shape[0], 6, 6))
    J_so3 = so3_left_jacobian(xi[:, 3:])
    J[:, :3, :3] = J_so3
    J[:, 3:, 3:] = J_so3
    J[:, :3, 3:] = _se3_q_matrix(xi[:, :3], xi[:, 3:])
    return J


def se3_left_jacobian_inv(xi: FloatArray) -> FloatArray:
    """Inverses ``(N, 6, 6)`` of :func:`se3_left_jacobian` in closed form."""
    xi = np.asarray(xi, dtype=np.float64).reshape(-1, 6)
    J_inv = np.zeros((xi.shape[0], 6, 6))
    J_so3_inv = so3_left_jacobian_inv(xi[:, 3:])
    Q = _se3_q_matrix(xi[:, :3], xi[:, 3:])
    J_inv[:, :3, :3] = J_so3_inv
    J_inv[:, 3:, 3:] = J_so3_inv
    J_inv[:, :3, 3:] = -J_so3_inv @ Q @ J_so3_inv
    return J_inv


def se3_right_jacobian(xi: FloatArray) -> FloatArray:
    """Right Jacobians ``(N, 6, 6)`` of SE(3): ``exp(xi + d) ~ exp(xi) exp(J_r d)``."""
    return se3_left_jacobian(-np.asarray(xi, dtype=np.float64))


def se3_right_jacobian_inv(xi: FloatArray) -> FloatArray:
    """Inverses ``(N, 6, 6)`` of :func:`se3_right_jacobian`."""
    return se3_left_jacobian_inv(-np.asarray(xi, dtype=np.float64))


def se3_at(stamps_ns: Sequence[int], poses: Sequence[FloatArray], stamp_ns: int) -> FloatArray | None:
    """The pose ``(4, 4)`` at ``stamp_ns`` of a trajectory sampled at increasing ``stamps_ns``:
    geodesic interpolation between the two samples around it (None outside the samples)."""
    index = bisect_left(stamps_ns, stamp_ns)
    if index < len(stamps_ns) and stamps_ns[index] == stamp_ns:
        return np.array(poses[index], dtype=np.float64)
    if index == 0 or index == len(stamps_ns):
        return None
    t0, t1 = stamps_ns[index - 1], stamps_ns[index]
    alpha = (stamp_ns - t0) / (t1 - t0)
    return se3_interpolate(np.asarray(poses[index - 1])[None], np.asarray(poses[index])[None], np.array([alpha]))[0]


def se3_interpolate(T0: FloatArray, T1: FloatArray, alpha: FloatArray) -> FloatArray:
    """Geodesic interpolation ``T0 exp(alpha log(T0^-1 T1))`` ``(N, 4, 4)`` between poses
    ``(N, 4, 4)`` at fractions ``alpha`` ``(N,)`` (0: ``T0``, 1: ``T1``)."""
    delta = se3_log(se3_inverse(T0) @ T1).reshape(-1, 6)
    return T0 @ se3_exp(np.asarray(alpha, dtype=np.float64)[:, None] * delta).reshape(-1, 4, 4)


def se3_from_translation_quat(t_xyz: FloatArray, quat_xyzw: FloatArray) -> FloatArray:
    """Poses ``(N, 4, 4)`` from translations ``(N, 3)`` and unit quaternions ``(N, 4)`` xyzw."""
    t_xyz = np.asarray(t_xyz, dtype=np.float64).reshape(-1, 3)
    T = np.zeros((t_xyz.shape[0], 4, 4))
    T[:, :3, :3] = Rotation.from_quat(np.asarray(quat_xyzw, dtype=np.float64).reshape(-1, 4)).as_matrix()
    T[:, :3, 3] = t_xyz
    T[:, 3, 3] = 1.0
    return T


def se3_to_translation_quat(T: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Translations ``(N, 3)`` and unit quaternions ``(N, 4)`` xyzw (``qw >= 0``) of poses."""
    T = np.asarray(T, dtype=np.float64).reshape(-1, 4, 4)
    quat_xyzw = Rotation.from_matrix(T[:, :3, :3]).as_quat(canonical=True)
    return T[:, :3, 3].copy(), quat_xyzw


def se2_exp(xi: FloatArray) -> FloatArray:
    """SE(2) poses ``(N, 3, 3)`` from tangent vectors ``[x, y, theta]`` ``(N, 3)``."""
    xi = np.asarray(xi, dtype=np.float64).reshape(-1, 3)
    theta = xi[:, 2]
    a, b, _ = _angle_coefficients(np.abs(theta))
    c, s = np.cos(theta), np.sin(theta)
    V = np.zeros((xi.shape[0], 2, 2))
    V[:, 0, 0] = a
    V[:, 1, 1] = a
    V[:, 0, 1] = -b * theta
    V[:, 1, 0] = b * theta
    T = np.zeros((xi.shape[0], 3, 3))
    T[:, 0, 0], T[:, 0, 1], T[:, 1, 0], T[:, 1, 1] = c, -s, s, c
    T[:, :2, 2] = np.einsum("nij,nj->ni", V, xi[:, :2])
    T[:, 2, 2] = 1.0
    return T


def se2_log(T: FloatArray) -> FloatArray:
    """Tangent vectors ``(N, 3)`` ``[x, y, theta]`` (theta in (-pi, pi]) of SE(2) poses."""
    T = np.asarray(T, dtype=np.float64).reshape(-1, 3, 3)
    theta = np.arctan2(T[:, 1, 0], T[:, 0, 0])
    a, b, _ = _angle_coefficients(np.abs(theta))
    det = a * a + (b * theta) ** 2
    V_inv = np.zeros((T.shape[0], 2, 2))
    V_inv[:, 0, 0] = a / det
    V_inv[:, 1, 1] = a / det
    V_inv[:, 0, 1] = b * theta / det
    V_inv[:, 1, 0] = -b * theta / det
    rho = np.einsum("nij,nj->ni", V_inv, T[:, :2, 2])
    return np.concatenate([rho, theta[:, None]], axis=1)


def se2_inverse(T: FloatArray) -> FloatArray:
    """Inverse SE(2) poses ``(N, 3, 3)``."""
    T = np.asarray(T, dtype=np.float64)
    R_t = np.swapaxes(T[..., :2, :2], -1, -2)
    out = np.zeros_like(T)
    out[..., :2, :2] = R_t
    out[..., :2, 2] = -np.einsum("...ij,...j->...i", R_t, T[..., :2, 2])
    out[..., 2, 2] = 1.0
    return out


def se2_adjoint(T: FloatArray) -> FloatArray:
    """SE(2) adjoints ``(N, 3, 3)`` for tangents ordered ``[x, y, theta]``."""
    T = np.asarray(T, dtype=np.float64).reshape(-1, 3, 3)
    Ad = np.zeros((T.shape[0], 3, 3))
    Ad[:, :2, :2] = T[:, :2, :2]
    Ad[:, 0, 2] = T[:, 1, 2]
    Ad[:, 1, 2] = -T[:, 0, 2]
    Ad[:, 2, 2] = 1.0
    return Ad


def se2_right_jacobian(xi: FloatArray) -> FloatArray:
    """Right Jacobians ``(N, 3, 3)`` of SE(2): ``exp(xi + d) ~ exp(xi) exp(J_r d)``."""
    xi = np.asarray(xi, dtype=np.float64).reshape(-1, 3)
    rho_x, rho_y, theta = xi[:, 0], xi[:, 1], xi[:, 2]
    a, b, c = _angle_coefficients(np.abs(theta))
    b_theta, c_theta = b * theta, c * theta  # (1 - cos t) / t and (t - sin t) / t^2
    J = np.zeros((xi.shape[0], 3, 3))
    J[:, 0, 0], J[:, 0, 1], J[:, 1, 0], J[:, 1, 1] = a, b_theta, -b_theta, a
    J[:, 0, 2] = rho_x * c_theta - rho_y * b
    J[:, 1, 2] = rho_x * b + rho_y * c_theta
    J[:, 2, 2] = 1.0
    return J


def se2_right_jacobian_inv(xi: FloatArray) -> FloatArray:
    """Inverses ``(N, 3, 3)`` of :func:`se2_right_jacobian` in closed form."""
    J = se2_right_jacobian(xi)
    a, b_theta = J[:, 0, 0], J[:, 0, 1]
    det = a * a + b_theta * b_theta
    J_inv = np.zeros_like(J)
    J_inv[:, 0, 0], J_inv[:, 1, 1] = a / det, a / det
    J_inv[:, 0, 1], J_inv[:, 1, 0] = -b_theta / det, b_theta / det
    J_inv[:, :2, 2] = -np.einsum("nij,nj->ni", J_inv[:, :2, :2], J[:, :2, 2])
    J_inv[:, 2, 2] = 1.0
    return J_inv


def se2_left_jacobian(xi: FloatArray) -> FloatArray:
    """Left Jacobians ``(N, 3, 3)`` of SE(2): ``exp(xi + d) ~ exp(J_l d) exp(xi)``."""
    return se2_right_jacobian(-np.asarray(xi, dtype=np.float64))


def se2_left_jacobian_inv(xi: FloatArray) -> FloatArray:
    """Inverses ``(N, 3, 3)`` of :func:`se2_left_jacobian`."""
    return se2_right_jacobian_inv(-np.asarray(xi, dtype=np.float64))


def se2_from_xytheta(xy_theta: FloatArray) -> FloatArray:
    """SE(2) poses ``(N, 3, 3)`` from ``(N, 3)`` rows ``[x, y, theta]`` (not a tangent vector)."""
    xy_theta = np.asarray(xy_theta, dtype=np.float64).reshape(-1, 3)
    c, s = np.cos(xy_theta[:, 2]), np.sin(xy_theta[:, 2])
    T = np.zeros((xy_theta.shape[0], 3, 3))
    T[:, 0, 0], T[:, 0, 1], T[:, 1, 0], T[:, 1, 1] = c, -s, s, c
    T[:, :2, 2] = xy_theta[:, :2]
    T[:, 2, 2] = 1.0
    return T


def se2_to_xytheta(T: FloatArray) -> FloatArray:
    """Rows ``[x, y, theta]`` ``(N, 3)`` of SE(2) poses (theta in (-pi, pi])."""
    T = np.asarray(T, dtype=np.float64).reshape(-1, 3, 3)
    return np.stack([T[:, 0, 2], T[:, 1, 2], np.arctan2(T[:, 1, 0], T[:, 0, 0])], axis=1)
