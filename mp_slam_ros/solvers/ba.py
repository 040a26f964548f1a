"""Bundle adjustment (BA) of camera poses and landmarks, solved by the mixed-precision LM driver.

Model
-----
* Poses are ``T_world_cam`` ``(C, 4, 4)`` (camera-to-world, REP-103 optical camera frame: ``z``
  forward), perturbed on the right: ``T <- T exp(delta)``, ``delta = [rho, phi]``.
* Landmarks are world points ``points_world`` ``(P, 3)`` (XYZ, 3 parameters each). XYZ rather
  than anchored inverse depth: household scenes are 0.3-10 m deep with RGB-D/stereo depth, so
  the points-at-infinity case that inverse depth fixes does not arise; every residual touches one
  pose (9 Jacobian entries per row instead of 13 for host + target pose + depth), the landmark
  blocks of the Hessian stay 3x3-diagonal for the Schur baseline, and BAL files are XYZ. A
  generated 50-keyframe window (tracks of 2-20 observations, ~10 on average) has ~2,850
  observations and ~290 landmarks: a monocular Jacobian of ~5,700 x (288 + 870), the seed's
  shape; RGB-D adds one row per observation.
* Residuals: pixel reprojection error ``w (pi(T_cam_world X) - uv)`` per observation (``w`` =
  per-observation weight, 1/sigma in 1/px), optionally a right-image coordinate residual for
  stereo / RGB-D (ORB-SLAM's ``u_right = u - fx b / z``), all of one observation under one
  robust loss (:class:`~mp_slam_ros.solvers.robust.RobustLoss`).
* Fixed (gauge) cameras keep their pose and have no columns.

Precision: :meth:`BundleAdjustment.linearize` evaluates with the state and the measurements
rounded to the requested dtype (float16 values held in float32, see
:func:`mp_slam_ros.precision.round_to`), writes residuals and Jacobian values in that dtype, and
the driver applies the update in float64.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from mp_slam_ros.config import parse_choice
from mp_slam_ros.errors import ConfigError, ProblemError
from mp_slam_ros.geometry.lie import se3_exp, se3_inverse
from mp_slam_ros.precision import Precision, ProblemKind, round_to
from mp_slam_ros.solvers.ba_kernels import evaluate_observations, fill_pattern, refine_landmarks, squared_norms
from mp_slam_ros.solvers.ba_problem import BAProblem, BAState
from mp_slam_ros.solvers.linear.base import LinearSolver
from mp_slam_ros.solvers.linear.block_jacobi import block_jacobi, schur_jacobi
from mp_slam_ros.solvers.linear.cgnr import CGNRSolver
from mp_slam_ros.solvers.linear.direct_fallback import DirectFallback
from mp_slam_ros.solvers.linear.iterative_schur import CheckedStep, IterativeSchurSolver
from mp_slam_ros.solvers.linear.schur import SchurSolver
from mp_slam_ros.solvers.lm import IterationCallback, Linearization, SolveResult, solve
from mp_slam_ros.solvers.robust import LOSS_CODES, reweight_factors
from mp_slam_ros.solvers.summary import LinearSolverOptions, SolverOptions

__all__ = [
    "BAProblem", "BAState", "BAStructure", "BundleAdjustment", "LANDMARK_ITERATIONS", "LinearSolverKind",
    "PreconditionerKind", "ba_solver_options", "bundle_adjust", "make_linear_solver",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

POSE_DIM = 6
POINT_DIM = 3
#: Embedded point iterations per LM step (:class:`BundleAdjustment`), and their stopping rule: a
#: Newton step that gains less than ``LANDMARK_TOLERANCE`` of its landmark's cost ends them.
LANDMARK_ITERATIONS = 10
LANDMARK_TOLERANCE = 1e-6
#: ... run on the landmarks with an observation whose robust weight ``rho'`` is below this (Huber:
#: residual norm above twice the loss scale, where the reweighted model's curvature is off most).
LANDMARK_WEIGHT = 0.5
#: Landmarks count in :meth:`BundleAdjustment.state_norm` up to this multiple of the median
#: landmark distance from the cameras' centroid.
STATE_NORM_CLIP = 100.0


@dataclass(frozen=True)
class BAStructure:
    """Sparsity of a BA Jacobian, for structure-aware linear solvers (Schur, block-Jacobi).

    Columns: ``6`` per free camera (``cam_column[c]`` = first column, -1 for fixed), then ``3``
    per landmark from ``num_pose_columns``. Observations are sorted by landmark:
    ``point_obs_ptr[l]:point_obs_ptr[l + 1]`` are landmark ``l``'s observations, each with
    residual rows ``2 o, 2 o + 1`` and ``obs_stereo_row[o]`` (-1: none).
    """

    num_pose_columns: int
    num_points: int
    cam_column: IntArray  # (C,)
    obs_cam: IntArray  # (N,) sorted order
    obs_point: IntArray  # (N,)
    obs_stereo_row: IntArray  # (N,)
    point_obs_ptr: IntArray  # (P + 1,)

    @property
    def num_columns(self) -> int:
        """Total number of parameters."""
        return self.num_pose_columns + POINT_DIM * self.num_points

    def column_block_starts(self) -> IntArray:
        """First column of every parameter block, plus the total (poses of 6, then points of 3)."""
        poses = np.arange(0, self.num_pose_columns, POSE_DIM)
        points = self.num_pose_columns + np.arange(0, POINT_DIM * self.num_points + 1, POINT_DIM)
        return np.concatenate([poses, points]).astype(np.int64)


class BundleAdjustment:
    """A :class:`BAProblem` as an LM :class:`~mp_slam_ros.solvers.lm.LeastSquaresProblem`.

    Builds the row layout and the CSR pattern once; every :meth:`linearize` only refreshes the
    CSR values. ``initial_state`` overrides the problem's initial values (warm start).

    ``landmark_iterations > 0`` turns on embedded point iterations (Jeong et al., "Pushing the
    envelope of modern methods for bundle adjustment", PAMI 2012): :meth:`retract` follows the
    LM step by up to that many Newton steps on every landmark alone, cameras held fixed, with the
    robust loss's second derivative in the landmark's 3x3 Hessian and a backtracking line search
    (each only lowers the cost). Why: with a robust loss, a landmark whose few observations
    disagree (e.g. two observations, one an outlier, both in Huber's linear region) lies in a
    nearly flat valley where the reweighted Gauss-Newton model of the LM step has curvature
    ``rho'`` against a true curvature of ~0, so LM moves it a few percent per iteration and the
    cost creeps down for hundreds of iterations; the landmark's own Newton steps cross the
    valley in a few. Residuals are evaluated with the inputs rounded to the dtype of the last
    :meth:`linearize` (as :meth:`cost` does); the landmark update itself is float64.
    """

    kind = ProblemKind.BA

    def __init__(
        self, problem: BAProblem, initial_state: BAState | None = None, landmark_iterations: int = 0
    ) -> None:
        self.problem = problem
        self.landmark_iterations = landmark_iterations
        self._dtype = np.dtype(np.float64)
        self._initial = initial_state or problem.initial_state()
        order = np.lexsort((problem.obs_cam, problem.obs_point))
        self._order = order
        self._free = ~problem.fixed_cams
        cam_column = np.full(problem.num_cams, -1, dtype=np.int64)
        cam_column[self._free] = POSE_DIM * np.arange(int(self._free.sum()))
        num_pose_columns = POSE_DIM * int(self._free.sum())
        obs_cam, obs_point = problem.obs_cam[order], problem.obs_point[order]
        stereo = ~np.isnan(problem.obs_u_right[order])
        num_obs = obs_cam.size
        obs_stereo_row = np.full(num_obs, -1, dtype=np.int64)
        obs_stereo_row[stereo] = 2 * num_obs + np.arange(int(stereo.sum()))
        self.structure = BAStructure(
            num_pose_columns=num_pose_columns,
            num_points=problem.num_points,
            cam_column=cam_column,
            obs_cam=obs_cam,
            obs_point=obs_point,
            obs_stereo_row=obs_stereo_row,
            point_obs_ptr=np.searchsorted(obs_point, np.arange(problem.num_points + 1)),
        )
        self._row_obs = np.concatenate([np.repeat(np.arange(num_obs), 2), np.flatnonzero(stereo)])
        self._build_pattern()
        self._measurements: dict[np.dtype, tuple[FloatArray, ...]] = {}
        self._last_residual: tuple[BAState, np.dtype, tuple] | None = None

    def _build_pattern(self) -> None:
        """CSR ``indptr``/``indices`` and each row's first data slot (layout of ba_kernels)."""
        s = self.structure
        row_cam = s.obs_cam[self._row_obs]
        row_pose_col = s.cam_column[row_cam]
        row_point_col = s.num_pose_columns + POINT_DIM * s.obs_point[self._row_obs]
        indptr = np.zeros(row_cam.size + 1, dtype=np.intp)
        np.cumsum(np.where(row_pose_col >= 0, POSE_DIM + POINT_DIM, POINT_DIM), out=indptr[1:])
        indices = np.empty(int(indptr[-1]), dtype=np.intp)
        fill_pattern(row_pose_col, row_point_col, indptr, indices)
        # Kept in the index dtype SciPy picks (int32 below 2**31 entries): a CSR built from intp
        # arrays scans and copies them down on every construction (~1 ms per linearization).
        pattern = sp.csr_matrix((np.empty(indices.size), indices, indptr), shape=(row_cam.size, s.num_columns))
        self._indices, self._indptr = pattern.indices, pattern.indptr
        self._row_data_start = indptr[:-1]
        self.num_residuals = int(row_cam.size)

    # -- LeastSquaresProblem protocol -------------------------------------------------------
    def initial_state(self) -> BAState:
        """The starting state (a copy)."""
        return BAState(self._initial.T_world_cam.copy(), self._initial.points_world.copy())

    def linearize(self, state: BAState, dtype: np.dtype) -> Linearization:
        """Reweighted residual ``(M,)``, CSR Jacobian ``(M, n)`` in ``dtype`` and robust cost."""
        self._dtype = np.dtype(dtype)
        scale = self._measurements_in(dtype)[3]
        robust_cost, exact_model = None, True
        if not self.problem.loss.is_trivial:
            _, robust_cost, factors = self._residual(state, dtype)
            scale = scale * factors
            exact_model = bool(np.all(factors == 1.0))
        out_dtype = _storage_dtype(dtype)
        residual = np.empty(self.num_residuals, dtype=out_dtype)
        data = np.empty(self._indices.size, dtype=out_dtype)
        self._evaluate(state, dtype, scale, residual, data)
        if np.dtype(dtype) == np.float16:
            residual, data = round_to(residual, dtype), round_to(data, dtype)
        if robust_cost is None:
            robust_cost = 0.5 * float(np.sum(self._squared_norms(residual)))
        jacobian = sp.csr_matrix(
            (data, self._indices, self._indptr), shape=(self.num_residuals, self.structure.num_columns)
        )
        jacobian.has_canonical_format = True  # sorted, unique columns per row by construction
        return Linearization(residual, jacobian, robust_cost, exact_model)

    def cost(self, state: BAState, dtype: np.dtype) -> float:
        """The robust cost ``1/2 sum rho(||r_o||^2)`` with residuals evaluated in ``dtype``."""
        return self._residual(state, dtype)[1]

    def retract(self, state: BAState, delta: FloatArray) -> BAState:
        """Poses ``T exp(delta_pose)`` for free cameras, points ``X + delta_point`` (float64)."""
        n_pose = self.structure.num_pose_columns
        T = state.T_world_cam.copy()
        if n_pose:
            T[self._free] = T[self._free] @ se3_exp(delta[:n_pose].reshape(-1, POSE_DIM))
        points = state.points_world + delta[n_pose:].reshape(-1, POINT_DIM)
        if self.landmark_iterations > 0:
            self._refine_landmarks(T, points, self.landmark_iterations)
        return BAState(T, points)

    def state_norm(self, state: BAState) -> float:
        """Norm of the camera positions and of the landmarks clipped to the scene (metres).

        The step test compares a step with the size of the scene. Every landmark farther from
        the cameras' centroid than ``STATE_NORM_CLIP`` times the median landmark distance counts
        as if it were at that distance: a landmark drifting toward infinity (a low-parallax
        track, or one an outlier pulls along its ray) would otherwise dominate the norm
        (1e11-1e12 m) and make every centimetre step of the rest look negligible, a false
        ``converged_step`` after one iteration.
        """
        positions = state.T_world_cam[:, :3, 3]
        centroid = positions.mean(axis=0)
        offsets = state.points_world - centroid
        distance = np.sqrt(np.einsum("ij,ij->i", offsets, offsets))
        limit = STATE_NORM_CLIP * float(np.median(distance)) if distance.size else 0.0
        if limit > 0.0:
            offsets = offsets * (limit / np.maximum(distance, limit))[:, None]
        points = centroid + offsets
        return float(np.sqrt(np.einsum("ij,ij->", positions, positions) + np.einsum("ij,ij->", points, points)))

    # -- helpers ----------------------------------------------------------------------------
    def residuals_per_observation(self, state: BAState) -> FloatArray:
        """Unweighted-by-loss squared residual norms ``(N,)`` in the problem's observation order."""
        residual = np.empty(self.num_residuals)
        self._evaluate(state, np.dtype(np.float64), self._measurements_in(np.float64)[3], residual, np.empty(0))
        squared = self._squared_norms(residual)
        out = np.empty_like(squared)
        out[self._order] = squared
        return out

    def _residual(self, state: BAState, dtype: np.dtype) -> tuple[np.ndarray, float, FloatArray | None]:
        """Weighted residual (before the loss), robust cost and per-observation loss factors.

        The last evaluation is kept: the LM driver evaluates the cost of a trial state and then,
        when it accepts it, linearizes that same state object.
        """
        last = self._last_residual
        if last is not None and last[0] is state and last[1] == np.dtype(dtype):
            return last[2]
        residual = np.empty(self.num_residuals, dtype=_storage_dtype(dtype))
        self._evaluate(state, dtype, self._measurements_in(dtype)[3], residual, np.empty(0, residual.dtype))
        if np.dtype(dtype) == np.float16:
            residual = round_to(residual, dtype)
        cost, factors = reweight_factors(self.problem.loss, self._squared_norms(residual))
        self._last_residual = (state, np.dtype(dtype), (residual, cost, factors))
        return residual, cost, factors

    def _squared_norms(self, residual: np.ndarray) -> FloatArray:
        """Squared norm ``(N,)`` (float64) of every observation's 2 or 3 residuals."""
        squared = np.empty(self.structure.obs_cam.size)
        squared_norms(residual, self.structure.obs_stereo_row, squared)
        return squared

    def _refine_landmarks(self, T_world_cam: FloatArray, points_world: FloatArray, iterations: int) -> None:
        """Embedded point iterations (in place) on the landmarks with a down-weighted observation
        at the last evaluated state: each one's robust cost minimized alone with the cameras held
        at ``T_world_cam``, inputs rounded to the last linearization's dtype."""
        last = self._last_residual
        factors = None if last is None else last[2][2]
        if factors is None:
            return  # a trivial loss (or nothing evaluated yet): the LM model is exact in the loss
        dtype = self._dtype
        T_cam_world = round_to(se3_inverse(round_to(T_world_cam, dtype)), dtype)
        intrinsics, uv, u_right, weight, fx_baseline = self._measurements_in(dtype)
        s, loss = self.structure, self.problem.loss
        refine_landmarks(
            points_world, np.ascontiguousarray(T_cam_world[:, :3, :3], dtype=np.float64),
            np.ascontiguousarray(T_cam_world[:, :3, 3], dtype=np.float64), intrinsics, fx_baseline,
            s.obs_cam, uv, u_right, weight, s.obs_stereo_row, s.point_obs_ptr, LOSS_CODES[loss.kind],
            loss.scale, factors**2 < LANDMARK_WEIGHT, iterations, LANDMARK_TOLERANCE,
        )

    def _evaluate(
        self, state: BAState, dtype: np.dtype, obs_scale: FloatArray, residual: np.ndarray, data: np.ndarray
    ) -> None:
        """Run the compiled kernel on the state and measurements rounded to ``dtype``."""
        T_cam_world = round_to(se3_inverse(round_to(state.T_world_cam, dtype)), dtype)
        points = round_to(state.points_world, dtype).astype(np.float64)
        intrinsics, uv, u_right, _, fx_baseline = self._measurements_in(dtype)
        s = self.structure
        evaluate_observations(
            np.ascontiguousarray(T_cam_world[:, :3, :3], dtype=np.float64),
            np.ascontiguousarray(T_cam_world[:, :3, 3], dtype=np.float64),
            points, intrinsics, fx_baseline, s.obs_cam, s.obs_point, uv, u_right, obs_scale,
            s.obs_stereo_row, self._free, self._row_data_start, residual, data,
        )

    def _measurements_in(self, dtype: np.dtype) -> tuple[FloatArray, ...]:
        """Intrinsics, uv, u_right, weight, fx_baseline rounded to ``dtype`` (as float64, cached)."""
        key = np.dtype(dtype)
        if key not in self._measurements:
            p, order = self.problem, self._order
            arrays = (p.intrinsics, p.obs_uv[order], p.obs_u_right[order], p.obs_weight[order], p.fx_baseline)
            self._measurements[key] = tuple(
                np.ascontiguousarray(round_to(a, key), dtype=np.float64) for a in arrays
            )
        return self._measurements[key]


def _storage_dtype(dtype: np.dtype) -> np.dtype:
    """Array dtype holding values of ``dtype`` (float16 values live in float32 arrays)."""
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


class LinearSolverKind(str, enum.Enum):
    """Linear solver of a BA (the value of ``ba.solver``)."""

    CGNR = "cgnr"  # the recipe: matrix-free CGNR on J, products in policy.matvec
    SCHUR = "schur"  # the baseline: landmark elimination + dense Cholesky, float64
    # matrix-free PCG on the reduced camera system, products J_c x, J_p^T u, J_p z, J_c^T v in
    # policy.matvec (mp_slam_ros.solvers.linear.iterative_schur)
    ITERATIVE_SCHUR = "iterative_schur"


class PreconditionerKind(str, enum.Enum):
    """CGNR preconditioner (the value of ``ba.preconditioner``)."""

    NONE = "none"
    BLOCK_JACOBI = "block_jacobi"  # rebuilt from every linearization with the current damping
    BLOCK_JACOBI_STATIC = "block_jacobi_static"  # built once from the first linearization
    # landmarks eliminated exactly, 6x6 blocks of the reduced camera system; rebuilt every solve
    SCHUR_JACOBI = "schur_jacobi"


#: LM stopping of problems without depth (:attr:`BAProblem.monocular`: BAL files, monocular
#: windows): Ceres' default function tolerance, twice its iteration cap (see
#: :func:`ba_solver_options`).
MONOCULAR_FUNCTION_TOLERANCE = 1e-6
MONOCULAR_MAX_ITERATIONS = 100


def ba_solver_options(
    precision: Precision | str = Precision.MIXED, monocular: bool = False, **overrides: object
) -> SolverOptions:
    """LM options tuned for sliding-window BA (inexact Newton: the linear solve stops early).

    ``linear.rtol = 0.01``: the forcing term of the Nash-Sofer test of ``iterative_schur`` and
    ``cgnr`` (:mod:`~mp_slam_ros.solvers.linear.pcg`). With 0.1 the test stopped after 2 CG
    iterations on cold-started monocular windows (the first direction holds most of the
    decrease of the stiff directions; the scale-drift directions, worth more, come later): LM
    then followed a poorer path and ended 1.1% above the optimum on a plain least-squares
    window that Schur solves in 5 iterations (0.01: 1e-4 in 5); on 50-keyframe RGB-D and
    monocular windows 0.01 costs about the same time (fewer LM iterations, more CG per step).
    ``function_tolerance = 1e-4``: stop once an iteration
    gains less than 0.01% of the cost; with the embedded point iterations of
    :func:`bundle_adjust` every 50-keyframe benchmark window then ends within 4e-5 (median
    1e-5) of the fully converged cost, inside the 0.1% a VO window needs (without them, 20% of
    the windows end 0.1-0.2% above it: see :class:`BundleAdjustment`).
    ``monocular`` problems (no depth rows) stop at :data:`MONOCULAR_FUNCTION_TOLERANCE` after at
    most :data:`MONOCULAR_MAX_ITERATIONS` iterations instead of 1e-4 and 30: without depth the
    scale is unobserved and the robust cost has plateaus that a 1e-4 relative decrease cannot
    tell from a minimum. Measured on bench_ba's 150 monocular windows (cgnr mixed): at 1e-4, 5
    solves ended ``converged_function`` 0.1-7% above the optimum (the direct Schur solver and
    GTSAM stop there too: a landmark that leaves for infinity 40 iterations later, a reweighted
    model crawling); at 1e-6 none did, and the 4 windows still above it ended ``max_iterations``
    (median 48-82 ms per window instead of 35-50); 3 of those 4 reach it within 100 iterations
    (Ceres' default is 50). Keyword ``overrides`` set other fields.
    """
    options = SolverOptions(
        precision=Precision.parse(precision),
        max_iterations=MONOCULAR_MAX_ITERATIONS if monocular else 30,
        function_tolerance=MONOCULAR_FUNCTION_TOLERANCE if monocular else 1e-4,
        parameter_tolerance=1e-9,
        linear=LinearSolverOptions(rtol=0.01, max_iterations=100, stall_iterations=10),
    )
    for key, value in overrides.items():
        if not hasattr(options, key):
            raise ConfigError(key, value, "is not a SolverOptions field")
        setattr(options, key, value)
    return options


def make_linear_solver(
    structure: BAStructure,
    solver: LinearSolverKind | str = LinearSolverKind.CGNR,
    preconditioner: PreconditionerKind | str = PreconditionerKind.NONE,
    fallback: bool = True,
    preconditioner_band: int = 0,
) -> LinearSolver:
    """The linear solver named by ``solver`` (and CGNR ``preconditioner``) for a BA structure.

    ``preconditioner_band`` applies to ``iterative_schur``: 0 preconditions the reduced camera
    system with its inverted 6x6 diagonal blocks (Schur-Jacobi: enough for a sliding window);
    ``k > 0`` with an incomplete Cholesky factor of its couplings between cameras at most ``k``
    apart in camera order (:meth:`~mp_slam_ros.solvers.linear.iterative_schur.IterativeSchurSolver._preconditioner`:
    for long camera chains such as a whole session's keyframes, where block-Jacobi PCG needs
    hundreds of iterations to carry a correction along the chain).

    CGNR stops on the Nash-Sofer test of its objective decrease (as the iterative Schur solver),
    not on its relative residual: that one is met while the low-curvature camera directions are
    unresolved, and LM then crawls toward the optimum (or, before the certification of
    :mod:`~mp_slam_ros.solvers.lm`, claimed convergence 5% above it). With ``fallback`` the
    iterative solvers escalate to the direct Schur solver when a solve hits its cap
    (:class:`~mp_slam_ros.solvers.linear.direct_fallback.DirectFallback`).
    """
    kind = parse_choice(LinearSolverKind, solver, "ba.solver")
    if kind is LinearSolverKind.SCHUR:
        return SchurSolver(structure)
    iterative = _iterative_solver(
        structure, kind, parse_choice(PreconditionerKind, preconditioner, "ba.preconditioner"), preconditioner_band
    )
    return DirectFallback(iterative, SchurSolver(structure)) if fallback else iterative


def _iterative_solver(
    structure: BAStructure, kind: LinearSolverKind, preconditioner: PreconditionerKind, band: int
) -> LinearSolver:
    """The iterative solver ``kind`` (with its step check) for a BA structure."""
    if kind is LinearSolverKind.ITERATIVE_SCHUR:
        name = f"iterative_schur+band{band}" if band else "iterative_schur"
        return CheckedStep(IterativeSchurSolver(structure, name, band))
    if preconditioner is PreconditionerKind.NONE:
        return CheckedStep(CGNRSolver(truncated_newton=True))
    if preconditioner is PreconditionerKind.SCHUR_JACOBI:
        return CheckedStep(CGNRSolver(schur_jacobi(structure), static_preconditioner=False,
                                      name="cgnr+schur_jacobi", truncated_newton=True))
    return CheckedStep(CGNRSolver(
        preconditioner=block_jacobi(structure.column_block_starts()),
        static_preconditioner=preconditioner is PreconditionerKind.BLOCK_JACOBI_STATIC,
        name=f"cgnr+{preconditioner.value}",
        truncated_newton=True,
    ))


def bundle_adjust(
    problem: BAProblem,
    options: SolverOptions | None = None,
    solver: LinearSolverKind | str = LinearSolverKind.ITERATIVE_SCHUR,
    callback: IterationCallback | None = None,
    preconditioner: PreconditionerKind | str = PreconditionerKind.SCHUR_JACOBI,
    initial_state: BAState | None = None,
    landmark_iterations: int = LANDMARK_ITERATIONS,
    preconditioner_band: int = 0,
) -> SolveResult[BAState]:
    """Bundle-adjust ``problem``; returns the optimized :class:`BAState` and the LM Summary.

    ``options`` default to :func:`ba_solver_options` (mixed precision, the stopping of the
    problem's kind: :attr:`~mp_slam_ros.solvers.ba_problem.BAProblem.monocular`); ``solver`` is
    ``"iterative_schur"`` (the mixed-precision recipe: matrix-free PCG on the reduced camera
    system, see :mod:`~mp_slam_ros.solvers.linear.iterative_schur`), ``"cgnr"`` (CG on the whole
    Jacobian) or ``"schur"`` (float64 direct baseline); ``callback`` receives every
    :class:`~mp_slam_ros.solvers.summary.IterationRecord` (return ``False`` to stop);
    ``preconditioner`` applies to CGNR: the default ``schur_jacobi`` eliminates the landmarks
    exactly (:class:`~mp_slam_ros.solvers.linear.block_jacobi.SchurJacobiPreconditioner`); with
    block-Jacobi, CGNR on monocular windows crawls toward the optimum. ``preconditioner_band``
    applies to ``iterative_schur`` (:func:`make_linear_solver`). With
    ``options.escalate`` and ``options.linear.fallback`` (both the default) an iterative solver
    that hits its cap hands the rest of the solve to the direct Schur solver (recorded in ``linear_solver_changes``; see
    :mod:`~mp_slam_ros.solvers.linear.direct_fallback`).
    Cameras with ``problem.fixed_cams`` set are the gauge and are not moved. For a sliding window,
    pass the previous window's estimates as the problem's initial values (or as
    ``initial_state``, a warm start with the same cameras and landmarks as ``problem``).
    ``landmark_iterations`` bounds the embedded point iterations after every step (0: none; see
    :class:`BundleAdjustment`), with every solver (``cgnr`` too: run after every step instead of
    once on the final state, they cut its LM iterations on bench_ba's RGB-D windows solved tight
    from a median of 32.5 to 11, 136 -> 64 ms in mixed, and its misses on the monocular windows
    with fixed cameras from 3 to 2 of 50).
    """
    if initial_state is not None and (
        initial_state.T_world_cam.shape != problem.T_world_cam.shape
        or initial_state.points_world.shape != problem.points_world.shape
    ):
        raise ProblemError("bundle adjustment: initial_state does not match the problem's sizes")
    ba = BundleAdjustment(problem, initial_state, landmark_iterations)
    options = options or ba_solver_options(monocular=problem.monocular)
    fallback = options.escalate and options.linear.fallback
    linear_solver = make_linear_solver(ba.structure, solver, preconditioner, fallback, preconditioner_band)
    return solve(ba, linear_solver, options, callback)
