"""Geometric verification of a place-recognition candidate.

:func:`verify_pnp` (keyframes with 3-D points): ORB descriptors matched with a brute-force
Hamming matcher and Lowe's ratio test, then the candidate's 3-D points (its camera frame; the
points of its neighbouring keyframes join them, moved by odometry, so a view that shares little
with the candidate alone still finds its landmarks: the covisible neighbourhood of ORB-SLAM's
loop check) against the query's pixels by PnP RANSAC and LM refinement
(OpenCV, no motion prior: the candidate may be anywhere). The result is the
relative pose ``T_match_query`` (query camera in the candidate camera's frame) with the
covariance ``c (sum J^T S^-1 J)^-1`` of the inliers' reprojection (right perturbation of
``T_match_query``: query-camera ``[rho, phi]``, the loop edge's tangent convention), where each
inlier's ``S`` is its keypoint noise ``sigma^2 I`` plus its 3-D point's error seen in the query: the
points are measured, by the candidate's keypoint (``sigma`` at the point's depth) and its depth
(growing with depth squared, ``loop.depth_baseline_m``), so a loop resting on points the candidate
saw from far is as uncertain as they are. (A wrong loop of a twin-room run was accepted without it:
25 inliers on points about 4 m from a candidate 3.7 m away, 0.39 m off, with a claimed translation
sigma of 1.4 cm; with it 8 cm, most of it from the candidate's keypoint noise, which lands in the
query at about twice the query's own.)

The errors of matched keypoints are not independent: inliers on one texture patch or one stretch
of the depth map share their bias (pyramid level, depth error, a slightly different view of the
same texture), which the fit absorbs along the pose's weak direction instead of showing it in
the residuals. So the inliers count as independent only per region of the query image: ``c`` is
the mean number of inliers per occupied cell of a ``loop.error_cell_deg`` grid of viewing
angles. A degenerate inlier set (many points on one patch: its pose trades rotation for
translation) gets the covariance of the few measurements it is, and fails ``loop.max_sigma_*``.
The same cells test whether the pose rests on all of them: each cell's inliers are left out in turn
and the pose re-fitted (a jackknife); a loop that moves beyond :data:`MAX_CELL_SHIFT_CHI2` under its
covariance hinges on one region (a planar patch at one depth, whose rotation trades for translation,
tipped by a few matches elsewhere, one of them wrong) and is rejected.

:func:`verify_fundamental` (images without depth): the same matching, then a fundamental
matrix by RANSAC; enough inliers make the pair a loop (no metric pose).

A candidate is rejected, with a reason, when matches, inliers, the inlier ratio or the mean
reprojection error miss ``loop.*`` thresholds. One that fails but whose ratio-test matches give a
rough PnP pose (``loop.guided_seed_inliers``) is matched again by projection around that pose
(``loop.guided_radius_px``: ORB-SLAM's search by projection after its loop's first estimate) and
checked again at full thresholds: the ratio test over a whole image loses most matches among
repeated texture and at a changed viewpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.config import option
from mp_slam_ros.frontend.matching import match_by_projection
from mp_slam_ros.geometry.camera import matrix_intrinsics, project
from mp_slam_ros.geometry.lie import hat, se3_inverse, se3_log

#: a loop whose pose moves farther than this (Mahalanobis^2 under its covariance, 10 sigma) when
#: one cell's inliers are left out hinges on that region: rejected. Correct loops of 3 cached 180-s
#: runs (251, house RGB-D and stereo): at most 50; the two wrong ones beyond 0.2 m: 1,590 and 1,685
MAX_CELL_SHIFT_CHI2 = 100.0
#: fewest inliers left to re-fit a pose without one cell (fewer: that cell is not tested)
MIN_JACKKNIFE_POINTS = 6


@dataclass(frozen=True)
class LoopVerificationConfig:
    """Age of candidates and the geometric checks a loop must pass."""

    min_age_s: float = option(20.0, "keyframes younger than this (s, before the query) are never loop candidates", 0.0, 1e6)
    # 2 (was 1): twin-room recall 0.79 -> 0.82 over 10 runs, 0 wrong of 4,352 loops over 20, verification +12%
    # time (results/loop_closure/neighbours/README.md)
    neighbours: int = option(2, "keyframes either side of a candidate whose 3-D points join its verification when its own do not verify (0: the candidate alone)", 0, 100)
    neighbour_max_sigma_m: float = option(0.05, "a neighbour joins only while the odometry edges to it are this certain (translation sigma, m)", 1e-6, 100.0)
    proximity_candidates: int = option(2, "keyframes near the query's current map pose verified besides the place candidates (nearest first; 0: none)", 0, 100)
    proximity_m: float = option(1.0, "a proximity candidate's camera lies within this distance of the query's in the map (m)", 0.0, 100.0)
    proximity_deg: float = option(45.0, "a proximity candidate's optical axis lies within this angle of the query's (deg)", 0.0, 180.0)
    ratio: float = option(0.8, "Lowe ratio test of the descriptor matches", 0.1, 1.0)
    max_hamming: int = option(64, "largest descriptor distance of a match (bits)", 1, 256)
    min_matches: int = option(30, "fewer descriptor matches: rejected", 6, 100000)
    min_inliers: int = option(25, "fewer PnP (or fundamental-matrix) inliers: rejected", 6, 100000)
    min_inlier_ratio: float = option(0.3, "inliers / matches below this: rejected", 0.0, 1.0)
    ransac_reprojection_px: float = option(3.0, "RANSAC inlier threshold (px)", 0.1, 50.0)
    max_mean_error_px: float = option(1.5, "mean reprojection error of the inliers above this: rejected (px)", 0.01, 50.0)
    max_sigma_m: float = option(0.04, "loops whose translation is less certain than this (largest sigma of the covariance, m) are rejected: ill-conditioned geometry", 1e-4, 100.0)
    max_sigma_deg: float = option(1.5, "loops whose rotation is less certain than this (largest sigma, deg) are rejected", 1e-3, 180.0)
    ransac_iterations: int = option(300, "RANSAC iterations", 10, 100000)
    depth_baseline_m: float = option(0.8, "the candidate's 3-D points join the loop covariance with their keypoint's noise and their depth as a virtual stereo disparity of pixel_sigma_px at this baseline (m; depth error grows with depth squared; 0: points exact)", 0.0, 100.0)
    pixel_sigma_px: float = option(1.0, "smallest keypoint noise (px) of the loop covariance (the inliers' residual RMS when larger)", 0.01, 100.0)
    error_cell_deg: float = option(15.0, "inliers within one cell of this size (viewing angle, deg) count as one measurement in the loop covariance (their keypoint and depth errors are correlated)", 0.1, 180.0)
    covariance_scale: float = option(1.0, "loop covariance multiplier (errors the reprojection and cell models ignore)", 1.0, 1e6)
    guided_radius_px: float = option(6.0, "a candidate that does not verify gets a second matching pass: its points with depth projected by the first PnP pose, matched within this radius (px; 0: off)", 0.0, 100.0)
    guided_seed_inliers: int = option(12, "fewest PnP inliers of the first pass whose pose seeds the guided pass", 6, 100000)


@dataclass
class Verification:
    """The outcome of a check: ``accepted`` or a ``reason``, counts, and (PnP) the pose."""

    accepted: bool
    reason: str
    matches: int
    inliers: int = 0
    inlier_cells: int = 0
    mean_error_px: float = float("nan")
    T_match_query: NDArray[np.float64] = field(default_factory=lambda: np.eye(4))
    covariance: NDArray[np.float64] = field(default_factory=lambda: np.eye(6))
    degenerate: bool = False  # rejected as uncertain only because its inliers crowd a few cells


def _ratio_matches(
    query: NDArray[np.uint8], match: NDArray[np.uint8], ratio: float, max_hamming: int,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Index pairs ``(M, 2)`` (query row, match row) passing the ratio test and ``max_hamming``,
    and their Hamming distances ``(M,)``."""
    if len(query) < 2 or len(match) < 2:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(np.ascontiguousarray(query), np.ascontiguousarray(match), k=2)
    good = [
        (best.queryIdx, best.trainIdx, best.distance) for best, second in (p for p in pairs if len(p) == 2)
        if best.distance <= max_hamming and best.distance < ratio * second.distance
    ]
    table = np.array(good, np.float64).reshape(-1, 3)
    return table[:, :2].astype(np.int64), table[:, 2]


def match_descriptors(
    query: NDArray[np.uint8], match: NDArray[np.uint8], ratio: float, max_hamming: int,
    match_groups: Sequence[int] = (), usable: NDArray[np.bool_] | None = None,
) -> NDArray[np.int64]:
    """Index pairs ``(M, 2)`` (query row, match row) passing the ratio test and ``max_hamming``.

    ``match_groups``: row counts of consecutive groups of ``match`` (keyframes that may see the
    same landmark; empty: one group); the ratio test runs within each group (over all its rows)
    and every query row keeps its closest match among the ``usable`` rows (default: all) of the
    groups."""
    sizes = list(match_groups) or [len(match)]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    found = [_ratio_matches(query, match[a:b], ratio, max_hamming) for a, b in zip(offsets[:-1], offsets[1:])]
    pairs = np.concatenate([p + [0, a] for (p, _), a in zip(found, offsets[:-1])])
    distances = np.concatenate([d for _, d in found])
    if usable is not None:
        keep = usable[pairs[:, 1]]
        pairs, distances = pairs[keep], distances[keep]
    order = np.lexsort((distances, pairs[:, 0]))
    pairs = pairs[order]
    first = np.ones(len(pairs), bool)
    first[1:] = pairs[1:, 0] != pairs[:-1, 0]
    return pairs[first]


def verify_pnp(
    query_uv: NDArray[np.float32], query_descriptors: NDArray[np.uint8],
    match_points_cam: NDArray[np.float32], match_descriptors_: NDArray[np.uint8],
    K: NDArray[np.float64], config: LoopVerificationConfig, match_groups: Sequence[int] = (),
) -> Verification:
    """Verify a candidate by PnP of its 3-D points ``(N, 3)`` (NaN rows: no depth; rows of
    neighbouring keyframes in ``match_groups`` as :func:`match_descriptors`) against the query's
    pixels ``(M, 2)``; see the module docstring.

    With ``loop.guided_radius_px``, a candidate that does not verify but whose ratio-test matches
    give a PnP pose of ``loop.guided_seed_inliers`` inliers gets a second, guided pass: every
    point with depth projected by that pose is matched to the query keypoints within the radius
    (the ratio test across the whole image loses matches among repeated texture and at other
    scales), and the guided matches go through every check again, at full thresholds."""
    with_depth = np.all(np.isfinite(match_points_cam), axis=1)
    pairs = match_descriptors(query_descriptors, match_descriptors_, config.ratio, config.max_hamming, match_groups, with_depth)
    guided = config.guided_radius_px > 0.0
    result, T_query_match = _verify_pairs(pairs, query_uv, match_points_cam, K, config, seed=guided)
    if result.accepted or T_query_match is None or not guided:
        return result
    points = match_points_cam[with_depth].astype(np.float64)
    in_query = points @ T_query_match[:3, :3].T + T_query_match[:3, 3]
    ahead = in_query[:, 2] > 1e-3
    projected = project(matrix_intrinsics(K), in_query[ahead])[0]
    rows = np.flatnonzero(with_depth)[ahead]
    landmark = match_by_projection(query_uv, query_descriptors, projected, match_descriptors_[rows], config.guided_radius_px, config.max_hamming)
    matched = np.flatnonzero(landmark >= 0)
    guided_pairs = np.stack([matched, rows[landmark[matched]]], axis=1)
    guided_result, _ = _verify_pairs(guided_pairs, query_uv, match_points_cam, K, config, seed=False)
    if not guided_result.accepted:
        guided_result.reason += " after guided matching"
    return guided_result


def _verify_pairs(
    pairs: NDArray[np.int64], query_uv: NDArray[np.float32], match_points_cam: NDArray[np.float32],
    K: NDArray[np.float64], config: LoopVerificationConfig, seed: bool,
) -> tuple[Verification, NDArray[np.float64] | None]:
    """The checks of :func:`verify_pnp` on matches ``pairs`` ``(M, 2)`` (query row, match row),
    and the PnP pose ``T_query_match`` when one was found. ``seed``: a pose of
    ``loop.guided_seed_inliers`` already counts as found (for a guided pass), though only full
    thresholds accept."""
    fewest = min(config.guided_seed_inliers, config.min_inliers) if seed else config.min_inliers
    if len(pairs) < (fewest if seed else config.min_matches):
        return _too_few(len(pairs), 0, config), None
    points = match_points_cam[pairs[:, 1]].astype(np.float64)
    uv = query_uv[pairs[:, 0]].astype(np.float64)
    pose = _pnp(points, uv, K, config, fewest)
    if pose is None:
        return _too_few(len(pairs), 0, config), None
    T_query_match, inlier_mask, mean_error, covariance, covariance_pixels = pose
    inliers = int(inlier_mask.sum())
    if len(pairs) < config.min_matches or inliers < config.min_inliers:  # a seed pose only
        return _too_few(len(pairs), inliers, config), T_query_match
    labels = cell_labels(uv[inlier_mask], K, config.error_cell_deg)
    cells = max(1, int(labels.max(initial=-1)) + 1)  # occupied cells
    scale = config.covariance_scale * inliers / cells
    covariance, covariance_pixels = covariance * scale, covariance_pixels * scale
    result = Verification(True, "verified", len(pairs), inliers, cells, mean_error, se3_inverse(T_query_match), covariance)
    if inliers < config.min_inlier_ratio * len(pairs):
        result.accepted, result.reason = False, f"inlier ratio {inliers / len(pairs):.2f} < {config.min_inlier_ratio}"
    elif mean_error > config.max_mean_error_px:
        result.accepted, result.reason = False, f"mean reprojection error {mean_error:.2f} px > {config.max_mean_error_px}"
    elif not np.all(np.isfinite(result.covariance)):
        result.accepted, result.reason = False, "degenerate geometry (no finite covariance)"
    else:
        _check_certainty(result, config)
    if result.accepted:
        _check_cell_jackknife(result, covariance_pixels, points[inlier_mask], uv[inlier_mask], labels, K, T_query_match)
    return result, T_query_match


def _too_few(matches: int, inliers: int, config: LoopVerificationConfig) -> Verification:
    """The rejection of a candidate whose ``matches`` (with depth) or PnP ``inliers`` fall below
    ``loop.min_matches`` / ``loop.min_inliers``, named by the first of the two that does."""
    if matches < config.min_matches:
        return Verification(False, f"{matches} matches with depth < {config.min_matches}", matches, inliers)
    return Verification(False, f"PnP found < {config.min_inliers} inliers", matches, inliers)


def cell_labels(uv: NDArray[np.float64], K: NDArray[np.float64], cell_deg: float) -> NDArray[np.int64]:
    """The occupied cell (``0 .. cells - 1``) of each pixel ``(N, 2)`` in a grid of viewing angles
    ``cell_deg`` wide (square cells in normalised image coordinates, one corner at the principal
    point)."""
    xy = (uv - K[:2, 2]) / np.diag(K)[:2]
    cells = np.floor(np.arctan(xy) / np.radians(cell_deg)).astype(np.int64)
    return np.unique(cells, axis=0, return_inverse=True)[1].reshape(-1)


def _check_cell_jackknife(
    result: Verification, covariance_pixels: NDArray[np.float64], points_match: NDArray[np.float64], uv: NDArray[np.float64],
    labels: NDArray[np.int64], K: NDArray[np.float64], T_query_match: NDArray[np.float64],
) -> None:
    """Reject ``result`` when leaving out one cell's inliers (points ``(N, 3)``, pixels ``(N, 2)``,
    their cells ``labels``) moves the re-fitted pose beyond :data:`MAX_CELL_SHIFT_CHI2` under
    ``covariance_pixels`` ``(6, 6)``: the loop's covariance from the keypoint noise alone, the one the
    threshold was measured with (the points' own errors move every re-fit alike)."""
    information = np.linalg.inv(covariance_pixels)
    T_inverse = se3_inverse(T_query_match)
    rvec, tvec = cv2.Rodrigues(T_query_match[:3, :3])[0], T_query_match[:3, 3].reshape(3, 1)
    for cell in range(int(labels.max(initial=-1)) + 1):
        rest = labels != cell
        if rest.sum() < MIN_JACKKNIFE_POINTS:
            continue
        r, t = cv2.solvePnPRefineLM(points_match[rest], uv[rest], K, None, rvec.copy(), tvec.copy())
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = cv2.Rodrigues(r)[0], t.reshape(3)
        shift = se3_log((T @ T_inverse)[None])[0]
        chi2 = float(shift @ information @ shift)
        if chi2 > MAX_CELL_SHIFT_CHI2:
            result.accepted = False
            result.reason = (f"pose hinges on one region: without the {int((~rest).sum())} inliers of one cell it moves "
                             f"{np.linalg.norm(shift[:3]):.3f} m / {np.degrees(np.linalg.norm(shift[3:])):.2f} deg "
                             f"(Mahalanobis^2 {chi2:.0f} > {MAX_CELL_SHIFT_CHI2:g})")
            return


def _check_certainty(result: Verification, config: LoopVerificationConfig) -> None:
    """Reject ``result`` when its covariance leaves the translation or rotation uncertain
    beyond ``loop.max_sigma_m`` / ``loop.max_sigma_deg`` (largest standard deviations); as a
    degenerate inlier set when it would pass with its inliers counted as independent."""
    sigma_m = float(np.sqrt(np.linalg.eigvalsh(result.covariance[:3, :3])[-1]))
    sigma_deg = float(np.degrees(np.sqrt(np.linalg.eigvalsh(result.covariance[3:, 3:])[-1])))
    if sigma_m <= config.max_sigma_m and sigma_deg <= config.max_sigma_deg:
        return
    result.accepted = False
    per_cell = np.sqrt(result.inliers / result.inlier_cells)
    result.degenerate = sigma_m / per_cell <= config.max_sigma_m and sigma_deg / per_cell <= config.max_sigma_deg
    what = f"translation sigma {sigma_m:.3f} m > {config.max_sigma_m}" if sigma_m > config.max_sigma_m else f"rotation sigma {sigma_deg:.2f} deg > {config.max_sigma_deg}"
    kind = "degenerate inlier set" if result.degenerate else "uncertain pose"
    result.reason = f"{kind}: {what} ({result.inliers} inliers in {result.inlier_cells} cells)"


def _pnp(
    points_match: NDArray[np.float64], uv: NDArray[np.float64], K: NDArray[np.float64], config: LoopVerificationConfig,
    min_inliers: int,
) -> tuple[NDArray[np.float64], NDArray[np.bool_], float, NDArray[np.float64], NDArray[np.float64]] | None:
    """``T_query_match`` by EPnP RANSAC + LM on the inliers, the inlier mask (re-labelled at the
    refined pose), their mean reprojection error (px) and two covariances of a right perturbation
    of ``T_match_query``: with the points' own errors (:func:`point_noise_px2`) and from the
    keypoint noise alone, ``sigma^2 (J^T J)^-1``; None below ``min_inliers``."""
    ok, rvec, tvec, index = cv2.solvePnPRansac(
        points_match, uv, K, None, iterationsCount=config.ransac_iterations,
        reprojectionError=config.ransac_reprojection_px, confidence=0.999, flags=cv2.SOLVEPNP_EPNP,
    )
    if not ok or index is None or len(index) < min_inliers:
        return None
    index = index.reshape(-1)
    rvec, tvec = cv2.solvePnPRefineLM(points_match[index], uv[index], K, None, rvec, tvec)
    T_query_match = np.eye(4)
    T_query_match[:3, :3], T_query_match[:3, 3] = cv2.Rodrigues(rvec)[0], tvec.reshape(3)
    points_query = points_match @ T_query_match[:3, :3].T + T_query_match[:3, 3]
    projected, d_uv = project(matrix_intrinsics(K), points_query, with_jacobian=True)
    error = np.linalg.norm(projected - uv, axis=1)
    inliers = (points_query[:, 2] > 0.0) & (error <= config.ransac_reprojection_px)
    if inliers.sum() < min_inliers:
        return None
    p = points_query[inliers]
    d_point = np.concatenate([np.broadcast_to(np.eye(3), (len(p), 3, 3)), -hat(p)], axis=2)
    J = np.einsum("nij,njk->nik", d_uv[inliers], d_point)  # (N, 2, 6)
    residual = (projected - uv)[inliers]
    sigma_px = max(config.pixel_sigma_px, float(np.sqrt(np.sum(residual**2) / max(residual.size - 6, 1))))
    noise = point_noise_px2(points_match[inliers], d_uv[inliers] @ T_query_match[:3, :3], K, config.depth_baseline_m, sigma_px)
    information = np.einsum("nki,nkl,nlj->ij", J, np.linalg.inv(noise), J)
    pixels = np.einsum("nki,nkj->ij", J, J) / sigma_px**2
    return T_query_match, inliers, float(error[inliers].mean()), np.linalg.pinv(information), np.linalg.pinv(pixels)


def point_noise_px2(
    points_match: NDArray[np.float64], d_uv_d_point: NDArray[np.float64], K: NDArray[np.float64], baseline_m: float, sigma_px: float,
) -> NDArray[np.float64]:
    """Covariance ``(N, 2, 2)`` px^2 of each PnP residual: the query keypoint's ``sigma_px`` plus the
    candidate's 3-D point ``(N, 3)`` (its camera frame) seen through ``d_uv_d_point`` ``(N, 2, 3)``
    (query pixels per candidate-frame point). The point's depth is a virtual stereo disparity of
    ``sigma_px`` at ``baseline_m``, so its error along its ray grows with depth squared; the
    candidate's keypoint noise adds ``z sigma_px / fx`` in every direction (``baseline_m`` 0: exact
    points, neither term). Points the candidate saw from far then weigh little, and a loop that
    rests on them (a wide-baseline view of a distant wall) gets the uncertainty it has instead of
    the query's pixel noise alone."""
    pixel = np.broadcast_to(sigma_px**2 * np.eye(2), (len(points_match), 2, 2))
    if baseline_m <= 0.0:
        return pixel.copy()
    z = points_match[:, 2]
    ray = points_match / z[:, None]
    sigma_z = z**2 * sigma_px / (K[0, 0] * baseline_m)
    sigma_lateral = z * sigma_px / K[0, 0]
    cov_point = sigma_z[:, None, None] ** 2 * np.einsum("ni,nj->nij", ray, ray) + sigma_lateral[:, None, None] ** 2 * np.eye(3)
    return pixel + np.einsum("nij,njk,nlk->nil", d_uv_d_point, cov_point, d_uv_d_point)


def verify_fundamental(
    query_uv: NDArray[np.float32], query_descriptors: NDArray[np.uint8],
    match_uv: NDArray[np.float32], match_descriptors_: NDArray[np.uint8], config: LoopVerificationConfig,
) -> Verification:
    """Verify an image pair without depth by a RANSAC fundamental matrix (no metric pose)."""
    pairs = match_descriptors(query_descriptors, match_descriptors_, config.ratio, config.max_hamming)
    if len(pairs) < max(config.min_matches, 8):
        return Verification(False, f"{len(pairs)} matches < {max(config.min_matches, 8)}", len(pairs))
    _, mask = cv2.findFundamentalMat(
        query_uv[pairs[:, 0]].astype(np.float64), match_uv[pairs[:, 1]].astype(np.float64),
        cv2.FM_RANSAC, config.ransac_reprojection_px, 0.999, config.ransac_iterations,
    )
    inliers = 0 if mask is None else int(mask.sum())
    if inliers < config.min_inliers:
        return Verification(False, f"{inliers} fundamental-matrix inliers < {config.min_inliers}", len(pairs), inliers)
    if inliers < config.min_inlier_ratio * len(pairs):
        return Verification(False, f"inlier ratio {inliers / len(pairs):.2f} < {config.min_inlier_ratio}", len(pairs), inliers)
    return Verification(True, "verified", len(pairs), inliers)

