"""The ROS-free half of ``mp-slam demo`` (the command itself is :mod:`mp_slam_ros.ros.demo_cli`).

The demo's household sequence (generated once per settings and cached), the trajectory after loop
closure from the nodes' outputs, the ATE table (max / p99 / p90 / mean, VO alone and with loop
closure, per precision) and the plots: trajectories over the floor plan, ATE CDFs per mode.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mp_slam_ros.eval.metrics import ErrorStats, Evaluation
from mp_slam_ros.geometry.lie import se3_inverse
from mp_slam_ros.io.tum import TumTrajectory
from mp_slam_ros.sim.config import SequenceConfig
from mp_slam_ros.sim.sequence import generate_sequence

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class DemoSequence:
    """The generated household run: length, camera, seed, and when keyframes may close loops."""

    duration_s: float
    image_scale: float
    rate_hz: float
    seed: int
    loop_min_age_s: float

    def config(self) -> SequenceConfig:
        """The generator's configuration of this sequence."""
        base = SequenceConfig()
        return replace(base, seed=self.seed, duration_s=self.duration_s,
                       camera=replace(base.camera, image_scale=self.image_scale, rate_hz=self.rate_hz))

    def key(self) -> str:
        """Cache folder name: the settings and a hash of the full generator configuration."""
        digest = hashlib.sha256(json.dumps(self.config().as_dict(), sort_keys=True, default=str).encode()).hexdigest()[:10]
        return f"house-s{self.seed}-{self.duration_s:g}s-x{self.image_scale:g}-{self.rate_hz:g}hz-{digest}"


#: the default demo (<= 10 min on a 2-core CPU with two precision modes) and ``--quick`` (<= 2 min)
DEFAULT_SEQUENCE = DemoSequence(duration_s=60.0, image_scale=0.5, rate_hz=15.0, seed=1, loop_min_age_s=20.0)
QUICK_SEQUENCE = DemoSequence(duration_s=40.0, image_scale=0.5, rate_hz=15.0, seed=1, loop_min_age_s=10.0)


def cached_sequence(sequence: DemoSequence, cache_dir: Path, progress: Callable[[int, int], None] | None = None) -> Path:
    """The sequence's folder under ``cache_dir`` (bag/, groundtruth.tum, sequence.json), generated
    into a temporary folder and renamed when missing (an interrupted run leaves no half sequence)."""
    out = cache_dir / sequence.key()
    if (out / "sequence.json").is_file():
        return out
    partial = cache_dir / f".{sequence.key()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    generate_sequence(sequence.config(), partial, progress)
    partial.rename(out)
    return out


def trajectory_with_corrections(
    stamps_ns: FloatArray, T_odom_base: FloatArray, keyframe_stamps_ns: FloatArray, T_odom_cam_kf: FloatArray, T_map_cam_kf: FloatArray,
) -> TumTrajectory:
    """``T_map_base`` at every odometry stamp, corrected by the final optimised keyframe poses.

    Each frame takes the correction ``T_map_odom = T_map_cam T_odom_cam^-1`` of the latest keyframe
    at or before it (identity before the first): ``(N,)`` stamps, ``(N, 4, 4)`` odometry poses,
    ``(K,)`` keyframe stamps (sorted) with their ``(K, 4, 4)`` odometry and optimised camera poses.
    """
    corrections = np.concatenate([np.eye(4)[None], T_map_cam_kf @ se3_inverse(T_odom_cam_kf)]) if len(T_map_cam_kf) else np.eye(4)[None]
    latest = np.searchsorted(np.asarray(keyframe_stamps_ns), np.asarray(stamps_ns), side="right")  # 0: before the first keyframe
    return TumTrajectory.from_matrices(np.asarray(stamps_ns) * 1e-9, corrections[latest] @ T_odom_base)


def ate_table(rows: Sequence[tuple[str, str, ErrorStats]]) -> str:
    """The table of ATE max / p99 / p90 / mean (cm) per (precision, estimate) row."""
    header = f"{'precision':<10} {'trajectory':<20} {'poses':>6} {'max':>8} {'p99':>8} {'p90':>8} {'mean':>8}"
    lines = ["ATE [cm] (SE(3)-aligned to the ground truth)", header, "-" * len(header)]
    for precision, name, stats in rows:
        values = " ".join(f"{100 * getattr(stats, s):8.2f}" for s in ("max", "p99", "p90", "mean"))
        lines.append(f"{precision:<10} {name:<20} {stats.n:>6} {values}")
    return "\n".join(lines)


def _pyplot():  # noqa: ANN202 (matplotlib.pyplot, imported on first use: the CLI starts faster)
    """pyplot on the Agg backend (files only; no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_floor_plan(sequence_json: Path, evaluations: Sequence[Evaluation], path: Path) -> Path:
    """Trajectories (aligned to the ground truth) drawn over the rooms and doors of the house."""
    from matplotlib.patches import Rectangle

    plt = _pyplot()
    house = json.loads(sequence_json.read_text())["house"]
    fig, ax = plt.subplots(figsize=(8, 7))
    for room in house["rooms"]:
        (x0, y0), (x1, y1) = room["lo_xy"], room["hi_xy"]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=True, facecolor="0.95", edgecolor="0.3", lw=2))
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"room {room['index']}", color="0.6", ha="center", va="center")
    for door in house["doors"]:
        (x0, y0), (x1, y1) = door["lo_xy"], door["hi_xy"]
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor="white", edgecolor="white", lw=2))
    reference = evaluations[0].positions_ref_m
    ax.plot(reference[:, 0], reference[:, 1], "k--", lw=1.5, label="ground truth")
    for evaluation in evaluations:
        xy = evaluation.positions_aligned_m
        ax.plot(xy[:, 0], xy[:, 1], lw=1.0, label=f"{evaluation.name} (ATE mean {100 * evaluation.ate_m.mean:.1f} cm)")
    ax.set(xlabel="x [m]", ylabel="y [m]", title="trajectories over the floor plan")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize="small", loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_before_after_cdf(precision: str, evaluations: Sequence[Evaluation], path: Path) -> Path:
    """ATE CDFs of one precision mode, VO alone against with loop closure, p90 of each marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for evaluation in evaluations:
        errors_cm = np.sort(100 * evaluation.ate_errors_m)
        line, = ax.plot(errors_cm, np.arange(1, errors_cm.size + 1) / errors_cm.size, lw=1.5, label=evaluation.name)
        ax.axvline(100 * evaluation.ate_m.p90, color=line.get_color(), ls=":", lw=1.0)
    ax.set(xlabel="ATE [cm]", ylabel="fraction of poses", ylim=(0, 1.01), title=f"{precision}: ATE distribution (dotted: p90)")
    ax.legend(fontsize="small", loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_demo_plots(sequence_dir: Path, evaluations: dict[str, list[Evaluation]], out_dir: Path) -> list[Path]:
    """The floor-plan plot of every run and one ATE CDF per precision mode; the PNG paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = [evaluation for mode in evaluations.values() for evaluation in mode]
    paths = [plot_floor_plan(sequence_dir / "sequence.json", runs, out_dir / "trajectories_floor_plan.png")]
    paths += [plot_before_after_cdf(precision, mode_runs, out_dir / f"ate_cdf_{precision}.png") for precision, mode_runs in evaluations.items()]
    return paths


def summary_json(sequence: DemoSequence, rows: Sequence[tuple[str, str, ErrorStats]], extra: dict[str, object]) -> str:
    """Machine-readable results: the sequence settings, every row's statistics (metres), extras."""
    return json.dumps({"sequence": asdict(sequence), "ate_m": [{"precision": p, "trajectory": n, **asdict(s)} for p, n, s in rows], **extra}, indent=2)
