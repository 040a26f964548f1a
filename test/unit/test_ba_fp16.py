"""The fast float16 rounding kernel is bit-identical to NumPy's conversion."""

from __future__ import annotations

import numpy as np
import pytest

from mp_slam_ros.fp16 import round_to_half
from mp_slam_ros.precision import round_to


def _reference(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return values.astype(np.float16).astype(np.float32)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.all((a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))))


def test_random_float32_bit_patterns() -> None:
    bits = np.random.default_rng(0).integers(0, 2**32, size=1_000_000, dtype=np.uint64).astype(np.uint32)
    values = bits.view(np.float32)
    assert _same(round_to_half(values), _reference(values))


def test_every_float16_value_and_its_neighbours_and_midpoints() -> None:
    halves = np.arange(2**16, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    halves = halves[np.isfinite(halves)]
    bits = halves.view(np.uint32).astype(np.int64)
    neighbours = [np.clip(bits + d, 0, 2**32 - 1).astype(np.uint32).view(np.float32) for d in range(-3, 4)]
    ordered = np.sort(halves)
    midpoints = (ordered[:-1].astype(np.float64) + ordered[1:]) / 2
    values32 = np.concatenate([*neighbours, midpoints.astype(np.float32), np.float32([65519.99, 65520.0, np.inf, -np.inf, np.nan])])
    assert _same(round_to_half(values32), _reference(values32))
    values64 = np.concatenate([midpoints, np.nextafter(midpoints, np.inf), np.nextafter(midpoints, -np.inf)])
    assert _same(round_to_half(values64), _reference(values64))


@pytest.mark.parametrize("shape", [(0,), (7,), (3, 4, 2)])
def test_round_to_keeps_shape_and_returns_float32(shape: tuple[int, ...]) -> None:
    values = np.random.default_rng(1).standard_normal(shape) * 1e-5
    out = round_to(values, np.float16)
    assert out.shape == shape and out.dtype == np.float32
    assert _same(out, _reference(values))
