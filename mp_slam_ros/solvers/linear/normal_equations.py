"""The lower triangle of ``J^T J + beta I`` on a pattern fixed once per problem (numba).

A direct solver refactors the normal matrix at every LM iteration while the pattern of ``J``
stays the same. SciPy's sparse product drops entries that cancel to zero, so its pattern can
change between iterations; a symbolic factorization needs the same pattern every time.
:class:`NormalPattern` computes, once from the pattern of ``J`` (CSR, sorted columns per row),
the lower-triangular CSC pattern of ``J^T J`` with every diagonal entry stored, and for every
pair of entries of every row of ``J`` the position its product adds to. :meth:`values` then
assembles the values in one pass over the rows (``sum_rows k (k + 1) / 2`` multiply-adds for
rows of ``k`` entries: 78 per row of a 3-D pose-graph edge).
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp


@numba.njit(cache=True)
def _lower_pattern(j_ptr, j_idx, t_ptr, t_idx, n):  # type: ignore[no-untyped-def]
    """Lower CSC pattern ``(col_ptr, row_idx)`` of ``J^T J`` plus the diagonal (rows sorted).

    ``t_ptr``/``t_idx``: the pattern of ``J`` by columns (the rows holding each column).
    """
    col_ptr = np.zeros(n + 1, dtype=np.int64)
    mark = np.full(n, -1, dtype=np.int64)
    rows = np.empty(n, dtype=np.int64)
    chunks = []
    for j in range(n):
        count = 0
        mark[j] = j
        rows[count] = j
        count += 1
        for p in range(t_ptr[j], t_ptr[j + 1]):
            r = t_idx[p]
            for q in range(j_ptr[r], j_ptr[r + 1]):
                c = j_idx[q]
                if c > j and mark[c] != j:
                    mark[c] = j
                    rows[count] = c
                    count += 1
        column = np.sort(rows[:count])
        chunks.append(column)
        col_ptr[j + 1] = col_ptr[j] + count
    row_idx = np.empty(col_ptr[n], dtype=np.int64)
    for j in range(n):
        row_idx[col_ptr[j]:col_ptr[j + 1]] = chunks[j]
    return col_ptr, row_idx


@numba.njit(cache=True)
def _scatter(j_ptr, j_idx, col_ptr, row_idx):  # type: ignore[no-untyped-def]
    """For each row of ``J`` and each pair ``a >= b`` of its entries (row-major), the position of
    ``(col_a, col_b)`` in the lower pattern (binary search in column ``col_b``)."""
    size = 0
    for r in range(j_ptr.size - 1):
        k = j_ptr[r + 1] - j_ptr[r]
        size += k * (k + 1) // 2
    positions = np.empty(size, dtype=np.int64)
    at = 0
    for r in range(j_ptr.size - 1):
        for a in range(j_ptr[r], j_ptr[r + 1]):
            for b in range(j_ptr[r], a + 1):
                col, row = j_idx[b], j_idx[a]
                lo, hi = col_ptr[col], col_ptr[col + 1]
                while lo < hi:
                    mid = (lo + hi) // 2
                    if row_idx[mid] < row:
                        lo = mid + 1
                    else:
                        hi = mid
                positions[at] = lo
                at += 1
    return positions


@numba.njit(cache=True)
def _values(j_ptr, j_val, positions, col_ptr, beta, nnz):  # type: ignore[no-untyped-def]
    """Values of the lower pattern: ``J^T J`` from the row pairs, ``beta`` added to the diagonal."""
    values = np.zeros(nnz)
    at = 0
    for r in range(j_ptr.size - 1):
        for a in range(j_ptr[r], j_ptr[r + 1]):
            v_a = np.float64(j_val[a])
            for b in range(j_ptr[r], a + 1):
                values[positions[at]] += v_a * np.float64(j_val[b])
                at += 1
    for j in range(col_ptr.size - 1):
        values[col_ptr[j]] += beta  # the diagonal is the first entry of each column
    return values


class NormalPattern:
    """The fixed lower CSC pattern of ``J^T J + beta I`` for Jacobians with ``J``'s pattern."""

    def __init__(self, J: sp.csr_matrix) -> None:
        J = sp.csr_matrix(J)
        J.sort_indices()
        by_column = sp.csr_matrix((np.ones(J.nnz), J.indices, J.indptr), shape=J.shape).tocsc()
        n = J.shape[1]
        self.shape = (n, n)
        self._j_pattern = (J.indptr.copy(), J.indices.copy())
        self.col_ptr, self.row_idx = _lower_pattern(
            J.indptr, J.indices, by_column.indptr, by_column.indices, n
        )
        self._positions = _scatter(J.indptr, J.indices, self.col_ptr, self.row_idx)

    @property
    def nnz(self) -> int:
        """Stored entries of the lower triangle (diagonal included)."""
        return int(self.row_idx.size)

    def matches(self, J: sp.csr_matrix) -> bool:
        """True when ``J`` has the pattern this was built for."""
        indptr, indices = self._j_pattern
        return np.array_equal(indptr, J.indptr) and np.array_equal(indices, J.indices)

    def values(self, J: sp.csr_matrix, beta: float) -> np.ndarray:
        """The lower-triangle values (float64, in pattern order) of ``J^T J + beta I``."""
        return _values(J.indptr, J.data, self._positions, self.col_ptr, float(beta), self.nnz)

    def lower(self, J: sp.csr_matrix, beta: float) -> sp.csc_matrix:
        """``tril(J^T J + beta I)`` as a SciPy CSC matrix with this pattern."""
        return sp.csc_matrix((self.values(J, beta), self.row_idx, self.col_ptr), shape=self.shape)
