"""Static incomplete-Cholesky preconditioner for :class:`~.cgnr.CGNRSolver` (the PGO recipe).

:class:`IncompleteCholeskyFactory` builds, once per problem, ``A = J_s^T J_s + damping I`` (the
normal matrix of the column-scaled Jacobian, unit diagonal: of the first system, or of a
``reference_jacobian`` the problem supplies) and factors ``P A P^T ~ L L^T`` with a left-looking
incomplete Cholesky (numba):

* ``drop_tolerance == 0``: IC(0), ``L`` restricted to the pattern of ``A`` (natural ordering by
  default: for pose graphs, the odometry order);
* ``drop_tolerance > 0``: thresholded IC (ICT): fill is allowed and every entry with
  ``|l_rj| < drop_tolerance * ||A[j:, j]||_1`` is dropped (AMD ordering by default, from
  CHOLMOD, see :mod:`.cholmod`; reverse Cuthill-McKee without it). Much stronger than IC(0) on graphs with
  many loop closures, for a factor a few times larger.

:meth:`IncompleteCholesky.apply` returns ``z = P^T L^-T L^-1 P s`` by two sparse triangular
solves.

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
On a CUDA backend the factor is computed on the host and the solves are the package's native
sync-free kernels (:mod:`.cuda_trisolve`) with the values stored in the factor's dtype (float16
included) and the CPU semantics above: fp16 input scaling and rounding, every unknown stored in
float16, float32 sums, the overflow retry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

from mp_slam_ros.errors import ConfigError
from mp_slam_ros.fp16 import round_fp16
from mp_slam_ros.precision import Backend, PrecisionPolicy, round_to
from mp_slam_ros.solvers.linear import cholmod
from mp_slam_ros.solvers.linear.base import ScaledSystem
from mp_slam_ros.solvers.linear.normal_equations import NormalPattern
from mp_slam_ros.solvers.linear.operators import unsigned_pattern


_F16, _F32 = np.dtype(np.float16), np.dtype(np.float32)
#: Input rescaling of the fp16 solve's overflow retry.
_OVERFLOW_RETRY_SCALE = 2.0**-12


@numba.njit(cache=True, nogil=True)
def _factorize(a_ptr, a_idx, a_val, alpha, drop_tolerance, restrict, round16, capacity):  # type: ignore[no-untyped-def]
    """Left-looking incomplete Cholesky of ``A + alpha diag(A)``, column by column.

    Input: the lower triangle of ``A`` by columns (CSC: ``a_ptr``, ``a_idx`` sorted with the
    diagonal first, ``a_val``). ``restrict``: keep only entries in the pattern of ``A`` (IC(0)),
    else allow fill; either way entries with ``|l_rj| < drop_tolerance * ||A[j:, j]||_1`` are
    dropped. Arithmetic in the dtype of ``a_val`` (``alpha``/``drop_tolerance`` have it too);
    with ``round16`` every entry of ``L`` is rounded to float16 as it is computed.
    Columns ``k`` with ``L[j, k] != 0`` are found through linked lists keyed by each column's
    next pending row (the classic left-looking scheme; no row access to ``L`` needed). The
    dense work column stays zero outside the rows of the current column; fill rows are detected
    without a branch, and only the kept entries are sorted (by insertion: the rows of ``A``
    arrive sorted, fill rows after them).
    Returns ``(l_ptr, l_idx, l_val, status)``: ``status`` -1 on success, ``j >= 0`` for a
    breakdown at column ``j``, ``-2`` when ``capacity`` entries were not enough.
    """
    n = a_ptr.size - 1
    l_ptr = np.zeros(n + 1, dtype=np.int64)
    l_idx = np.empty(capacity, dtype=np.int32)
    l_val = np.empty(capacity, dtype=a_val.dtype)
    head = np.full(n, -1, dtype=np.int64)  # head[r]: first column whose next pending row is r
    link = np.full(n, -1, dtype=np.int64)
    pending = np.zeros(n, dtype=np.int64)  # position in column k of its next pending row
    work = np.zeros(n, dtype=a_val.dtype)  # zero outside the rows touched by column j
    mark = np.full(n, -1, dtype=np.int64)
    touched = np.empty(n + 1, dtype=np.int64)  # one spare slot for the branch-free append
    nnz = 0
    for j in range(n):
        start, stop = a_ptr[j], a_ptr[j + 1]
        if stop == start or a_idx[start] != j:
            return l_ptr, l_idx, l_val, j
        count = 0
        column_norm = abs(a_val[start]) - abs(a_val[start])
        for p in range(start, stop):
            row = a_idx[p]
            work[row] = a_val[p]
            mark[row] = j
            touched[count] = row
            count += 1
            column_norm += abs(a_val[p])
        k = head[j]
        while k != -1:
            next_k = link[k]
            p = pending[k]
            l_jk = l_val[p]
            end = l_ptr[k + 1]
            # Unsigned loop indices: no negative-index wraparound test per access (faster).
            if restrict:
                for q in range(numba.uint64(p), numba.uint64(end)):
                    row = numba.uint64(l_idx[q])
                    if mark[row] == j:
                        work[row] -= l_val[q] * l_jk
            else:
                for q in range(numba.uint64(p), numba.uint64(end)):
                    row = numba.uint64(l_idx[q])
                    touched[count] = row
                    count += mark[row] != j
                    mark[row] = j
                    work[row] -= l_val[q] * l_jk
            if p + 1 < end:
                pending[k] = p + 1
                row = l_idx[p + 1]
                link[k] = head[row]
                head[row] = k
            k = next_k
        a_jj = a_val[start]
        pivot = work[j] + alpha * a_jj
        d = np.sqrt(pivot) if pivot > 0 else pivot - pivot
        if round16:
            d = round_fp16(d)
        if not (d > 0 and d < np.inf):
            return l_ptr, l_idx, l_val, j
        if nnz + count > capacity:
            return l_ptr, l_idx, l_val, -2
        l_idx[nnz] = j
        l_val[nnz] = d
        nnz += 1
        work[j] = 0
        first = nnz
        threshold = drop_tolerance * column_norm
        for t in range(1, count):
            row = touched[t]
            value = work[row] / d
            work[row] = 0
            if round16:
                value = round_fp16(value)
            if abs(value) >= threshold and value != 0:
                at = nnz
                while at > first and l_idx[at - 1] > row:
                    l_idx[at] = l_idx[at - 1]
                    l_val[at] = l_val[at - 1]
                    at -= 1
                l_idx[at] = row
                l_val[at] = value
                nnz += 1
        l_ptr[j + 1] = nnz
        if nnz - l_ptr[j] > 1:
            pending[j] = l_ptr[j] + 1
            row = l_idx[l_ptr[j] + 1]
            link[j] = head[row]
            head[row] = j
    return l_ptr, l_idx, l_val, -1


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _triangular_solves(l_ptr, l_idx, l_val, u_ptr, u_idx, u_val, b, round16):  # type: ignore[no-untyped-def]
    """``z = L^-T L^-1 b``: forward solve on ``L`` (CSR, diagonal last in each row), then
    backward solve on ``U = L^T`` (CSR, diagonal first). With ``round16`` every computed
    unknown is rounded to float16; accumulation is in the dtype of the arrays.

    The index arrays are unsigned (``ptr`` uint64, ``idx`` uint32: :func:`unsigned_pattern`)
    and so is every loop index: numba then skips the negative-index wraparound test on each
    access (measured: the solves take ~40% less time).
    """
    n = b.size
    one = numba.uint64(1)
    y = np.empty_like(b)
    for i in range(numba.uint64(n)):
        last = l_ptr[i + one] - one
        acc = b[i]
        for p in range(l_ptr[i], last):
            acc -= l_val[p] * y[l_idx[p]]
        value = acc / l_val[last]
        y[i] = round_fp16(value) if round16 else value
    z = np.empty_like(b)
    for k in range(numba.uint64(n)):
        i = numba.uint64(n) - one - k
        first = u_ptr[i]
        acc = y[i]
        for p in range(first + one, u_ptr[i + one]):
            acc -= u_val[p] * z[u_idx[p]]
        value = acc / u_val[first]
        z[i] = round_fp16(value) if round16 else value
    return z


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _permuted_solves(l_ptr, l_idx, l_val, u_ptr, u_idx, u_val, s, perm, scale, round16):  # type: ignore[no-untyped-def]
    """``(z, finite)``: ``z = P^T L^-T L^-1 (P s scale) / scale`` in one call (gather, scale and,
    with ``round16``, rounding of the right-hand side to float16, the two solves, scatter back);
    ``finite``: no unknown overflowed. ``scale`` is a power of two (exact); ``perm`` uint64."""
    n = numba.uint64(s.size)
    b = np.empty_like(s)
    for i in range(n):
        value = s[perm[i]] * scale
        b[i] = round_fp16(value) if round16 else value
    z_perm = _triangular_solves(l_ptr, l_idx, l_val, u_ptr, u_idx, u_val, b, round16)
    z = np.empty_like(s)
    finite = True
    for i in range(n):
        value = z_perm[i]
        finite = finite and value - value == 0
        z[perm[i]] = value / scale
    return z, finite


@numba.njit(cache=True, nogil=True)
def _permuted_upper(indptr, indices, data, inverse):  # type: ignore[no-untyped-def]
    """Upper triangle of ``P A P^T`` (``A`` symmetric CSR, ``inverse[i]``: new index of ``i``)
    as CSR arrays ``(data, indices, indptr)`` with sorted columns (one pass, then insertion
    sorts of the short rows)."""
    n = indptr.size - 1
    new_ptr = np.zeros(n + 1, dtype=np.int64)
    for row in range(n):
        for p in range(indptr[row], indptr[row + 1]):
            if inverse[indices[p]] >= inverse[row]:
                new_ptr[inverse[row] + 1] += 1
    for row in range(n):
        new_ptr[row + 1] += new_ptr[row]
    new_idx = np.empty(new_ptr[n], dtype=np.int32)
    new_val = np.empty(new_ptr[n], dtype=data.dtype)
    for row in range(n):
        new_row = inverse[row]
        first = new_ptr[new_row]
        at_end = first
        for p in range(indptr[row], indptr[row + 1]):
            column = inverse[indices[p]]
            if column < new_row:
                continue
            at = at_end
            while at > first and new_idx[at - 1] > column:
                new_idx[at] = new_idx[at - 1]
                new_val[at] = new_val[at - 1]
                at -= 1
            new_idx[at] = column
            new_val[at] = data[p]
            at_end += 1
    return new_val, new_idx, new_ptr


@dataclass
class _Factor:
    """``L`` by rows (``lower``) and by columns (``upper`` = ``L^T`` by rows), compute dtype."""

    lower: sp.csr_matrix
    upper: sp.csr_matrix
    ok: bool
    device: object | None = None  # its CudaTriangularFactor (CUDA backend only)
    #: The CPU kernel's arrays: pattern (:func:`unsigned_pattern`) and values of ``L``, then of ``U``.
    kernel_arrays: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.kernel_arrays = (
            *unsigned_pattern(self.lower), self.lower.data, *unsigned_pattern(self.upper), self.upper.data
        )


ORDERINGS = ("auto", "natural", "amd", "rcm")


@dataclass(frozen=True)
class IncompleteCholeskyFactory:
    """Builds :class:`IncompleteCholesky` preconditioners; a :data:`~.cgnr.PreconditionerFactory`.

    ``drop_tolerance``: 0 for IC(0), > 0 for the thresholded variant (module docstring);
    ``ordering``: symmetric permutation applied before factoring (``auto``: natural for IC(0),
    AMD for the thresholded variant); ``block_size``: the unknowns come in consecutive blocks of
    this size (e.g. the tangent of a pose) and AMD/RCM order the blocks, keeping each one
    contiguous (the quotient graph has ``block_size^2`` times fewer entries: ~4x cheaper to
    order, same fill); ``initial_shift``/``max_shifts``: the breakdown retries;
    ``reference_jacobian``: factor the normal matrix of this Jacobian (column-scaled to unit
    norm) instead of the first system's (see :mod:`mp_slam_ros.solvers.pgo`); ``permutation``:
    a symmetric permutation to factor in instead of computing ``ordering`` (e.g. one kept from an
    earlier build of a growing problem).
    """

    drop_tolerance: float = 0.0
    ordering: str = "auto"
    block_size: int = 1
    initial_shift: float = 1e-3
    max_shifts: int = 8
    reference_jacobian: sp.spmatrix | None = field(default=None, repr=False, compare=False)
    permutation: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.drop_tolerance < 1.0:
            raise ConfigError("ichol.drop_tolerance", self.drop_tolerance, "must be in [0, 1)")
        if self.ordering not in ORDERINGS:
            raise ConfigError("ichol.ordering", self.ordering, f"must be one of {', '.join(ORDERINGS)}")
        if self.block_size < 1:
            raise ConfigError("ichol.block_size", self.block_size, "must be >= 1")
        if not self.initial_shift > 0.0:
            raise ConfigError("ichol.initial_shift", self.initial_shift, "must be > 0")
        if self.max_shifts < 0:
            raise ConfigError("ichol.max_shifts", self.max_shifts, "must be >= 0")

    def __call__(
        self, jacobian_scaled: sp.csr_matrix, damping: float, policy: PrecisionPolicy, backend: Backend
    ) -> IncompleteCholesky:
        """Preconditioner of ``J_s^T J_s + damping I``, factored now in ``policy.preconditioner``."""
        if self.reference_jacobian is not None:
            reference = sp.csr_matrix(self.reference_jacobian, dtype=np.float64)
            jacobian_scaled = ScaledSystem.from_linearization(reference, np.zeros(reference.shape[0])).jacobian_scaled
        J = sp.csr_matrix(jacobian_scaled, dtype=np.float64)
        normal = sp.csr_matrix(J.T @ J)
        if damping != 0.0:  # (a static preconditioner is built undamped: skip a full pass)
            normal = normal + float(damping) * sp.eye(J.shape[1], format="csr")
        perm = self.permutation if self.permutation is not None else _ordering(normal, self)
        if perm.shape != (normal.shape[0],):
            raise ValueError(f"permutation of {perm.size} unknowns for a matrix of {normal.shape[0]}")
        preconditioner = IncompleteCholesky(normal, perm, self, backend)
        preconditioner.factor(policy.preconditioner)
        return preconditioner


def first_order_kept_fraction(pattern: NormalPattern, jacobian_scaled: sp.csr_matrix, drop_tolerance: float) -> float:
    """The fraction of ``tril(J_s^T J_s)``'s entries that pass the drop test before any update.

    With the unit diagonal of a column-scaled normal matrix, ``l_ij ~ a_ij`` to first order, so
    an entry below ``drop_tolerance`` times its column's 1-norm is dropped from the start: a
    cheap predictor, before building it, of a thresholded factor that would throw away the
    matrix itself (measured: 0.18 on a very anisotropic garage graph whose factor then kept 20%
    of the matrix and stalled CG; 0.44-0.79 on household, sphere, grid and city graphs, whose
    factors kept 81-232%). ``pattern`` is the :class:`NormalPattern` of ``jacobian_scaled``
    (a direct solver can reuse it).
    """
    lower = pattern.lower(jacobian_scaled, 0.0)
    magnitude = np.abs(lower.data)
    structural = magnitude > 0.0  # the fixed pattern also stores entries that cancel to zero
    if not np.any(structural):
        return 1.0
    column_norms = np.add.reduceat(magnitude, lower.indptr[:-1])  # every column stores its diagonal
    columns = np.repeat(np.arange(lower.shape[1]), np.diff(lower.indptr))
    kept = structural & (magnitude >= drop_tolerance * column_norms[columns])
    return float(np.count_nonzero(kept)) / float(np.count_nonzero(structural))


def _ordering(normal: sp.csr_matrix, options: IncompleteCholeskyFactory) -> np.ndarray:
    """The symmetric permutation ``(n,)`` to factor ``normal[perm][:, perm]`` in."""
    method = options.ordering
    if method == "auto":
        method = "natural" if options.drop_tolerance == 0.0 else "amd"
    n, size = normal.shape[0], options.block_size
    if method == "natural" or n == 0:
        return np.arange(n)
    if size > 1 and n % size == 0:  # order the quotient graph, expand every block in place
        q_ptr, q_idx = _block_pattern(normal.indptr, normal.indices, size)
        blocks = sp.csr_matrix((np.ones(q_idx.size), q_idx, q_ptr), shape=(n // size, n // size))
        return (_ordering_of(blocks, method)[:, None] * size + np.arange(size)).ravel()
    return _ordering_of(normal, method)


def _ordering_of(pattern: sp.csr_matrix, method: str) -> np.ndarray:
    """Fill-reducing (CHOLMOD; reverse Cuthill-McKee without it) or RCM permutation of a symmetric pattern."""
    if method == "amd" and cholmod.binding():
        return cholmod.fill_reducing_permutation(pattern)
    return np.asarray(reverse_cuthill_mckee(pattern, symmetric_mode=True))


@numba.njit(cache=True, nogil=True)
def _block_pattern(indptr, indices, size):  # type: ignore[no-untyped-def]
    """CSR pattern ``(q_ptr, q_idx)`` of the ``size x size`` blocks holding an entry (unsorted)."""
    blocks = (indptr.size - 1) // size
    q_ptr = np.zeros(blocks + 1, dtype=np.int64)
    q_idx = np.empty(indices.size, dtype=np.int32)
    mark = np.full(blocks, -1, dtype=np.int64)
    count = 0
    for block in range(blocks):
        for p in range(indptr[block * size], indptr[(block + 1) * size]):
            column = indices[p] // size
            if mark[column] != block:
                mark[column] = block
                q_idx[count] = column
                count += 1
        q_ptr[block + 1] = count
    return q_ptr, q_idx[:count].copy()


@dataclass
class IncompleteCholesky:
    """``z = M^-1 s`` with ``M = P^T L L^T P ~ A`` (module docstring); a CGNR preconditioner.

    ``normal``: the symmetric matrix ``A`` (CSR float64); ``perm``: the symmetric permutation.
    """

    normal: sp.csr_matrix
    perm: np.ndarray
    options: IncompleteCholeskyFactory
    backend: Backend = Backend.CPU
    shifts: int = 0
    _factors: dict[str, _Factor] = field(default_factory=dict, repr=False)
    _perm_unsigned: np.ndarray = field(init=False, repr=False)  # perm for the CPU kernel

    def __post_init__(self) -> None:
        self._perm_unsigned = self.perm.astype(np.uint64)

    def factor(self, dtype: np.dtype) -> _Factor:
        """The factor for ``dtype``, computed on first use (with shift retries) and cached."""
        key = np.dtype(dtype).name
        if key not in self._factors:
            self._factors[key] = self._compute(np.dtype(dtype))
        return self._factors[key]

    @property
    def nnz(self) -> int:
        """Entries of the (first) computed factor ``L``."""
        return next(iter(self._factors.values())).lower.nnz if self._factors else 0

    def _compute(self, dtype: np.dtype) -> _Factor:
        round16 = dtype == _F16
        compute = _F32 if round16 else dtype
        n = self.normal.shape[0]
        inverse = np.empty(n, dtype=np.int64)
        inverse[self.perm] = np.arange(n)
        # The upper triangle of P A P^T by rows (sorted) = its lower triangle by columns.
        lower_by_columns = sp.csr_matrix(
            _permuted_upper(self.normal.indptr, self.normal.indices, self.normal.data, inverse), shape=(n, n)
        )
        a_val = round_to(lower_by_columns.data, dtype).astype(compute, copy=False)
        restrict = self.options.drop_tolerance == 0.0
        capacity = lower_by_columns.nnz if restrict else 4 * lower_by_columns.nnz
        alpha, attempt = 0.0, 0
        while True:
            l_ptr, l_idx, l_val, status = _factorize(
                lower_by_columns.indptr, lower_by_columns.indices, a_val, compute.type(alpha),
                compute.type(self.options.drop_tolerance), restrict, round16, capacity,
            )
            if status == -2:  # more fill than room: retry with twice the room
                capacity *= 2
                continue
            if status == -1 or attempt == self.options.max_shifts:
                break
            attempt += 1
            self.shifts += 1
            alpha = self.options.initial_shift * 10.0 ** (attempt - 1)
        nnz = int(l_ptr[-1])
        upper = sp.csr_matrix((l_val[:nnz], l_idx[:nnz], l_ptr), shape=(n, n))
        lower = sp.csr_matrix(upper.T)
        lower.sort_indices()
        return _Factor(lower, upper, status == -1)

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
            return self._solve(factor, b, 1.0, False)[0].astype(s.dtype, copy=False)
        peak = float(np.max(np.abs(b), initial=0.0))
        if not 0.0 < peak < np.inf:
            return np.zeros_like(s) if peak == 0.0 else np.full_like(s, np.nan)
        scale = 2.0 ** -math.ceil(math.log2(peak))
        for _ in range(2):
            z, finite = self._solve(factor, b, scale, True)
            if finite:
                break
            scale *= _OVERFLOW_RETRY_SCALE
        return z.astype(s.dtype, copy=False)

    def _solve(self, factor: _Factor, b: np.ndarray, scale: float, round16: bool) -> tuple[np.ndarray, bool]:
        """Both triangular solves of ``scale * b``; ``round16``: the float16 emulation (every
        intermediate rounded to float16, whatever the scale)."""
        return _permuted_solves(  # type: ignore[no-any-return]
            *factor.kernel_arrays, b, self._perm_unsigned, b.dtype.type(scale), round16
        )

    def _apply_cuda(self, factor: _Factor, s: object, dtype: np.dtype) -> object:
        """The native sync-free triangular solves with the values in ``dtype`` (float16 too) and
        the CPU path's semantics (:class:`~.cuda_trisolve.CudaTriangularFactor`, kept on the factor)."""
        import cupy  # noqa: PLC0415

        from mp_slam_ros.solvers.linear.cuda_trisolve import CudaTriangularFactor  # noqa: PLC0415

        if not factor.ok:
            return cupy.full_like(s, cupy.nan)
        if factor.device is None:
            factor.device = CudaTriangularFactor(factor.lower, factor.upper, dtype, self.perm)
        return factor.device.apply(s, _OVERFLOW_RETRY_SCALE).astype(s.dtype, copy=False)
