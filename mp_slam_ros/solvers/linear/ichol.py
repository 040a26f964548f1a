"""Static incomplete-Cholesky preconditioner for :class:`~.cgnr.CGNRSolver` (the PGO recipe).

:class:`IncompleteCholeskyFactory` builds, once per problem, ``A = J_s^T J_s + damping I`` (the
normal matrix of the first column-scaled Jacobian, unit diagonal) and factors it as ``A ~ L L^T``
on the sparsity pattern of ``A`` (IC(0)); with ``drop_tolerance > 0`` entries with
``|l_ik| < drop_tolerance * sqrt(a_ii a_kk)`` are dropped as well (thresholded IC: a sparser factor
and cheaper triangular solves for a weaker preconditioner). :meth:`IncompleteCholesky.apply`
returns ``z = L^-T L^-1 s`` by two sparse triangular solves.

Precision (``apply(s, dtype)``, dtype = the policy's preconditioner dtype), each factor computed
once per dtype from the same ``A`` and cached:

* float64 / float32: factorization and triangular solves in that dtype;
* float16 (emulated, the ``mixed`` recipe): ``L`` is stored rounded to float16 (every entry is
  rounded as it is computed during the factorization), the right-hand side is scaled by a power
  of two (exact) so its largest entry is ~1 and rounded to float16, every computed unknown
  ``x_i`` of both triangular solves is rounded to float16 as a true half-precision solve would
  store it, and the dot products accumulate in float32. Values are real float16 values (held in
  float32 arrays), so the accuracy is that of fp16; the speed is not (see the package docs:
  the gain needs a GPU or an fp16-capable ARM CPU). A solve that overflows float16 is retried
  once with the input scaled down by 2^-12; if it overflows again the result is non-finite and
  the LM driver escalates.

Breakdown (a non-positive, non-finite or, in float16, underflowing pivot) is handled by the
Manteuffel diagonal shift: the factorization is retried on ``A + alpha diag(A)`` with ``alpha``
= ``initial_shift``, then ten times larger, up to ``max_shifts`` retries; the retries are counted
in :attr:`IncompleteCholesky.shifts` (reported in the LM summary). If every retry fails (a
non-finite matrix), :meth:`apply` returns NaN so the solve reports a non-finite result.

The triangular solves and the factorization are numba kernels (``cache=True``) on the CPU.
On a CUDA backend the factor is computed on the host and the solves use
``cupyx.scipy.sparse.linalg.spsolve_triangular`` in float32/float64 (float16 values stored in
float32, rounding of inputs and outputs only) -- this path is untested here (no GPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.sparse as sp

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.precision import Backend, PrecisionPolicy

_F16, _F32 = np.dtype(np.float16), np.dtype(np.float32)
#: Largest finite float16 and the input rescaling of the overflow retry.
_FP16_MAX = np.float32(65504.0)
_OVERFLOW_RETRY_SCALE = 2.0**-12


@numba.njit(inline="always")
def _round_fp16(x):  # type: ignore[no-untyped-def]
    """``x`` (float32) rounded to the nearest float16 value (ties to even), as float32.

    Adding and subtracting ``c = 2^(e + 12)`` in float32 rounds ``|x|`` in ``[2^(e-1), 2^e)`` to
    a multiple of ``2^(e - 11)``: the float16 spacing in that binade (``2^-24`` for float16
    subnormals). Overflow gives inf, NaN stays NaN.
    """
    ax = abs(x)
    if not ax < np.float32(65520.0):
        return x if ax != ax else x * np.float32(np.inf)
    exponent = max(math.frexp(ax)[1] + 12, -1)
    c = np.float32(math.ldexp(1.0, exponent))
    rounded = (ax + c) - c
    if rounded > _FP16_MAX:
        rounded = np.float32(np.inf)
    return rounded if x >= 0 else -rounded


@numba.njit(cache=True)
def round_fp16_array(values: np.ndarray) -> np.ndarray:
    """``values`` (float32) rounded to float16 values element-wise (the kernel's rounding)."""
    out = np.empty_like(values)
    for i in range(values.size):
        out[i] = _round_fp16(values[i])
    return out


@numba.njit(cache=True)
def _factorize(indptr, indices, a_data, alpha, drop_tolerance, round16):  # type: ignore[no-untyped-def]
    """IC on the lower-triangular CSR pattern (sorted, diagonal last) of ``A + alpha diag(A)``.

    Arithmetic in the dtype of ``a_data`` (``alpha`` and ``drop_tolerance`` have that dtype);
    with ``round16`` every entry of ``L`` is rounded to float16 as it is computed.
    Returns ``(l_data, failed_row)``; ``failed_row`` is -1 on success.
    """
    n = indptr.size - 1
    l_data = np.zeros_like(a_data)
    work = np.zeros(n, dtype=a_data.dtype)
    diag = np.ones(n, dtype=a_data.dtype)
    root = np.ones(n, dtype=a_data.dtype)
    for i in range(n):
        start, last = indptr[i], indptr[i + 1] - 1
        if last < start or indices[last] != i:
            return l_data, i
        a_ii = a_data[last]
        root[i] = np.sqrt(abs(a_ii))
        for p in range(start, last):
            work[indices[p]] = a_data[p]
        pivot = a_ii + alpha * (a_ii if a_ii > 0 else diag[i])
        for p in range(start, last):
            k = indices[p]
            s = work[k]
            for q in range(indptr[k], indptr[k + 1] - 1):
                s -= l_data[q] * work[indices[q]]
            value = s / diag[k]
            if round16:
                value = _round_fp16(value)
            if abs(value) < drop_tolerance * root[i] * root[k]:
                value = value - value
            work[k] = value
            l_data[p] = value
            pivot -= value * value
        for p in range(start, last):
            work[indices[p]] = 0
        d = np.sqrt(pivot) if pivot > 0 else pivot - pivot
        if round16:
            d = _round_fp16(d)
        if not (d > 0 and d < np.inf):
            return l_data, i
        diag[i] = d
        l_data[last] = d
    return l_data, -1


@numba.njit(cache=True)
def _triangular_solves(l_ptr, l_idx, l_val, u_ptr, u_idx, u_val, b, round16):  # type: ignore[no-untyped-def]
    """``z = L^-T L^-1 b``: forward solve on ``L`` (CSR, diagonal last in each row), then
    backward solve on ``U = L^T`` (CSR, diagonal first). With ``round16`` every computed
    unknown is rounded to float16; accumulation is in the dtype of the arrays."""
    n = b.size
    y = np.empty_like(b)
    for i in range(n):
        last = l_ptr[i + 1] - 1
        acc = b[i]
        for p in range(l_ptr[i], last):
            acc -= l_val[p] * y[l_idx[p]]
        value = acc / l_val[last]
        y[i] = _round_fp16(value) if round16 else value
    z = np.empty_like(b)
    for i in range(n - 1, -1, -1):
        first = u_ptr[i]
        acc = y[i]
        for p in range(first + 1, u_ptr[i + 1]):
            acc -= u_val[p] * z[u_idx[p]]
        value = acc / u_val[first]
        z[i] = _round_fp16(value) if round16 else value
    return z


@dataclass
class _Factor:
    """``L`` and ``L^T`` as CSR in the compute dtype (float32 for float16 storage)."""

    lower: sp.csr_matrix
    upper: sp.csr_matrix
    ok: bool
    device: tuple | None = None  # CuPy copies (CUDA backend only)


@dataclass(frozen=True)
class IncompleteCholeskyFactory:
    """Builds :class:`IncompleteCholesky` preconditioners; a :data:`~.cgnr.PreconditionerFactory`.

    ``drop_tolerance``: 0 for IC(0), > 0 for the thresholded variant (module docstring);
    ``initial_shift``/``max_shifts``: the breakdown retries.
    """

    drop_tolerance: float = 0.0
    initial_shift: float = 1e-3
    max_shifts: int = 8

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_tolerance < 1.0:
            raise ConfigError("ichol.drop_tolerance", self.drop_tolerance, "must be in [0, 1)")
        if not self.initial_shift > 0.0:
            raise ConfigError("ichol.initial_shift", self.initial_shift, "must be > 0")
        if self.max_shifts < 0:
            raise ConfigError("ichol.max_shifts", self.max_shifts, "must be >= 0")

    def __call__(
        self, jacobian_scaled: sp.csr_matrix, damping: float, policy: PrecisionPolicy, backend: Backend
    ) -> IncompleteCholesky:
        """Preconditioner of ``J_s^T J_s + damping I``, factored now in ``policy.preconditioner``."""
        preconditioner = IncompleteCholesky(_normal_lower(jacobian_scaled, damping), self, backend)
        preconditioner.factor(policy.preconditioner)
        return preconditioner


def _normal_lower(jacobian_scaled: sp.csr_matrix, damping: float) -> sp.csr_matrix:
    """Lower triangle (with an explicit diagonal, sorted indices) of ``J^T J + damping I``."""
    J = sp.csr_matrix(jacobian_scaled, dtype=np.float64)
    lower = sp.tril(sp.csr_matrix(J.T @ J), format="coo")
    n = J.shape[1]
    diagonal = np.arange(n)
    rows = np.concatenate([lower.row, diagonal])
    cols = np.concatenate([lower.col, diagonal])
    values = np.concatenate([lower.data, np.full(n, float(damping))])
    out = sp.csr_matrix((values, (rows, cols)), shape=(n, n))  # duplicates summed, zeros kept
    out.sort_indices()
    return out


@dataclass
class IncompleteCholesky:
    """``z = M^-1 s`` with ``M = L L^T ~ A`` (see the module docstring); a CGNR preconditioner."""

    A_lower: sp.csr_matrix
    options: IncompleteCholeskyFactory
    backend: Backend = Backend.CPU
    shifts: int = 0
    _factors: dict[str, _Factor] = field(default_factory=dict, repr=False)

    def factor(self, dtype: np.dtype) -> _Factor:
        """The factor for ``dtype``, computed on first use (with shift retries) and cached."""
        key = np.dtype(dtype).name
        if key not in self._factors:
            self._factors[key] = self._compute(np.dtype(dtype))
        return self._factors[key]

    def _compute(self, dtype: np.dtype) -> _Factor:
        round16 = dtype == _F16
        compute = _F32 if round16 else dtype
        A = self.A_lower
        a_data = A.data.astype(compute)
        if round16:
            a_data = round_fp16_array(a_data)
        alpha, failed_row, l_data = 0.0, 0, a_data
        for attempt in range(self.options.max_shifts + 1):
            if attempt:
                alpha = self.options.initial_shift * 10.0 ** (attempt - 1)
                self.shifts += 1
            l_data, failed_row = _factorize(
                A.indptr, A.indices, a_data, compute.type(alpha),
                compute.type(self.options.drop_tolerance), round16,
            )
            if failed_row < 0:
                break
        lower = sp.csr_matrix((l_data, A.indices, A.indptr), shape=A.shape)
        if self.options.drop_tolerance > 0.0:
            lower.eliminate_zeros()
        upper = sp.csr_matrix(lower.T)
        upper.sort_indices()
        return _Factor(lower, upper, failed_row < 0)

    def apply(self, s: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """``M^-1 s`` computed in ``dtype`` (module docstring), returned in the dtype of ``s``."""
        factor = self.factor(dtype)
        if self.backend is Backend.CUDA:
            return self._apply_cuda(factor, s, np.dtype(dtype))
        if not factor.ok:
            return np.full_like(s, np.nan)
        round16 = np.dtype(dtype) == _F16
        b = np.asarray(s, dtype=factor.lower.dtype)
        if not round16:
            return self._solve(factor, b, False).astype(s.dtype, copy=False)
        peak = float(np.max(np.abs(b), initial=0.0))
        if not 0.0 < peak < np.inf:
            return np.zeros_like(s) if peak == 0.0 else np.full_like(s, np.nan)
        scale = 2.0 ** -math.ceil(math.log2(peak))
        for _ in range(2):
            z = self._solve(factor, round_fp16_array(b * np.float32(scale)), True)
            if np.all(np.isfinite(z)):
                break
            scale *= _OVERFLOW_RETRY_SCALE
        return (z / np.float32(scale)).astype(s.dtype, copy=False)

    @staticmethod
    def _solve(factor: _Factor, b: np.ndarray, round16: bool) -> np.ndarray:
        L, U = factor.lower, factor.upper
        return _triangular_solves(L.indptr, L.indices, L.data, U.indptr, U.indices, U.data, b, round16)

    def _apply_cuda(self, factor: _Factor, s: object, dtype: np.dtype) -> object:
        """Untested (no GPU here): cuSPARSE triangular solves in float32/float64."""
        import cupy  # noqa: PLC0415
        from cupyx.scipy import sparse as cusparse  # noqa: PLC0415
        from cupyx.scipy.sparse.linalg import spsolve_triangular  # noqa: PLC0415

        if not factor.ok:
            return cupy.full_like(s, cupy.nan)
        if factor.device is None:
            factor.device = (cusparse.csr_matrix(factor.lower), cusparse.csr_matrix(factor.upper))
        lower, upper = factor.device
        b = s.astype(factor.lower.dtype)
        y = spsolve_triangular(lower, b, lower=True)
        if dtype == _F16:
            y = y.astype(cupy.float16).astype(cupy.float32)
        z = spsolve_triangular(upper, y, lower=False)
        if dtype == _F16:
            z = z.astype(cupy.float16).astype(cupy.float32)
        return z.astype(s.dtype)
