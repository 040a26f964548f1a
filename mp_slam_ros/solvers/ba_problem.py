"""Inputs of a bundle adjustment (:class:`BAProblem`) and its state (:class:`BAState`).

Conventions are those of :mod:`mp_slam_ros.solvers.ba`: poses ``T_world_cam`` (optical camera
frame), world landmarks, pixel observations with per-observation weights (1/sigma), optional
right-image coordinates for stereo / RGB-D, fixed (gauge) cameras and one robust loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.errors import ProblemError
from mp_slam_ros.geometry.camera import PinholeCamera
from mp_slam_ros.solvers.robust import RobustLoss

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass
class BAProblem:
    """Inputs of a bundle adjustment (initial values, measurements, weights, loss, gauge).

    ``intrinsics`` is ``(C, 6)`` ``[fx, fy, cx, cy, k1, k2]`` per camera (see
    :meth:`from_camera` for one shared :class:`PinholeCamera`). ``obs_u_right`` holds the
    right-image coordinate of stereo/RGB-D observations (NaN where there is none) and needs
    ``fx_baseline`` ``(C,)`` = ``fx * baseline_m``. ``obs_weight`` multiplies each observation's
    residuals (1/sigma, 1/px). ``fixed_cams`` ``(C,)`` marks gauge cameras that are not optimized.
    """

    T_world_cam: FloatArray
    points_world: FloatArray
    intrinsics: FloatArray
    obs_cam: IntArray
    obs_point: IntArray
    obs_uv: FloatArray
    obs_weight: FloatArray | None = None
    obs_u_right: FloatArray | None = None
    fx_baseline: FloatArray | None = None
    fixed_cams: NDArray[np.bool_] | None = None
    loss: RobustLoss = field(default_factory=RobustLoss)

    def __post_init__(self) -> None:
        self.T_world_cam = np.array(self.T_world_cam, dtype=np.float64).reshape(-1, 4, 4)
        self.points_world = np.array(self.points_world, dtype=np.float64).reshape(-1, 3)
        num_cams, num_obs = self.T_world_cam.shape[0], np.size(self.obs_cam)
        self.intrinsics = np.array(
            np.broadcast_to(np.asarray(self.intrinsics, dtype=np.float64), (num_cams, 6))
        )
        self.obs_cam = np.asarray(self.obs_cam, dtype=np.int64).reshape(-1)
        self.obs_point = np.asarray(self.obs_point, dtype=np.int64).reshape(-1)
        self.obs_uv = np.array(self.obs_uv, dtype=np.float64).reshape(-1, 2)
        self.obs_weight = _per_item(self.obs_weight, num_obs, 1.0)
        self.obs_u_right = _per_item(self.obs_u_right, num_obs, np.nan)
        self.fx_baseline = _per_item(self.fx_baseline, num_cams, 0.0)
        fixed = np.zeros(num_cams, bool) if self.fixed_cams is None else self.fixed_cams
        self.fixed_cams = np.asarray(fixed, dtype=bool).reshape(-1)
        _validate(self)

    @classmethod
    def from_camera(cls, camera: PinholeCamera, **arrays: object) -> BAProblem:
        """A problem whose cameras all share ``camera`` (intrinsics and stereo baseline)."""
        num_cams = np.asarray(arrays["T_world_cam"]).reshape(-1, 4, 4).shape[0]
        arrays.setdefault("fx_baseline", np.full(num_cams, camera.fx * camera.baseline_m))
        return cls(intrinsics=camera.intrinsics, **arrays)  # type: ignore[arg-type]

    @property
    def num_cams(self) -> int:
        """Number of camera poses (fixed ones included)."""
        return int(self.T_world_cam.shape[0])

    @property
    def num_points(self) -> int:
        """Number of landmarks."""
        return int(self.points_world.shape[0])

    @property
    def num_observations(self) -> int:
        """Number of image observations."""
        return int(self.obs_cam.shape[0])

    @property
    def monocular(self) -> bool:
        """True when no observation has a right-image coordinate (no depth: scale unobserved)."""
        return not bool(np.any(np.isfinite(self.obs_u_right)))

    def initial_state(self) -> BAState:
        """The initial values as a :class:`BAState` (copies)."""
        return BAState(self.T_world_cam.copy(), self.points_world.copy())


def _per_item(values: object, count: int, default: float) -> FloatArray:
    if values is None:
        return np.full(count, default)
    return np.array(np.broadcast_to(np.asarray(values, dtype=np.float64), (count,)))


def _validate(problem: BAProblem) -> None:
    """Raise :class:`ProblemError` naming the first inconsistent input."""
    C, P, N = problem.num_cams, problem.num_points, problem.num_observations
    checks: list[tuple[bool, str]] = [
        (N > 0, "the problem has no observations"),
        (problem.obs_point.shape == (N,) and problem.obs_uv.shape == (N, 2), "obs_cam, obs_point "
         f"and obs_uv disagree in length ({N}, {problem.obs_point.size}, {len(problem.obs_uv)})"),
        (problem.fixed_cams.shape == (C,), f"fixed_cams has {problem.fixed_cams.size} entries for {C} cameras"),
        (bool(np.all(np.isfinite(problem.T_world_cam))), "T_world_cam has non-finite values"),
        (bool(np.all(np.isfinite(problem.points_world))), "points_world has non-finite values"),
        (bool(np.all(np.isfinite(problem.intrinsics))), "intrinsics have non-finite values"),
        (bool(np.all(problem.intrinsics[:, :2] > 0.0)), "focal lengths must be positive"),
        (bool(np.all(np.isfinite(problem.obs_uv))), "obs_uv has non-finite values"),
        (bool(np.all((problem.obs_weight > 0.0) & np.isfinite(problem.obs_weight))),
         "obs_weight must be finite and positive"),
        (bool(np.all(np.isfinite(problem.fx_baseline))), "fx_baseline has non-finite values"),
    ]
    for ok, reason in checks:
        if not ok:
            raise ProblemError(f"bundle adjustment: {reason}")
    for name, index, size in (("obs_cam", problem.obs_cam, C), ("obs_point", problem.obs_point, P)):
        bad = np.flatnonzero((index < 0) | (index >= size))
        if bad.size:
            raise ProblemError(
                f"bundle adjustment: observation {bad[0]} has {name}={index[bad[0]]} "
                f"outside [0, {size})"
            )
    stereo = ~np.isnan(problem.obs_u_right)
    if np.any(~np.isfinite(problem.obs_u_right[stereo])):
        raise ProblemError("bundle adjustment: obs_u_right must be finite or NaN")
    if np.any(problem.fx_baseline[problem.obs_cam[stereo]] <= 0.0):
        raise ProblemError("bundle adjustment: a stereo observation's camera has fx_baseline <= 0")


@dataclass
class BAState:
    """Poses ``T_world_cam`` ``(C, 4, 4)`` and landmarks ``points_world`` ``(P, 3)``, float64."""

    T_world_cam: FloatArray
    points_world: FloatArray
