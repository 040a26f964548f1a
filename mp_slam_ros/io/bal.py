"""BAL ("Bundle Adjustment in the Large") files: read, write, and convert to/from :class:`BAProblem`.

Format (https://grail.cs.washington.edu/projects/bal/)::

    <num_cameras> <num_points> <num_observations>
    <camera_index> <point_index> <x> <y>            (num_observations lines)
    <camera parameters>                              (9 values per camera)
    <point coordinates>                              (3 values per point)

A BAL camera is ``[rotation (Rodrigues vector), translation, f, k1, k2]`` with ``P = R X + t``
(camera-from-world), its frame has ``z`` backward (the camera looks down ``-z``) and ``y`` up,
and a point projects to ``f r(p) p`` with ``p = -P / P_z``, ``r(p) = 1 + k1 |p|^2 + k2 |p|^4``,
pixel origin at the image centre. :func:`bal_to_problem` turns this into the package's
conventions (``T_world_cam``, optical frame ``z`` forward / ``y`` down, ``v`` down) and
:func:`solution_to_bal` turns an optimized state back, keeping ``f, k1, k2`` as read;
:func:`problem_to_bal` exports a package problem (e.g. a generated window) for other BAL tools.

Parameter values may be spread over lines in any way (one per line is customary); blank lines
are skipped anywhere (the public ``dubrovnik`` files have one after the header, as Ceres' reader,
which reads tokens, allows). Errors raise :class:`~mp_slam_ros.errors.FileFormatError` naming the
file, the 1-based line and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from scipy.spatial.transform import Rotation

from mp_slam_ros.errors import FileFormatError, ProblemError
from mp_slam_ros.geometry.lie import se3_inverse
from mp_slam_ros.io.text import read_text_lines
from mp_slam_ros.solvers.ba import BAProblem, BAState
from mp_slam_ros.solvers.robust import RobustLoss

FloatArray = NDArray[np.float64]

#: Optical frame from BAL camera frame: flip y and z.
_F_OPTICAL_BAL = np.diag([1.0, -1.0, -1.0])
CAMERA_PARAMETERS = 9


@dataclass
class BALProblem:
    """The content of a BAL file, in BAL's own conventions."""

    camera_params: FloatArray  # (C, 9): rotvec (3), t (3), f, k1, k2
    points: FloatArray  # (P, 3) world coordinates
    obs_cam: NDArray[np.int64]  # (N,)
    obs_point: NDArray[np.int64]  # (N,)
    obs_xy: FloatArray  # (N, 2) pixels, origin at the image centre, y up


def read_bal(path: str | Path) -> BALProblem:
    """Parse a BAL file; raise :class:`FileFormatError` (file, line, problem) on malformed input."""
    path = Path(path)
    all_lines = read_text_lines(path, encoding="ascii")
    kept = [(number, line) for number, line in enumerate(all_lines, start=1) if line.strip()]
    numbers, lines = [number for number, _ in kept], [line for _, line in kept]
    num_cams, num_points, num_obs = _header(path, lines, numbers)
    if len(lines) < 1 + num_obs:
        raise FileFormatError(path, len(all_lines) + 1, f"file ends after {len(lines) - 1} of {num_obs} observations")
    obs = _observations(path, lines[1 : 1 + num_obs], numbers[1 : 1 + num_obs], num_cams, num_points)
    values = _numbers(path, lines[1 + num_obs :], numbers[1 + num_obs :], len(all_lines),
                      CAMERA_PARAMETERS * num_cams + 3 * num_points)
    cams = values[: CAMERA_PARAMETERS * num_cams].reshape(num_cams, CAMERA_PARAMETERS)
    points = values[CAMERA_PARAMETERS * num_cams :].reshape(num_points, 3)
    return BALProblem(cams, points, obs[:, 0].astype(np.int64), obs[:, 1].astype(np.int64), obs[:, 2:])


def _header(path: Path, lines: list[str], numbers: list[int]) -> tuple[int, int, int]:
    tokens = lines[0].split() if lines else []
    line = numbers[0] if numbers else 1
    if len(tokens) != 3:
        raise FileFormatError(path, line, f"header needs 3 counts (cameras points observations), got {len(tokens)}")
    counts = []
    for name, token in zip(("num_cameras", "num_points", "num_observations"), tokens):
        try:
            count = int(token)
        except ValueError:
            raise FileFormatError(path, line, f"{name}={token!r} is not an integer") from None
        if count < 0:
            raise FileFormatError(path, line, f"{name}={count} is negative")
        counts.append(count)
    return counts[0], counts[1], counts[2]


def _observations(path: Path, lines: list[str], numbers: list[int], num_cams: int, num_points: int) -> FloatArray:
    """``(N, 4)`` rows ``[cam, point, x, y]`` from the observation lines (file line ``numbers``)."""
    rows = [line.split() for line in lines]
    for number, row in zip(numbers, rows):
        if len(row) != 4:
            raise FileFormatError(path, number, f"observation needs 4 values (camera point x y), got {len(row)}")
    try:
        obs = np.array(rows, dtype=np.float64).reshape(-1, 4)
    except ValueError:
        obs = np.array([_line_numbers(path, number, line) for number, line in zip(numbers, lines)]).reshape(-1, 4)
    checks = (
        (~np.isfinite(obs).all(axis=1), "observation has a non-finite value"),
        (obs[:, :2] != np.round(obs[:, :2]), "camera/point index is not an integer"),
        ((obs[:, 0] < 0) | (obs[:, 0] >= num_cams), f"observation of a missing camera (have {num_cams})"),
        ((obs[:, 1] < 0) | (obs[:, 1] >= num_points), f"observation of a missing point (have {num_points})"),
    )
    for bad, reason in checks:
        rows = np.flatnonzero(bad if bad.ndim == 1 else bad.any(axis=1))
        if rows.size:
            raise FileFormatError(path, numbers[int(rows[0])], f"{reason}: {lines[rows[0]].strip()!r}")
    return obs


def _line_numbers(path: Path, line_number: int, line: str) -> list[float]:
    try:
        return [float(token) for token in line.split()]
    except ValueError as error:
        raise FileFormatError(path, line_number, f"not a number: {error}") from None


def _numbers(path: Path, rest: list[str], numbers: list[int], last_line: int, expected: int) -> FloatArray:
    """``expected`` finite numbers from the lines ``rest`` (file line ``numbers``; any layout), no
    more, no fewer; ``last_line``: the file's last line (named when values are missing)."""
    counts = np.fromiter((len(line.split()) for line in rest), dtype=np.int64, count=len(rest))
    ends = np.cumsum(counts)
    total = int(ends[-1]) if ends.size else 0
    if total < expected:
        raise FileFormatError(path, last_line, f"file ends after {total} of {expected} camera/point values")
    if total > expected:
        line = numbers[int(np.searchsorted(ends, expected, side="right"))]
        raise FileFormatError(path, line, f"unexpected values after the {expected} camera/point values")
    try:
        values = np.array(" ".join(rest).split(), dtype=np.float64)
    except ValueError:
        values = np.array([v for number, line in zip(numbers, rest) for v in _line_numbers(path, number, line)])
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        line = numbers[int(np.searchsorted(ends, bad[0], side="right"))]
        raise FileFormatError(path, line, f"camera/point value {values[bad[0]]} is not finite")
    return values


def write_bal(path: str | Path, bal: BALProblem) -> None:
    """Write ``bal`` in the BAL text format (17 significant digits: reading it back is exact)."""
    num_cams, num_points, num_obs = len(bal.camera_params), len(bal.points), len(bal.obs_cam)
    out = [f"{num_cams} {num_points} {num_obs}"]
    out += [
        f"{c} {p} {x:.17g} {y:.17g}"
        for c, p, (x, y) in zip(bal.obs_cam.tolist(), bal.obs_point.tolist(), bal.obs_xy.tolist())
    ]
    out += [f"{value:.17g}" for value in np.concatenate([bal.camera_params.ravel(), bal.points.ravel()]).tolist()]
    try:
        Path(path).write_text("\n".join(out) + "\n", encoding="ascii")
    except OSError as error:
        raise FileFormatError(path, None, f"cannot write BAL file: {error}") from None


def bal_to_problem(
    bal: BALProblem,
    loss: RobustLoss | None = None,
    sigma_px: float = 1.0,
    fixed_cams: NDArray[np.bool_] | None = None,
) -> BAProblem:
    """A :class:`BAProblem` (known intrinsics ``f, k1, k2`` per camera) from BAL data."""
    R_bal = Rotation.from_rotvec(bal.camera_params[:, :3]).as_matrix()
    T_cam_world = np.tile(np.eye(4), (len(bal.camera_params), 1, 1))
    T_cam_world[:, :3, :3] = _F_OPTICAL_BAL @ R_bal
    T_cam_world[:, :3, 3] = bal.camera_params[:, 3:6] @ _F_OPTICAL_BAL
    f, k1, k2 = bal.camera_params[:, 6], bal.camera_params[:, 7], bal.camera_params[:, 8]
    zeros = np.zeros_like(f)
    return BAProblem(
        T_world_cam=se3_inverse(T_cam_world),
        points_world=bal.points,
        intrinsics=np.stack([f, f, zeros, zeros, k1, k2], axis=1),
        obs_cam=bal.obs_cam,
        obs_point=bal.obs_point,
        obs_uv=bal.obs_xy * [1.0, -1.0],
        obs_weight=np.full(len(bal.obs_cam), 1.0 / sigma_px),
        fixed_cams=fixed_cams,
        loss=loss or RobustLoss(),
    )


def solution_to_bal(bal: BALProblem, state: BAState) -> BALProblem:
    """``bal`` with cameras and points replaced by ``state`` (BAL conventions; f, k1, k2 kept)."""
    T_cam_world = se3_inverse(state.T_world_cam)
    camera_params = bal.camera_params.copy()
    camera_params[:, :3] = Rotation.from_matrix(_F_OPTICAL_BAL @ T_cam_world[:, :3, :3]).as_rotvec()
    camera_params[:, 3:6] = T_cam_world[:, :3, 3] @ _F_OPTICAL_BAL
    return BALProblem(camera_params, state.points_world.copy(), bal.obs_cam, bal.obs_point, bal.obs_xy)


def problem_to_bal(problem: BAProblem) -> BALProblem:
    """Export ``problem``'s initial values and observations as BAL (``fx == fy`` required).

    The principal point is moved into the observations (``x = u - cx``, exact also with
    distortion, which acts on normalized coordinates). Weights, losses, fixed cameras and
    right-image coordinates have no BAL representation and are left out.
    """
    fx, fy, cx, cy, k1, k2 = problem.intrinsics.T
    if not np.allclose(fx, fy, rtol=1e-12, atol=0.0):
        raise ProblemError("BAL cameras have one focal length: fx != fy cannot be exported")
    T_cam_world = se3_inverse(problem.T_world_cam)
    camera_params = np.column_stack([
        Rotation.from_matrix(_F_OPTICAL_BAL @ T_cam_world[:, :3, :3]).as_rotvec(),
        T_cam_world[:, :3, 3] @ _F_OPTICAL_BAL, fx, k1, k2,
    ])
    principal = np.column_stack([cx, cy])[problem.obs_cam]
    obs_xy = (problem.obs_uv - principal) * [1.0, -1.0]
    return BALProblem(camera_params, problem.points_world.copy(), problem.obs_cam.copy(), problem.obs_point.copy(), obs_xy)
