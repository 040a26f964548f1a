"""Options of the visual odometry (:class:`VOConfig`): one tree, the same dotted keys everywhere.

``frontend.*`` features, KLT and depth/stereo association; ``tracking.*`` PnP RANSAC and the
lost-tracking rule; ``keyframes.*`` when a frame becomes a keyframe; ``ba.*`` the sliding-window
bundle adjustment. Walk, flatten, update and load with :mod:`mp_slam_ros.config`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from mp_slam_ros.config import option
from mp_slam_ros.errors import ConfigError
from mp_slam_ros.precision import Precision
from mp_slam_ros.solvers.ba import LinearSolverKind
from mp_slam_ros.solvers.robust import LossKind


class SensorMode(str, enum.Enum):
    """Where landmark depth comes from (the value of ``mode``)."""

    RGBD = "rgbd"
    STEREO = "stereo"


@dataclass(frozen=True)
class FrontendConfig:
    """Feature detection (ORB, grid-bucketed), KLT tracking and depth association."""

    max_features: int = option(500, "features kept per keyframe (tracked + new)", 20, 20000)
    grid_cols: int = option(8, "columns of the bucketing grid (features spread over cells)", 1, 64)
    grid_rows: int = option(6, "rows of the bucketing grid", 1, 64)
    fast_threshold: int = option(10, "ORB FAST threshold (grey levels)", 1, 100)
    pyramid_levels: int = option(4, "ORB pyramid levels", 1, 12)
    min_distance_px: float = option(12.0, "new features keep this far from tracked ones (px)", 0.0, 200.0)
    # RPE-1m drift, seeds 10-14 (60 s, 320x240, synchronous), median / max, 0 -> 2 px: RGB-D
    # 0.88 / 1.20% -> 0.77 / 1.08%, stereo 1.49 / 1.74% -> 1.15 / 1.35%, lower on all 10 (results/vo/feature_spacing)
    new_feature_spacing_px: float = option(2.0, "new features keep this far from stronger new ones (px; 0: off): ORB finds one corner at several pyramid levels and neighbouring pixels", 0.0, 200.0)
    klt_window_px: int = option(15, "KLT window size (px, odd)", 5, 101)
    klt_levels: int = option(3, "KLT pyramid levels above the base", 0, 8)
    klt_backward_check: bool = option(False, "track back to the previous frame and drop points that miss their start (PnP RANSAC already drops bad tracks)")
    klt_max_fb_error_px: float = option(1.0, "forward-backward KLT check (px)", 0.01, 20.0)
    # RPE-1m drift over generated household sequences (seeds 10-14, 60 s, 320x240, synchronous
    # BA), median / max, KLT alone -> aligned: RGB-D 1.37 / 2.10% -> 0.88 / 1.20%, stereo
    # 2.15 / 2.56% -> 1.40 / 1.74% (results/vo/patch_alignment); 7- and 13-px patches: higher max on 20-s runs
    patch_alignment: bool = option(True, "refine KLT pixels by patch alignment: tracked ones against their keyframe patch warped by the affine map the landmark's depth and the predicted pose imply (SVO's feature alignment), stereo matches along their row")
    alignment_patch_px: int = option(9, "side of the aligned patch (px, odd)", 3, 63)
    alignment_max_shift_px: float = option(2.0, "an alignment moving a KLT pixel further than this is not used (px)", 0.01, 50.0)
    min_depth_m: float = option(0.2, "nearest usable depth (m)", 0.0, 100.0)
    max_depth_m: float = option(8.0, "farthest usable depth (m)", 0.01, 1000.0)
    depth_edge_ratio: float = option(0.05, "RGB-D: no depth for keypoints whose 3x3 depth spread exceeds this share of their depth (0: off)", 0.0, 10.0)
    # 0.8 m: the drift comes from the pixels (KLT), not the depth noise (a noise-free depth image
    # gave no lower drift), and in close views (~0.7 m) pixels barely tell a tilt from a shift,
    # which depth pins. RPE-1m drift over generated household sequences (seeds 10-14, 60 s,
    # 320x240, synchronous BA), median / max: RGB-D 0.4 m 1.74 / 1.81%, 0.8 m 1.55 / 1.65%,
    # 1.6 m 1.65 / 1.99%; stereo 0.2 m 2.30 / 2.54%, 0.4 m 1.98 / 2.49%, 0.8 m 1.99 / 2.51%.
    # (Earlier front end, 15 s facing a wall: 0.08 m left the pan/shift ambiguity free, 12%.)
    rgbd_virtual_baseline_m: float = option(0.8, "virtual stereo baseline of depth measurements (RGB-D or stereo depth) in tracking and BA (m): their weight against the pixels", 0.001, 10.0)
    reacquire_radius_px: float = option(8.0, "keyframes re-find untracked window landmarks this close to their projection (px; 0: off)", 0.0, 100.0)
    reacquire_max_hamming: int = option(50, "ORB descriptor distance of a re-found landmark (bits)", 0, 256)
    stereo_max_row_error_px: float = option(1.0, "rectified stereo: max row difference of a match (px)", 0.0, 10.0)

    def validate(self, prefix: str = "") -> None:
        """Cross-field checks (the walker checks the bounds)."""
        if self.min_depth_m >= self.max_depth_m:
            raise ConfigError(f"{prefix}min_depth_m", self.min_depth_m, f"must be < max_depth_m ({self.max_depth_m})")
        if self.klt_window_px % 2 == 0:
            raise ConfigError(f"{prefix}klt_window_px", self.klt_window_px, "must be odd")
        if self.alignment_patch_px % 2 == 0:
            raise ConfigError(f"{prefix}alignment_patch_px", self.alignment_patch_px, "must be odd")


@dataclass(frozen=True)
class TrackingConfig:
    """Frame-to-map tracking by PnP RANSAC and the lost-tracking rule."""

    # 10: counted once per corner since frontend.new_feature_spacing_px (15 was set when ORB's
    # copies of one corner counted twice or more). Seeds 10-19 (60 s, 320x240, synchronous BA),
    # 15 -> 10: stereo seed 16 lost frames 3 -> 0 (drift 1.54 -> 1.23%), stereo seed 18 3.24 ->
    # 3.10% (ATE 8.4 -> 8.9 cm), RGB-D seed 18 1.95 -> 1.96%; the other 17 runs and the KITTI
    # excerpt unchanged (results/vo/min_inliers)
    min_inliers: int = option(10, "fewer PnP inliers than this: tracking lost (unless >= 6 agree with the motion prediction: within the prior's 99.9% gate)", 6, 10000)
    ransac_reprojection_px: float = option(2.0, "PnP RANSAC inlier threshold (px)", 0.1, 50.0)
    ransac_iterations: int = option(100, "PnP RANSAC iterations", 10, 10000)
    use_depth: bool = option(True, "refine each pose with the frame's depth at the tracked points (RGB-D depth or stereo)")
    pixel_sigma_px: float = option(1.0, "image noise (px) of the pose refinement and covariance", 0.01, 100.0)
    prior_translation_m: float = option(0.01, "sigma of the motion prior on translation per frame (m; 0: none)", 0.0, 100.0)
    prior_rotation_deg: float = option(0.5, "sigma of the motion prior on rotation per frame (deg; 0: none)", 0.0, 180.0)
    # A wheeled robot's base moves along its heading on the floor: the pose refinement holds its
    # sideways and vertical motion between frames near zero. Pixels of a view at one depth barely
    # tell a pan from a sideways shift; tracks sliding along a near plain box's silhouette used that
    # freedom to turn the heading 2.5 deg in half a second (stereo seed 18, results/vo/planar_prior).
    sideways_sigma_m: float = option(0.0, "wheeled robot: sigma of base_link's sideways motion per frame (m), held near zero in the pose refinement (nonholonomic base, base_link on the wheel axle; 0: off, e.g. a handheld camera)", 0.0, 1.0)
    vertical_sigma_m: float = option(0.0, "wheeled robot on a flat floor: sigma of base_link's vertical motion per frame (m; 0: off)", 0.0, 1.0)
    # a frame whose pose implies a faster motion than the platform can make is a tracking
    # failure (predicted instead); the prediction itself is held to the same bounds. Twin-room
    # house seed 2 (RGB-D, 320x240): a plain wall with features only in a thin floor strip let
    # the constant-velocity prior run away to 4-5 m/s and 80 deg/s, then a new map 6.3 m off.
    max_speed_mps: float = option(1.5, "fastest plausible camera speed (m/s; a tracked pose beyond it is a tracking failure; 0: no bound)", 0.0, 1000.0)
    max_angular_rate_dps: float = option(180.0, "fastest plausible camera turn rate (deg/s; beyond it: a tracking failure; 0: no bound)", 0.0, 100000.0)
    lost_variance: float = option(1e4, "pose variance reported while lost (m^2, rad^2)", 1.0, 1e12)


@dataclass(frozen=True)
class KeyframeConfig:
    """When a tracked frame becomes a keyframe (any rule fires)."""

    # 0.7: 0.8 gave lower RGB-D drift over seeds 10-14 (60 s, 320x240, synchronous BA; median /
    # max 1.33 / 1.69% against 1.55 / 1.65%, ~40% more keyframes) but lost a frame on seed 18
    # (plain-box view, tracks down to 12) where 0.7 keeps tracking
    min_tracked_ratio: float = option(0.7, "tracked landmarks below this share of the last keyframe's", 0.0, 1.0)
    min_tracked: int = option(120, "tracked landmarks below this count", 0, 100000)
    max_interval_s: float = option(1.0, "time since the last keyframe (s)", 0.01, 3600.0)
    max_translation_m: float = option(0.25, "camera travel since the last keyframe (m)", 0.001, 100.0)
    max_rotation_deg: float = option(15.0, "camera rotation since the last keyframe (deg)", 0.1, 180.0)


@dataclass(frozen=True)
class BAConfig:
    """Sliding-window bundle adjustment of the last keyframes and their landmarks."""

    enabled: bool = option(True, "run the window bundle adjustment")
    # schur/fp64 by default: on VO windows (~30 keyframes, ~3,000 observations) it solved in
    # 16 ms median against 155 ms for cgnr/mixed (6 s generated sequence, 2-core CPU under load)
    precision: Precision = option(Precision.FP64, "BA precision")
    escalate: bool = option(True, "redo a failing low-precision step one rung up (fp16 -> mixed -> fp32 -> fp64; off: naive low precision, to show why it fails)")
    solver: LinearSolverKind = option(LinearSolverKind.SCHUR, "BA linear solver")
    window_size: int = option(50, "keyframes in the window", 2, 1000)
    fixed_keyframes: int = option(1, "oldest keyframes held fixed (gauge)", 1, 100)
    max_iterations: int = option(10, "LM iterations per window solve", 1, 1000)
    max_solve_time_ms: float = option(0.0, "wall-clock budget of a window solve (ms; 0: none): a solve stops, not converged (time_limit), before an iteration that would end past it, and the next solve goes on from its state; results then depend on the machine's speed", 0.0, 1e6)
    max_landmarks: int = option(0, "landmarks in a window solve, those seen by the most keyframes first; the others move with their keyframe (0: all)", 0, 10_000_000)
    loss: LossKind = option(LossKind.HUBER, "robust loss")
    loss_scale: float = option(2.0, "robust loss scale (whitened residual norm)", 0.01, 1000.0)
    pixel_sigma_px: float = option(1.0, "observation noise (px)", 0.01, 100.0)
    outlier_threshold_px: float = option(4.0, "observations with a larger residual are dropped after a solve (px)", 0.1, 1000.0)
    synchronous: bool = option(False, "solve in the tracking thread (deterministic; offline runs, tests)")

    def validate(self, prefix: str = "") -> None:
        """Cross-field checks (the walker checks the bounds)."""
        if self.fixed_keyframes >= self.window_size:
            raise ConfigError(f"{prefix}fixed_keyframes", self.fixed_keyframes, f"must be < window_size ({self.window_size})")


@dataclass(frozen=True)
class VOConfig:
    """Every option of :class:`~mp_slam_ros.pipelines.vo.VisualOdometry`."""

    mode: SensorMode = option(SensorMode.RGBD, "depth source")
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    keyframes: KeyframeConfig = field(default_factory=KeyframeConfig)
    ba: BAConfig = field(default_factory=BAConfig)
