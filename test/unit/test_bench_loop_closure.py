"""The per-mode summary and offline options of bench/bench_loop_closure.py on synthetic rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bench_loop_closure import offline_config, summarize  # noqa: E402


def _row(mode: str, vo: float, mixed: float, fp64: float, wrong: int, revisits: int, closed: int) -> dict:
    loops = {"accepted": 10, "wrong": wrong, "true_revisits": revisits, "revisits_closed": closed}
    return {"mode": mode, "ate_vo": {"rmse": vo}, "ate_mixed": {"rmse": mixed}, "ate_fp64": {"rmse": fp64}, "loops": loops}


def test_summarize_takes_the_worst_sequence_per_mode() -> None:
    rows = [
        _row("rgbd", 0.50, 0.02, 0.02, 0, 10, 9),
        _row("rgbd", 0.20, 0.05, 0.04, 1, 30, 21),
        _row("stereo", 0.40, 0.04, 0.04, 0, 0, 0),
    ]
    summary = summarize(rows)
    rgbd = summary["rgbd"]
    assert rgbd["sequences"] == 2
    assert rgbd["ate_mixed_max_m"] == pytest.approx(0.05)
    assert rgbd["ate_ratio_to_vo_max"] == pytest.approx(0.25)
    assert rgbd["mixed_over_fp64_max"] == pytest.approx(1.25)
    assert (rgbd["wrong_loops"], rgbd["accepted_loops"]) == (1, 20)
    assert rgbd["recall"] == pytest.approx(30 / 40)
    assert summary["stereo"]["recall"] is None  # no true revisits: no recall


def test_offline_config_sets_the_mode_and_synchronous_solves() -> None:
    config = offline_config("stereo")
    assert config.vo.mode.value == "stereo"
    assert config.vo.ba.synchronous and config.loop_closure.pgo.synchronous
