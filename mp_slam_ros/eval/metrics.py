"""ATE and RPE of estimated trajectories against ground truth, computed by evo.

Steps per estimate: associate poses by timestamp (``evo.core.sync``), align the estimate to the
ground truth with Umeyama SE(3) (``PoseTrajectory3D.align``; Sim(3) on request), then evo's
``APE`` (translation part, metres) on the aligned estimate and ``RPE`` (translation in metres,
rotation in degrees) on the unaligned one (RPE is invariant to a global transform).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
from evo import EvoException
from evo.core import metrics, sync
from evo.core.trajectory import PoseTrajectory3D
from evo.core.units import Unit
from numpy.typing import NDArray

from mp_slam_ros.errors import ProblemError
from mp_slam_ros.io.tum import TumTrajectory

#: the statistics reported everywhere (same as the seed's tables)
STATISTICS = ("max", "p99", "p90", "mean", "rmse")


@dataclass(frozen=True)
class ErrorStats:
    """Summary of an error sequence (same unit as the errors)."""

    n: int
    max: float
    p99: float
    p90: float
    mean: float
    rmse: float

    @staticmethod
    def of(errors: NDArray[np.float64]) -> ErrorStats:
        """Statistics of ``errors`` (N,) (N >= 1)."""
        errors = np.asarray(errors, np.float64)
        return ErrorStats(
            n=int(errors.size),
            max=float(errors.max()),
            p99=float(np.percentile(errors, 99)),
            p90=float(np.percentile(errors, 90)),
            mean=float(errors.mean()),
            rmse=float(np.sqrt(np.mean(errors**2))),
        )


@dataclass(frozen=True)
class RpeSpec:
    """Pose pairs of the RPE: ``delta`` in ``unit`` ("m" along the path, or "frames")."""

    delta: float = 1.0
    unit: str = "m"


@dataclass(frozen=True)
class Evaluation:
    """Errors of one estimated trajectory against the ground truth."""

    name: str
    ate_m: ErrorStats
    rpe_m: ErrorStats | None  # None when the trajectory is shorter than one RPE delta
    rpe_deg: ErrorStats | None
    timestamps_s: NDArray[np.float64]  # (N,) matched stamps
    ate_errors_m: NDArray[np.float64]  # (N,)
    positions_ref_m: NDArray[np.float64]  # (N, 3) ground truth
    positions_aligned_m: NDArray[np.float64]  # (N, 3) estimate after alignment
    T_ref_est: NDArray[np.float64]  # (4, 4) alignment (with scale in the rotation block if Sim(3))
    scale: float


def to_evo(trajectory: TumTrajectory) -> PoseTrajectory3D:
    """evo trajectory (quaternions w-first) of a :class:`TumTrajectory`."""
    return PoseTrajectory3D(
        positions_xyz=trajectory.positions_m,
        orientations_quat_wxyz=trajectory.quats_xyzw[:, [3, 0, 1, 2]],
        timestamps=trajectory.timestamps_s,
    )


def _rpe(ref: PoseTrajectory3D, est: PoseTrajectory3D, relation: metrics.PoseRelation, spec: RpeSpec) -> ErrorStats | None:
    unit = {"m": Unit.meters, "frames": Unit.frames}[spec.unit]
    metric = metrics.RPE(relation, delta=spec.delta, delta_unit=unit, all_pairs=False)
    try:
        metric.process_data((ref, est))
    except EvoException:  # no pose pair spans one delta (evo's FilterException)
        return None
    return ErrorStats.of(metric.error) if metric.error.size else None


def evaluate(
    ground_truth: TumTrajectory,
    estimate: TumTrajectory,
    name: str,
    *,
    max_time_diff_s: float = 0.01,
    correct_scale: bool = False,
    rpe: RpeSpec = RpeSpec(),
) -> Evaluation:
    """ATE (after SE(3) or Sim(3) alignment) and RPE of ``estimate``; raises :class:`ProblemError`
    when fewer than 3 poses match in time or the alignment is degenerate."""
    try:
        ref, est = sync.associate_trajectories(to_evo(ground_truth), to_evo(estimate), max_diff=max_time_diff_s)
    except EvoException as error:
        raise ProblemError(f"{name}: no poses match the ground truth within {max_time_diff_s} s ({error})") from None
    if ref.num_poses < 3:
        raise ProblemError(f"{name}: only {ref.num_poses} poses match the ground truth within {max_time_diff_s} s; need 3")
    aligned = copy.deepcopy(est)
    try:
        rotation, translation, scale = aligned.align(ref, correct_scale=correct_scale)
    except EvoException as error:
        raise ProblemError(f"{name}: cannot align to the ground truth ({error})") from None
    ape = metrics.APE(metrics.PoseRelation.translation_part)
    ape.process_data((ref, aligned))
    T_ref_est = np.eye(4)
    T_ref_est[:3, :3] = scale * rotation
    T_ref_est[:3, 3] = translation
    return Evaluation(
        name=name,
        ate_m=ErrorStats.of(ape.error),
        rpe_m=_rpe(ref, est, metrics.PoseRelation.translation_part, rpe),
        rpe_deg=_rpe(ref, est, metrics.PoseRelation.rotation_angle_deg, rpe),
        timestamps_s=np.asarray(ref.timestamps, np.float64),
        ate_errors_m=np.asarray(ape.error, np.float64),
        positions_ref_m=np.asarray(ref.positions_xyz, np.float64),
        positions_aligned_m=np.asarray(aligned.positions_xyz, np.float64),
        T_ref_est=T_ref_est,
        scale=float(scale),
    )
