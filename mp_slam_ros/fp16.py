"""Fast, bit-exact rounding of float32/float64 arrays to float16 values (held in float32).

``x.astype(np.float16).astype(np.float32)`` is the reference, but NumPy converts values in the
float16 subnormal range (|x| < 2**-14) through a slow scalar path, ~50x slower than normal
values, and the unit-normalized vectors of an iterative solver are full of them. The numba
kernels below compute the same result (round to nearest, ties to even; overflow to +-inf at
|x| >= 65520; NaN kept) with integer operations on the significand for normal values and an
exact float addition for subnormal ones. :func:`round_fp16` is the scalar, for numba kernels
that round as they compute (incomplete Cholesky, sparse products, PGO residuals).
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

_F16_MIN_NORMAL = 2.0**-14
_F16_SUBNORMAL_SCALE = 2.0**24
#: Values at or above this magnitude round to infinity (halfway between 65504 and 2**16).
_F16_OVERFLOW = 65520.0


@intrinsic
def _float32_bits(typingctx, value):  # type: ignore[no-untyped-def]
    """The bits of a float32 as a uint32 (a register bitcast)."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], context.get_value_type(types.uint32))

    return types.uint32(types.float32), codegen


@intrinsic
def _bits_float32(typingctx, value):  # type: ignore[no-untyped-def]
    """The float32 whose bits are the uint32 ``value``."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.bitcast(args[0], context.get_value_type(types.float32))

    return types.float32(types.uint32), codegen


@numba.njit(inline="always")
def round_fp16(x):  # type: ignore[no-untyped-def]
    """``x`` (float32) rounded to the nearest float16 value (ties to even), as float32.

    Normal range: keep 10 of the 23 significand bits, ties to even, on the bits. Subnormal
    float16 range (``|x| < 2^-14``, spacing ``2^-24``): ``(|x| + 1/2) - 1/2`` in float32 rounds
    to that spacing. ``|x| >= 65520`` gives inf, NaN stays NaN.
    """
    ax = abs(x)
    if not ax < np.float32(_F16_OVERFLOW):
        return x if ax != ax else x * np.float32(np.inf)
    if ax < np.float32(_F16_MIN_NORMAL):
        rounded = (ax + np.float32(0.5)) - np.float32(0.5)
        return np.float32(np.copysign(rounded, x))
    bits = _float32_bits(np.float32(x))
    bits = (bits + np.uint32(0x0FFF) + ((bits >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
    return _bits_float32(bits)


@numba.njit(cache=True, nogil=True)
def _round_f32(values: np.ndarray, out: np.ndarray) -> None:
    for i in range(values.size):
        out[i] = round_fp16(values[i])


@numba.njit(cache=True, nogil=True)
def _round_f64(values: np.ndarray, out: np.ndarray) -> None:
    bits_in = values.view(np.uint64)
    rounded = np.empty(1, dtype=np.float64)
    rounded_bits = rounded.view(np.uint64)
    for i in range(values.size):
        x = values[i]
        a = abs(x)
        if not a < _F16_OVERFLOW:
            out[i] = x if np.isnan(x) else np.copysign(np.inf, x)
        elif a < _F16_MIN_NORMAL:
            out[i] = np.copysign(np.rint(a * _F16_SUBNORMAL_SCALE) / _F16_SUBNORMAL_SCALE, x)
        else:  # keep 10 of 52 significand bits, ties to even
            b = bits_in[i]
            rounded_bits[0] = (
                b + np.uint64(0x1FFFFFFFFFF) + ((b >> np.uint64(42)) & np.uint64(1))
            ) & np.uint64(0xFFFFFC0000000000)
            out[i] = rounded[0]  # exactly representable in float32


def round_to_half(values: np.ndarray) -> np.ndarray:
    """``values`` rounded to float16, as a new float32 array of the same shape.

    Bit-identical to ``values.astype(np.float16).astype(np.float32)`` for float32/float64 input
    (other dtypes go through that reference path).
    """
    values = np.asarray(values)
    if values.dtype not in (np.float32, np.float64):
        return values.astype(np.float16).astype(np.float32)
    flat = np.ascontiguousarray(values).reshape(-1)
    out = np.empty(flat.shape, dtype=np.float32)
    (_round_f32 if flat.dtype == np.float32 else _round_f64)(flat, out)
    return out.reshape(values.shape)
