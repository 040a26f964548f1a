"""numba kernels of the pose-graph residuals and Jacobians (one pass over the edges).

For every edge ``i -> j`` (poses ``T_i``, ``T_j``, inverse measurement ``Z^-1``, whitening ``W``):

    T_rel = T_i^-1 T_j,   e = log(Z^-1 T_rel),   r = W e,
    J_j = W Jr^-1(e),     J_i = -J_j Ad(T_rel^-1),

written straight into the residual vector and into the CSR values of the Jacobian through a
precomputed scatter map (``-1``: a column of a fixed node, not stored). The arithmetic is
float64 scalar code; the caller passes inputs already rounded to the policy's residual dtype
and output arrays of that dtype (with ``round16`` the outputs are rounded to float16 values).
The formulas are those of :mod:`mp_slam_ros.geometry.lie` (tangent ``[rho, phi]``, right
perturbations), which the tests use as the reference.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from mp_slam_ros.fp16 import round_fp16

_SMALL_ANGLE_RAD = 1e-4


@numba.njit(inline="always")
def _store(out, index, value, round16):  # type: ignore[no-untyped-def]
    out[index] = round_fp16(np.float32(value)) if round16 else value


@numba.njit(inline="always")
def _mm(A, B, out):  # type: ignore[no-untyped-def]
    """``out = A @ B`` for small matrices without allocating (BLAS calls cost more here)."""
    for a in range(A.shape[0]):
        for b in range(B.shape[1]):
            acc = 0.0
            for c in range(A.shape[1]):
                acc += A[a, c] * B[c, b]
            out[a, b] = acc


@numba.njit(inline="always")
def _mv(A, x, out):  # type: ignore[no-untyped-def]
    """``out = A @ x`` for a small matrix."""
    for a in range(A.shape[0]):
        acc = 0.0
        for c in range(A.shape[1]):
            acc += A[a, c] * x[c]
        out[a] = acc


@numba.njit(inline="always")
def _edge_jacobian(W, Jr_inv, Ad, J_to, J_from, jacobian, scatter, round16):  # type: ignore[no-untyped-def]
    """``J_j = W Jr^-1``, ``J_i = -J_j Ad`` scattered into the CSR values (``scatter`` (k, 2k))."""
    k = W.shape[0]
    _mm(W, Jr_inv, J_to)
    _mm(J_to, Ad, J_from)
    for a in range(k):
        for b in range(k):
            if scatter[a, b] >= 0:
                _store(jacobian, scatter[a, b], -J_from[a, b], round16)
            if scatter[a, k + b] >= 0:
                _store(jacobian, scatter[a, k + b], J_to[a, b], round16)


@numba.njit(inline="always")
def _so3_log(R, phi):  # type: ignore[no-untyped-def]
    """Rotation vector of ``R`` (3x3) into ``phi`` via a unit quaternion (robust near pi)."""
    trace = R[0, 0] + R[1, 1] + R[2, 2]
    if trace > R[0, 0] and trace > R[1, 1] and trace > R[2, 2]:
        s = 2.0 * math.sqrt(max(1.0 + trace, 0.0))
        w, x, y, z = 0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s
    elif R[0, 0] >= R[1, 1] and R[0, 0] >= R[2, 2]:
        s = 2.0 * math.sqrt(max(1.0 + R[0, 0] - R[1, 1] - R[2, 2], 0.0))
        w, x, y, z = (R[2, 1] - R[1, 2]) / s, 0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s
    elif R[1, 1] >= R[2, 2]:
        s = 2.0 * math.sqrt(max(1.0 - R[0, 0] + R[1, 1] - R[2, 2], 0.0))
        w, x, y, z = (R[0, 2] - R[2, 0]) / s, (R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s
    else:
        s = 2.0 * math.sqrt(max(1.0 - R[0, 0] - R[1, 1] + R[2, 2], 0.0))
        w, x, y, z = (R[1, 0] - R[0, 1]) / s, (R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s
    if w < 0.0:
        w, x, y, z = -w, -x, -y, -z
    norm_v = math.sqrt(x * x + y * y + z * z)
    factor = 2.0 * math.atan2(norm_v, w) / norm_v if norm_v > 1e-12 else 2.0 / w
    phi[0], phi[1], phi[2] = factor * x, factor * y, factor * z


@numba.njit(inline="always")
def _hat(v, out):  # type: ignore[no-untyped-def]
    out[0, 0], out[0, 1], out[0, 2] = 0.0, -v[2], v[1]
    out[1, 0], out[1, 1], out[1, 2] = v[2], 0.0, -v[0]
    out[2, 0], out[2, 1], out[2, 2] = -v[1], v[0], 0.0


@numba.njit(inline="always")
def _so3_left_jacobian_inv(phi, out, K, K2):  # type: ignore[no-untyped-def]
    """``J_l^-1(phi)`` = I - K/2 + c K^2 with c = 1/t^2 - 1/(2 t tan(t/2)) (series near 0)."""
    theta = math.sqrt(phi[0] * phi[0] + phi[1] * phi[1] + phi[2] * phi[2])
    if theta < _SMALL_ANGLE_RAD:
        c = 1.0 / 12.0 + theta * theta / 720.0
    else:
        c = 1.0 / (theta * theta) - 1.0 / (2.0 * theta * math.tan(0.5 * theta))
    _hat(phi, K)
    _mm(K, K, K2)
    for a in range(3):
        for b in range(3):
            out[a, b] = (1.0 if a == b else 0.0) - 0.5 * K[a, b] + c * K2[a, b]


@numba.njit(inline="always")
def _se3_q(rho, phi, out, ws):  # type: ignore[no-untyped-def]
    """Barfoot's ``Q(rho, phi)`` (see ``lie._se3_q_matrix``); ``ws``: (7, 3, 3) workspace."""
    theta = math.sqrt(phi[0] * phi[0] + phi[1] * phi[1] + phi[2] * phi[2])
    t2 = theta * theta
    if theta < _SMALL_ANGLE_RAD:
        c1 = 1.0 / 6.0 - t2 / 120.0
        c2 = 1.0 / 24.0 - t2 / 720.0
        c3 = 1.0 / 120.0 - t2 / 2520.0
    else:
        s, c = math.sin(theta), math.cos(theta)
        c1 = (theta - s) / (t2 * theta)
        c2 = (t2 + 2.0 * c - 2.0) / (2.0 * t2 * t2)
        c3 = (2.0 * theta - 3.0 * s + theta * c) / (2.0 * t2 * t2 * theta)
    P, Rh, PR, RP, PRP, PPR, RPP = ws[0], ws[1], ws[2], ws[3], ws[4], ws[5], ws[6]
    _hat(phi, P)
    _hat(rho, Rh)
    _mm(P, Rh, PR)
    _mm(Rh, P, RP)
    _mm(PR, P, PRP)
    _mm(P, PR, PPR)
    _mm(RP, P, RPP)
    for a in range(3):
        for b in range(3):
            PRPP = 0.0
            PPRP = 0.0
            for c in range(3):
                PRPP += PRP[a, c] * P[c, b]
                PPRP += P[a, c] * PRP[c, b]
            out[a, b] = (
                0.5 * Rh[a, b]
                + c1 * (PR[a, b] + RP[a, b] + PRP[a, b])
                + c2 * (PPR[a, b] + RPP[a, b] - 3.0 * PRP[a, b])
                + c3 * (PRPP + PPRP)
            )


@numba.njit(cache=True, nogil=True, error_model="numpy")
def se3_edges(poses, edge_from, edge_to, Z_inv, W, residual, jacobian, scatter, round16):  # type: ignore[no-untyped-def]
    """Residuals ``(6E,)`` and, when ``jacobian.size``, Jacobian values (module docstring)."""
    T_rel = np.zeros((4, 4))
    E = np.empty((4, 4))
    xi = np.empty(6)
    minus_xi = np.empty(6)
    We = np.empty(6)
    J_inv = np.empty((3, 3))
    Q = np.empty((3, 3))
    ws = np.empty((9, 3, 3))
    Jr_inv = np.zeros((6, 6))
    Ad = np.zeros((6, 6))
    J_to = np.empty((6, 6))
    J_from = np.empty((6, 6))
    t_inv = np.empty(3)
    T_rel[3, 3] = 1.0
    for e in range(edge_from.size):
        Ti, Tj = poses[edge_from[e]], poses[edge_to[e]]
        for a in range(3):
            for b in range(3):
                T_rel[a, b] = Ti[0, a] * Tj[0, b] + Ti[1, a] * Tj[1, b] + Ti[2, a] * Tj[2, b]
            T_rel[a, 3] = (
                Ti[0, a] * (Tj[0, 3] - Ti[0, 3]) + Ti[1, a] * (Tj[1, 3] - Ti[1, 3]) + Ti[2, a] * (Tj[2, 3] - Ti[2, 3])
            )
        _mm(Z_inv[e], T_rel, E)
        _so3_log(E[:3, :3], xi[3:])
        _so3_left_jacobian_inv(xi[3:], J_inv, ws[7], ws[8])
        _mv(J_inv, E[:3, 3], xi[:3])
        _mv(W[e], xi, We)
        for a in range(6):
            _store(residual, 6 * e + a, We[a], round16)
        if jacobian.size == 0:
            continue
        # Jr^-1(xi) = Jl^-1(-xi) = [[A, -A Q(-rho, -phi) A], [0, A]] with A = Jl^-1(-phi).
        for a in range(6):
            minus_xi[a] = -xi[a]
        _so3_left_jacobian_inv(minus_xi[3:], J_inv, ws[7], ws[8])
        _se3_q(minus_xi[:3], minus_xi[3:], Q, ws)
        _mm(J_inv, Q, ws[7])
        _mm(ws[7], J_inv, ws[8])
        # Ad(T_rel^-1) = [[R^T, hat(-R^T t) R^T], [0, R^T]].
        for a in range(3):
            t_inv[a] = -(T_rel[0, a] * T_rel[0, 3] + T_rel[1, a] * T_rel[1, 3] + T_rel[2, a] * T_rel[2, 3])
        _hat(t_inv, ws[0])
        for a in range(3):
            for b in range(3):
                Jr_inv[a, b] = J_inv[a, b]
                Jr_inv[3 + a, 3 + b] = J_inv[a, b]
                Jr_inv[a, 3 + b] = -ws[8][a, b]
                Ad[a, b] = T_rel[b, a]
                Ad[3 + a, 3 + b] = T_rel[b, a]
                Ad[a, 3 + b] = ws[0][a, 0] * T_rel[b, 0] + ws[0][a, 1] * T_rel[b, 1] + ws[0][a, 2] * T_rel[b, 2]
        _edge_jacobian(W[e], Jr_inv, Ad, J_to, J_from, jacobian, scatter[e], round16)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def se2_edges(poses, edge_from, edge_to, Z_inv, W, residual, jacobian, scatter, round16):  # type: ignore[no-untyped-def]
    """The SE(2) version of :func:`se3_edges` (tangent ``[x, y, theta]``)."""
    xi = np.empty(3)
    We = np.empty(3)
    Jr_inv = np.zeros((3, 3))
    Ad = np.zeros((3, 3))
    J_to = np.empty((3, 3))
    J_from = np.empty((3, 3))
    for e in range(edge_from.size):
        Ti, Tj = poses[edge_from[e]], poses[edge_to[e]]
        ci, si = Ti[0, 0], Ti[1, 0]
        dx, dy = Tj[0, 2] - Ti[0, 2], Tj[1, 2] - Ti[1, 2]
        rel_c = ci * Tj[0, 0] + si * Tj[1, 0]
        rel_s = ci * Tj[1, 0] - si * Tj[0, 0]
        rel_x, rel_y = ci * dx + si * dy, -si * dx + ci * dy
        Z = Z_inv[e]
        e_c = Z[0, 0] * rel_c + Z[0, 1] * rel_s
        e_s = Z[1, 0] * rel_c + Z[1, 1] * rel_s
        e_x = Z[0, 0] * rel_x + Z[0, 1] * rel_y + Z[0, 2]
        e_y = Z[1, 0] * rel_x + Z[1, 1] * rel_y + Z[1, 2]
        theta = math.atan2(e_s, e_c)
        if abs(theta) < _SMALL_ANGLE_RAD:
            a_coef, b_coef, c_coef = 1.0 - theta * theta / 6.0, 0.5 - theta * theta / 24.0, 1.0 / 6.0 - theta * theta / 120.0
        else:
            t = abs(theta)
            a_coef, b_coef, c_coef = math.sin(t) / t, (1.0 - math.cos(t)) / (t * t), (t - math.sin(t)) / (t * t * t)
        bt = b_coef * theta
        det = a_coef * a_coef + bt * bt
        xi[0] = (a_coef * e_x + bt * e_y) / det
        xi[1] = (-bt * e_x + a_coef * e_y) / det
        xi[2] = theta
        _mv(W[e], xi, We)
        for a in range(3):
            _store(residual, 3 * e + a, We[a], round16)
        if jacobian.size == 0:
            continue
        # Jr(xi) = [[A, B, u], [-B, A, v], [0, 0, 1]]; its inverse in closed form.
        ct = c_coef * theta
        u = xi[0] * ct - xi[1] * b_coef
        v = xi[0] * b_coef + xi[1] * ct
        Jr_inv[0, 0], Jr_inv[1, 1] = a_coef / det, a_coef / det
        Jr_inv[0, 1], Jr_inv[1, 0] = -bt / det, bt / det
        Jr_inv[0, 2] = -(Jr_inv[0, 0] * u + Jr_inv[0, 1] * v)
        Jr_inv[1, 2] = -(Jr_inv[1, 0] * u + Jr_inv[1, 1] * v)
        Jr_inv[2, 2] = 1.0
        # Ad(T_rel^-1) with T_rel^-1 = (R^T, -R^T t): [[R^T, (t'_y, -t'_x)], [0, 1]].
        inv_x = -(rel_c * rel_x + rel_s * rel_y)
        inv_y = -(-rel_s * rel_x + rel_c * rel_y)
        Ad[0, 0], Ad[0, 1], Ad[1, 0], Ad[1, 1] = rel_c, rel_s, -rel_s, rel_c
        Ad[0, 2], Ad[1, 2], Ad[2, 2] = inv_y, -inv_x, 1.0
        _edge_jacobian(W[e], Jr_inv, Ad, J_to, J_from, jacobian, scatter[e], round16)


@numba.njit(cache=True, nogil=True)
def jacobian_pattern(variable_from, variable_to, k):  # type: ignore[no-untyped-def]
    """CSR pattern of the Jacobian: ``(scatter (E, k, 2k) int64, indices int32, indptr int32)``.

    Edge ``e`` owns rows ``k e .. k e + k - 1``; its dense block row is ``[J_from | J_to]``.
    ``scatter[e, a, b]`` is the CSR value index of block entry ``(a, b)`` (-1 for the columns of
    a fixed node, variable ``-1``); within a row the block of the smaller variable comes first.
    """
    num_edges = variable_from.size
    indptr = np.zeros(num_edges * k + 1, dtype=np.int32)
    scatter = np.full((num_edges, k, 2 * k), -1, dtype=np.int64)
    total = 0
    for e in range(num_edges):
        length = k * ((variable_from[e] >= 0) + (variable_to[e] >= 0))
        for a in range(k):
            indptr[e * k + a + 1] = total + (a + 1) * length
        total += k * length
    indices = np.empty(total, dtype=np.int32)
    for e in range(num_edges):
        v_from, v_to = variable_from[e], variable_to[e]
        to_first = v_to >= 0 and (v_from < 0 or v_to < v_from)
        for a in range(k):
            position = indptr[e * k + a]
            for side in range(2):
                variable = v_to if (side == 0) == to_first else v_from
                if variable < 0:
                    continue
                column = k if variable == v_to else 0
                for b in range(k):
                    scatter[e, a, column + b] = position
                    indices[position] = variable * k + b
                    position += 1
    return scatter, indices, indptr
