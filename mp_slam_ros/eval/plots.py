"""PNG plots of evaluations: top view, ATE over time, cumulative error distribution over runs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mp_slam_ros.eval.metrics import Evaluation  # noqa: E402

_DPI = 120


def plot_top_view(evaluations: Sequence[Evaluation], path: Path) -> Path:
    """Ground truth and every aligned estimate seen from above (x-y, metres)."""
    fig, ax = plt.subplots(figsize=(7, 6))
    reference = max(evaluations, key=lambda e: e.positions_ref_m.shape[0])
    ax.plot(reference.positions_ref_m[:, 0], reference.positions_ref_m[:, 1], "k--", lw=1.5, label="ground truth")
    for evaluation in evaluations:
        xy = evaluation.positions_aligned_m
        ax.plot(xy[:, 0], xy[:, 1], lw=1.0, label=f"{evaluation.name} (ATE rmse {evaluation.ate_m.rmse:.3f} m)")
    ax.set(xlabel="x [m]", ylabel="y [m]", title="trajectories (aligned, top view)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_error_over_time(evaluations: Sequence[Evaluation], path: Path) -> Path:
    """ATE (metres) against time since the first matched pose."""
    fig, ax = plt.subplots(figsize=(8, 4))
    start = min(e.timestamps_s[0] for e in evaluations)
    for evaluation in evaluations:
        ax.plot(evaluation.timestamps_s - start, evaluation.ate_errors_m, lw=1.0, label=evaluation.name)
    ax.set(xlabel="time [s]", ylabel="ATE [m]", title="absolute trajectory error over time")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_error_cdf(evaluations: Sequence[Evaluation], path: Path) -> Path:
    """Cumulative distribution of ATE per run, and pooled over all runs (bold)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for evaluation in evaluations:
        errors = np.sort(evaluation.ate_errors_m)
        ax.plot(errors, np.arange(1, errors.size + 1) / errors.size, lw=0.8, alpha=0.7, label=evaluation.name)
    if len(evaluations) > 1:
        pooled = np.sort(np.concatenate([e.ate_errors_m for e in evaluations]))
        ax.plot(pooled, np.arange(1, pooled.size + 1) / pooled.size, "k", lw=2.0, label=f"all {len(evaluations)} runs")
    ax.set(xlabel="ATE [m]", ylabel="fraction of poses", title="cumulative ATE distribution", ylim=(0, 1.01))
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def write_plots(evaluations: Sequence[Evaluation], out_dir: Path) -> list[Path]:
    """All three plots into ``out_dir`` (created); returns the PNG paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return [
        plot_top_view(evaluations, out_dir / "trajectories_top_view.png"),
        plot_error_over_time(evaluations, out_dir / "ate_over_time.png"),
        plot_error_cdf(evaluations, out_dir / "ate_cdf.png"),
    ]


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path
