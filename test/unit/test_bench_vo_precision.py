"""The statistics of bench/bench_vo_precision.py and bench/bench_vo_memory.py on synthetic numbers."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bench_vo_memory import RssSampler, growth  # noqa: E402
from bench_vo_precision import plot_cdf, statistics  # noqa: E402


def _rows(mode: str, ates_m: list[float]) -> list[dict]:
    counts = {"lost": 0, "ba_solves": 2, "ba_escalated": 0, "ba_direct_fallbacks": 0, "ba_not_converged": 1, "ba_nonfinite_cost": 0,
              "ba_relative_gradient": [1e-3, 1e-5], "ba_terminations": {"converged_function": 1, "max_iterations": 1}}
    return [{"seed": i, "mode": mode, "ate_rmse_m": a, **counts} for i, a in enumerate(ates_m)]


def test_statistics_percentiles_failures_and_ratio() -> None:
    fp64 = [0.001 * (i + 1) for i in range(100)]  # 1..100 mm
    mixed = [1.02 * a for a in fp64]
    naive = fp64[:98] + [math.inf, math.inf]  # two failed runs
    stats = statistics(_rows("fp64", fp64) + _rows("mixed", mixed) + _rows("fp16_naive", naive), ["fp64", "mixed", "fp16_naive"])
    m = stats["modes"]["fp64"]
    assert (m["sequences"], m["failures"]) == (100, 0)
    assert m["ate_median_m"] == pytest.approx(0.050)  # an observed value, not an interpolation
    assert m["ate_p95_m"] == pytest.approx(0.095)
    assert m["ate_max_m"] == pytest.approx(0.100)
    assert m["ba_solves"] == 200 and m["ba_not_converged"] == 100
    assert m["ba_terminations"] == {"converged_function": 100, "max_iterations": 100}
    assert m["ba_relative_gradient_median"] == pytest.approx(5.05e-4)
    assert stats["mixed_over_fp64"]["ate_median_m"] == pytest.approx(1.02)
    assert stats["mixed_over_fp64"]["ate_p95_m"] == pytest.approx(1.02)
    assert stats["mixed_within_bound"]
    assert stats["per_seed_ratio_to_fp64"]["mixed"]["p50"] == pytest.approx(1.02)
    assert stats["per_seed_ratio_to_fp64"]["fp16_naive"]["seeds"] == 100
    naive_stats = stats["modes"]["fp16_naive"]
    assert naive_stats["failures"] == 2 and naive_stats["ate_max_m"] == math.inf


def test_statistics_flags_mixed_outside_the_bound_and_missing_modes() -> None:
    stats = statistics(_rows("fp64", [0.01, 0.02]) + _rows("mixed", [0.0106, 0.02]), ["fp64", "fp32", "mixed"])
    assert "fp32" not in stats["modes"]
    assert not stats["mixed_within_bound"]
    assert not statistics(_rows("fp64", [0.01]), ["fp64"])["mixed_within_bound"]  # nothing to compare


def test_plot_cdf_writes_a_png_with_failed_runs(tmp_path: Path) -> None:
    path = tmp_path / "cdf.png"
    plot_cdf(_rows("fp64", [0.01, 0.02]) + _rows("fp16_naive", [0.03, math.inf]), ["fp64", "fp16_naive"], path, "t")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_rss_growth_after_the_warm_up() -> None:
    sampler = RssSampler(every=30, warm_up_frame=60)
    sampler.frames = [30, 60, 90, 120]
    sampler.rss_mib = [50.0, 100.0, 105.0, 110.0]
    result = growth(sampler, rate_hz=30.0, smoothing_s=2.0)
    assert result["rss_warm_up_mib"] == 100.0 and result["rss_end_mib"] == 110.0
    assert result["growth_percent"] == pytest.approx(10.0) and result["within_bound"]
    assert result["slope_mib_per_100s"] == pytest.approx(500.0)  # 5 MiB per second of sequence
    assert result["rss_peak_mib"] == 110.0
    # medians of frames [60, 120) and (60, 120]: 102.5 -> 107.5
    assert result["growth_median_percent"] == pytest.approx(100 * 5 / 102.5)
