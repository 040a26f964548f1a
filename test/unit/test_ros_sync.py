"""Approximate-time synchronisation: matching, drops by cause, bounded queues."""

from __future__ import annotations

import pytest

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.ros.sync import ApproximateTimeSync

MS = 1_000_000


def test_identical_stamps_match_at_once() -> None:
    sync = ApproximateTimeSync(3, 10 * MS)
    assert sync.push(0, 100 * MS, "rgb") == []
    assert sync.push(2, 100 * MS, "info") == []
    assert sync.push(1, 100 * MS, "depth") == [(100 * MS, ["rgb", "depth", "info"])]
    assert sync.counters.total == 0


def test_approximate_match_prefers_the_closest_and_counts_unmatched() -> None:
    sync = ApproximateTimeSync(2, 20 * MS)
    assert sync.push(0, 0, "a0") == []
    assert sync.push(0, 33 * MS, "a1") == []
    # b at 35 ms: a0 (35 ms away) can never match, a1 (2 ms away) does
    assert sync.push(1, 35 * MS, "b1") == [(35 * MS, ["a1", "b1"])]
    assert (sync.counters.unmatched, sync.counters.per_stream) == (1, [1, 0])


def test_lost_partner_drops_only_its_set() -> None:
    sync = ApproximateTimeSync(2, 5 * MS)
    out = []
    for k in range(6):
        out += sync.push(0, k * 33 * MS, f"a{k}")
        if k != 2:  # the second stream loses frame 2
            out += sync.push(1, k * 33 * MS + MS, f"b{k}")
    assert [items for _, items in out] == [[f"a{k}", f"b{k}"] for k in (0, 1, 3, 4, 5)]
    assert sync.counters.unmatched == 1 and sync.counters.per_stream == [1, 0]


def test_late_and_overflow_and_reset() -> None:
    sync = ApproximateTimeSync(2, 5 * MS, queue_size=2)
    sync.push(0, 10 * MS, "a")
    sync.push(1, 10 * MS, "b")
    assert sync.push(0, 10 * MS, "again") == [] and sync.counters.late == 1
    for k in range(3):
        sync.push(0, (20 + 10 * k) * MS, k)
    assert sync.counters.overflow == 1
    assert sync.push(1, 40 * MS, "b40") == [(40 * MS, [2, "b40"])]
    sync.reset()
    assert sync.push(0, 0, "x") == [] and sync.push(1, 0, "y") == [(0, ["x", "y"])]
    assert sync.counters.total == sync.counters.late + sync.counters.overflow + sync.counters.unmatched == 3


def test_bad_settings() -> None:
    with pytest.raises(ConfigError, match="sync.num_streams=5: must be 2, 3 or 4"):
        ApproximateTimeSync(5, MS)
    with pytest.raises(ConfigError, match="sync.max_interval_s=-0.001"):
        ApproximateTimeSync(2, -MS)
