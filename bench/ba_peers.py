"""Peers of the BA benchmark: SciPy ``least_squares`` and GTSAM Levenberg-Marquardt.

Both solve the same :class:`~mp_slam_ros.solvers.ba.BAProblem` (pinhole, no distortion, Huber
loss, fixed gauge cameras) the way their users do:

* SciPy: ``least_squares(method="trf", jac_sparsity=..., x_scale="jac")`` with a vectorized
  NumPy residual and finite-difference Jacobian (as in the SciPy BA cookbook). SciPy's own
  ``loss=`` applies the robust loss to every residual *component*, not to each observation's
  2- or 3-vector, which is a different objective (an earlier version of this benchmark used it and
  SciPy never reached our cost). So SciPy gets our objective exactly: every observation's
  residual ``r`` is returned as ``r sqrt(rho(s) / s)`` (``s = ||r||^2``), whose squared norm is
  ``rho(s)``, with ``loss="linear"``; both minimize ``1/2 sum_o rho(||r_o||^2)``.
* GTSAM 4.3: ``GenericProjectionFactorCal3_S2`` (monocular) or ``GenericStereoFactor3D``
  (RGB-D as virtual stereo: the same ``u_right = u - fx b / z`` residual as ours) with a robust
  Huber noise model per observation (same objective as ours), strong priors on the fixed cameras,
  ``LevenbergMarquardtOptimizer`` with default ordering (COLAMD) and linear solver
  (multifrontal Cholesky). Graph construction is timed separately from the solve.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from mp_slam_ros.geometry.camera import project
from mp_slam_ros.solvers.ba import BAProblem, BAState
from mp_slam_ros.solvers.robust import LossKind

#: GTSAM Levenberg-Marquardt iteration cap (its own default).
GTSAM_MAX_ITERATIONS = 100


@dataclass
class PeerRun:
    """Result of one peer solve (``setup_s``: graph/structure construction, not in ``solve_s``)."""

    state: BAState
    solve_s: float
    setup_s: float
    iterations: int


def _check(problem: BAProblem) -> bool:
    """Raise unless the peers can express ``problem``; return True for RGB-D (all with u_right)."""
    stereo = ~np.isnan(problem.obs_u_right)
    if np.any(problem.intrinsics[:, 4:] != 0.0) or (stereo.any() and not stereo.all()):
        raise ValueError("peers support undistorted problems, all monocular or all RGB-D")
    if np.unique(problem.intrinsics, axis=0).shape[0] != 1 or np.unique(problem.fx_baseline).size != 1:
        raise ValueError("peers support one shared camera")
    if problem.loss.kind not in (LossKind.NONE, LossKind.HUBER):
        raise ValueError("peers support the Huber loss or none")
    return bool(stereo.all())


def solve_scipy(problem: BAProblem, ftol: float, max_nfev: int | None = None) -> PeerRun:
    """SciPy ``least_squares`` (trf, sparse finite-difference Jacobian, Jacobi scaling)."""
    rgbd = _check(problem)
    t0 = time.perf_counter()
    free = np.flatnonzero(~problem.fixed_cams)
    free_index = np.full(problem.num_cams, -1)
    free_index[free] = np.arange(free.size)
    n_pose = 6 * free.size
    T0 = problem.T_world_cam
    x0 = np.concatenate([
        np.column_stack([Rotation.from_matrix(T0[free, :3, :3]).as_rotvec(), T0[free, :3, 3]]).ravel(),
        problem.points_world.ravel(),
    ])
    obs_cam, obs_point, weight = problem.obs_cam, problem.obs_point, problem.obs_weight[:, None]
    intrinsics = problem.intrinsics[obs_cam]

    def poses(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        R, t = T0[:, :3, :3].copy(), T0[:, :3, 3].copy()
        params = x[:n_pose].reshape(-1, 6)
        R[free] = Rotation.from_rotvec(params[:, :3]).as_matrix()
        t[free] = params[:, 3:]
        return R, t

    def residual(x: np.ndarray) -> np.ndarray:
        R, t = poses(x)
        points = x[n_pose:].reshape(-1, 3)
        points_cam = np.einsum("nji,nj->ni", R[obs_cam], points[obs_point] - t[obs_cam])
        uv = project(intrinsics, points_cam)[0]
        if not rgbd:
            return robustify((uv - problem.obs_uv) * weight).ravel()
        u_right = uv[:, 0] - problem.fx_baseline[obs_cam] / points_cam[:, 2]
        predicted = np.column_stack([uv, u_right])
        measured = np.column_stack([problem.obs_uv, problem.obs_u_right])
        return robustify((predicted - measured) * weight).ravel()

    def robustify(whitened: np.ndarray) -> np.ndarray:
        if problem.loss.is_trivial:
            return whitened
        s = np.einsum("ij,ij->i", whitened, whitened)
        factor = np.sqrt(np.divide(problem.loss.rho(s), s, out=np.ones_like(s), where=s > 0.0))
        return whitened * factor[:, None]

    per_obs = 3 if rgbd else 2
    rows = np.repeat(np.arange(per_obs * obs_cam.size), 9)
    cam_cols = 6 * free_index[obs_cam][:, None] + np.arange(6)
    point_cols = n_pose + 3 * obs_point[:, None] + np.arange(3)
    cols = np.repeat(np.concatenate([cam_cols, point_cols], axis=1), per_obs, axis=0).ravel()
    keep = cols >= 0  # fixed cameras have no columns (their indices are negative)
    sparsity = sp.csr_matrix((np.ones(keep.sum()), (rows[keep], cols[keep])), shape=(per_obs * obs_cam.size, x0.size))
    t1 = time.perf_counter()
    result = least_squares(residual, x0, jac_sparsity=sparsity, method="trf", x_scale="jac",
                           ftol=ftol, xtol=1e-12, gtol=1e-12, max_nfev=max_nfev)
    t2 = time.perf_counter()
    R, t = poses(result.x)
    T = np.tile(np.eye(4), (problem.num_cams, 1, 1))
    T[:, :3, :3], T[:, :3, 3] = R, t
    return PeerRun(BAState(T, result.x[n_pose:].reshape(-1, 3)), t2 - t1, t1 - t0, int(result.nfev))


def solve_gtsam(problem: BAProblem, relative_tolerance: float) -> PeerRun:
    """GTSAM Levenberg-Marquardt on projection factors with a Huber noise model."""
    import gtsam  # noqa: PLC0415 (optional peer)
    from gtsam.symbol_shorthand import L, X  # noqa: PLC0415

    rgbd = _check(problem)
    t0 = time.perf_counter()
    graph = gtsam.NonlinearFactorGraph()
    values = gtsam.Values()
    fx, fy, cx, cy = problem.intrinsics[0, :4]
    if rgbd:
        K = gtsam.Cal3_S2Stereo(fx, fy, 0.0, cx, cy, problem.fx_baseline[0] / fx)
    else:
        K = gtsam.Cal3_S2(fx, fy, 0.0, cx, cy)
    sigma = 1.0 / problem.obs_weight
    isotropic = {s: gtsam.noiseModel.Isotropic.Sigma(3 if rgbd else 2, s) for s in np.unique(sigma)}
    if problem.loss.kind is LossKind.HUBER:
        huber = gtsam.noiseModel.mEstimator.Huber.Create(problem.loss.scale)
        models = {s: gtsam.noiseModel.Robust.Create(huber, m) for s, m in isotropic.items()}
    else:
        models = isotropic
    for c, p, (u, v), u_right, s in zip(problem.obs_cam.tolist(), problem.obs_point.tolist(),
                                        problem.obs_uv.tolist(), problem.obs_u_right.tolist(), sigma.tolist()):
        if rgbd:
            graph.add(gtsam.GenericStereoFactor3D(gtsam.StereoPoint2(u, u_right, v), models[s], X(c), L(p), K))
        else:
            graph.add(gtsam.GenericProjectionFactorCal3_S2(np.array([u, v]), models[s], X(c), L(p), K))
    prior = gtsam.noiseModel.Isotropic.Sigma(6, 1e-8)
    for c in range(problem.num_cams):
        pose = gtsam.Pose3(problem.T_world_cam[c])
        values.insert(X(c), pose)
        if problem.fixed_cams[c]:
            graph.add(gtsam.PriorFactorPose3(X(c), pose, prior))
    for p, point in enumerate(problem.points_world):
        values.insert(L(p), point)
    params = gtsam.LevenbergMarquardtParams()
    params.setRelativeErrorTol(relative_tolerance)
    params.setAbsoluteErrorTol(0.0)
    params.setMaxIterations(GTSAM_MAX_ITERATIONS)
    t1 = time.perf_counter()
    optimizer = gtsam.LevenbergMarquardtOptimizer(graph, values, params)
    result = optimizer.optimize()
    t2 = time.perf_counter()
    T = np.stack([result.atPose3(X(c)).matrix() for c in range(problem.num_cams)])
    points = np.stack([result.atPoint3(L(p)) for p in range(problem.num_points)])
    return PeerRun(BAState(T, points), t2 - t1, t1 - t0, int(optimizer.iterations()))
