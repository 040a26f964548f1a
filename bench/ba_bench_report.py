"""Tables and figures of bench_ba.py."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def timing_table(timing: dict) -> list[str]:
    """Lines of the timing table: per size and method (ratios only to the peers that ran)."""
    lines = ["| window | method | median ms | p95 ms | final cost gap (median) | at equal cost | iterations | vs GTSAM | vs SciPy |",
             "|---|---|---|---|---|---|---|---|---|"]
    for size, entry in timing.items():
        methods = entry["methods"]
        gtsam, scipy = (methods.get(peer, {}).get("median_ms", 0.0) for peer in ("gtsam", "scipy"))
        for name, m in methods.items():
            lines.append(
                f"| {size} | {name} | {m['median_ms']:.1f} | {m['p95_ms']:.1f} | {m['median_cost_gap']:.1e} | "
                f"{100 * m['equal_cost_fraction']:.0f}% | {m['median_iterations']:.0f} | "
                f"{_ratio(m['median_ms'], gtsam)} | {_ratio(m['median_ms'], scipy)} |"
            )
    return lines


def optimum_table(optimum: dict) -> list[str]:
    """Lines of the optimum table: per class and overall, every method against the Schur optimum."""
    tolerance = 100 * optimum["tolerance"]
    lines = [f"| windows | method | within {tolerance:g}% of the optimum | converged_* above it by > {tolerance:g}% "
             "(short of a local minimum) | max gap | median ms | p95 ms | vs GTSAM |", "|---|---|---|---|---|---|---|---|"]
    groups = {**optimum["cases"], f"all {4 * optimum['windows_per_case']}": optimum["all"]}
    for label, methods in groups.items():
        gtsam = methods["gtsam"]["median_ms"]
        for name, m in methods.items():
            lines.append(f"| {label} | {name} | {100 * m['within_fraction']:.1f}% | {m['converged_above']} ({m['converged_above_short']}) | "
                         f"{m['max_gap']:.1e} | {m['median_ms']:.1f} | {m['p95_ms']:.1f} | {_ratio(m['median_ms'], gtsam)} |")
    return lines


def markdown_table(results: dict) -> str:
    """The README summary: timing per size and method, accuracy percentiles, product shares."""
    lines = timing_table(results["timing"])
    for key in ("optimum", "optimum_tight"):
        optimum = results[key]
        lines += ["", "Final cost against the tight fp64 Schur optimum (50 keyframes; monocular = no depth), "
                  f"every method at {optimum['stopping']} (GTSAM: relative error tolerance the same, "
                  "100 iterations):", ""]
        lines += optimum_table(optimum)
    accuracy = results["accuracy"]
    lines += ["", f"Pose error vs the fp64 solution over {accuracy['windows']} windows of 50 keyframes "
              "(RMS translation over the window's free keyframes, metres):", "",
              "| mode | p50 | p90 | p99 | max | windows below their noise-induced error | error / noise-induced, p99 |",
              "|---|---|---|---|---|---|---|"]
    rows = dict(accuracy["translation_error_vs_fp64_m"])
    rows["noise-induced (fp64 vs truth)"] = accuracy["noise_induced_translation_m"]
    noise = np.asarray(accuracy["samples_m"]["noise-induced (fp64 vs truth)"])
    for name, q in rows.items():
        ratio = np.asarray(accuracy["samples_m"][name]) / noise
        lines.append(f"| {name} | {q['p50']:.2e} | {q['p90']:.2e} | {q['p99']:.2e} | {q['max']:.2e} | "
                     f"{100 * np.mean(ratio < 1):.1f}% | {np.percentile(ratio, 99):.2f} |")
    products = results["products"]
    lines += ["", "Share of mixed-precision CG spent in the J products (50 keyframes): " + ", ".join(
        f"{k}: {100 * products['time_share'][k]:.0f}% of time, {100 * products['flop_share'][k]:.0f}% of flops"
        for k in products["time_share"])]
    return "\n".join(lines) + "\n"


def plot_timing(timing: dict, path: Path) -> None:
    """Median solve time (p95 whiskers) per window size for every method."""
    sizes = list(timing)
    names = list(timing[sizes[0]]["methods"])
    fig, ax = plt.subplots(figsize=(11, 5))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        med = [timing[s]["methods"].get(name, {}).get("median_ms", np.nan) for s in sizes]
        p95 = [timing[s]["methods"].get(name, {}).get("p95_ms", np.nan) for s in sizes]
        x = np.arange(len(sizes)) + k * width
        ax.bar(x, med, width, label=name, color=plt.cm.tab20(k % 20))
        ax.errorbar(x, med, yerr=[np.zeros(len(sizes)), np.subtract(p95, med)], fmt="none", ecolor="k", lw=0.6)
    ax.set_xticks(np.arange(len(sizes)) + 0.4 - width / 2, sizes, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("solve time (ms), median and p95")
    ax.set_title("Sliding-window BA solve time (CPU; fp16 emulated)")
    ax.legend(fontsize=6, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_cdf(accuracy: dict, path: Path) -> None:
    """Cumulative histograms of pose error vs the fp64 solution, and the noise-induced error."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, values in accuracy["samples_m"].items():
        values = np.sort(np.maximum(values, 1e-12))
        ax.step(values, np.arange(1, values.size + 1) / values.size, where="post", label=name,
                ls="--" if name.startswith("noise") else "-")
    ax.set_xscale("log")
    ax.set_xlabel("RMS translation error of the window's poses (m)")
    ax.set_ylabel("fraction of windows")
    ax.set_title(f"Pose error vs the fp64 solution, {accuracy['windows']} windows of 50 keyframes")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
