"""What the scripts here share: the loop-closure bench's VO options, and a VO run stopped early.

Imported by ``frames.py``, ``burst_outliers.py`` and ``vo_first_seconds.py`` (run from the
repository root with ``PYTHONPATH=.``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from bench_loop_closure import offline_config  # noqa: E402

from mp_slam_ros.config import with_updates  # noqa: E402
from mp_slam_ros.pipelines.vo import TrackResult  # noqa: E402
from mp_slam_ros.pipelines.vo_config import VOConfig  # noqa: E402
from mp_slam_ros.pipelines.vo_run import run_vo  # noqa: E402

#: the household presets' motion model, as the loop-closure bench's runs set it
BENCH_VO_OPTIONS = {"tracking.sideways_sigma_m": 0.0005, "tracking.vertical_sigma_m": 0.0005}


class _Done(Exception):
    """Raised past the last second asked for."""


def vo_config(mode: str, updates: dict[str, object] | None = None) -> VOConfig:
    """The bench's VO options for ``mode`` (synchronous BA), then ``updates`` (dotted VO keys)."""
    return with_updates(offline_config(mode).vo, {**BENCH_VO_OPTIONS, **(updates or {})})


def run_until(sequence: Path, config: VOConfig, until_s: float, on_result: Callable[[TrackResult, float], None]) -> None:
    """The VO over ``sequence/bag`` until the first frame more than ``until_s`` after its first;
    ``on_result`` gets every frame's result and its time (s) since the first frame."""
    start_s: list[float] = []

    def each(result: TrackResult) -> None:
        stamp_s = result.stamp_ns * 1e-9
        start_s[:] = start_s or [stamp_s]
        on_result(result, stamp_s - start_s[0])
        if stamp_s - start_s[0] > until_s:
            raise _Done

    try:
        run_vo(sequence / "bag", config, on_result=each)
    except _Done:
        pass
