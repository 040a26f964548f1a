"""The lower triangle of ``J^T J + beta I`` on a pattern fixed once per problem (numba).

A direct solver refactors the normal matrix at every LM iteration while the pattern of ``J``
stays the same. SciPy's sparse product drops entries that cancel to zero, so its pattern can
change between iterations; a symbolic factorization needs the same pattern every time.
:class:`NormalPattern` computes, once from the pattern of ``J`` (CSR, sorted columns per row),
the lower-triangular CSC pattern of ``J^T J`` with every diagonal entry stored, and for every
pair of columns of every group of consecutive rows with the same columns (the 6 rows of a 3-D
pose-graph edge, the 2 of a BA observation) the position its products add to. :meth:`values`
then assembles the values in one pass over the groups (``k (k + 1) / 2`` sums per group of
rows with ``k`` entries, one scatter each).
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp


@numba.njit(cache=True, nogil=True)
def _row_groups(j_ptr, j_idx):  # type: ignore[no-untyped-def]
    """Starts ``(G + 1,)`` of the runs of consecutive rows with the same column pattern.

    A pose-graph edge gives 6 (3-D) rows on the same 12 columns, a BA observation 2 rows on the
    same 9: the symbolic product and the scatter positions are computed once per group.
    """
    rows = j_ptr.size - 1
    starts = np.empty(rows + 1, dtype=np.int64)
    count = 0
    for r in range(rows):
        same = count > 0 and j_ptr[r + 1] - j_ptr[r] == j_ptr[r] - j_ptr[r - 1]
        if same:
            offset = j_ptr[r] - j_ptr[r - 1]
            for q in range(j_ptr[r], j_ptr[r + 1]):
                if j_idx[q] != j_idx[q - offset]:
                    same = False
                    break
        if not same:
            starts[count] = r
            count += 1
    starts[count] = rows
    return starts[: count + 1].copy()


@numba.njit(cache=True, nogil=True)
def _lower_pattern(j_ptr, j_idx, groups, t_ptr, t_idx, n):  # type: ignore[no-untyped-def]
    """Lower CSC pattern ``(col_ptr, row_idx)`` of ``J^T J`` plus the diagonal (rows sorted).

    ``t_ptr``/``t_idx``: for each column, the groups (:func:`_row_groups`) holding it.
    """
    col_ptr = np.zeros(n + 1, dtype=np.int64)
    mark = np.full(n, -1, dtype=np.int64)
    rows = np.empty(n, dtype=np.int64)
    capacity = max(16, 4 * j_idx.size)
    row_idx = np.empty(capacity, dtype=np.int64)
    for j in range(n):
        count = 0
        mark[j] = j
        rows[count] = j
        count += 1
        for p in range(t_ptr[j], t_ptr[j + 1]):
            first = j_ptr[groups[t_idx[p]]]
            for q in range(first, first + j_ptr[groups[t_idx[p]] + 1] - j_ptr[groups[t_idx[p]]]):
                c = j_idx[q]
                if c > j and mark[c] != j:
                    mark[c] = j
                    rows[count] = c
                    count += 1
        if col_ptr[j] + count > capacity:
            capacity = 2 * (col_ptr[j] + count)
            grown = np.empty(capacity, dtype=np.int64)
            grown[: col_ptr[j]] = row_idx[: col_ptr[j]]
            row_idx = grown
        for a in range(1, count):  # insertion sort: a column holds a few dozen rows at most
            value, b = rows[a], a - 1
            while b >= 0 and rows[b] > value:
                rows[b + 1] = rows[b]
                b -= 1
            rows[b + 1] = value
        row_idx[col_ptr[j]: col_ptr[j] + count] = rows[:count]
        col_ptr[j + 1] = col_ptr[j] + count
    return col_ptr, row_idx[: col_ptr[n]].copy()


@numba.njit(cache=True, nogil=True)
def _scatter(j_ptr, j_idx, groups, col_ptr, row_idx):  # type: ignore[no-untyped-def]
    """For each row group and each pair ``a >= b`` of its columns (row-major), the position of
    ``(col_a, col_b)`` in the lower pattern (binary search in column ``col_b``)."""
    size = 0
    for g in range(groups.size - 1):
        k = j_ptr[groups[g] + 1] - j_ptr[groups[g]]
        size += k * (k + 1) // 2
    positions = np.empty(size, dtype=np.int64)
    at = 0
    for g in range(groups.size - 1):
        first, last = j_ptr[groups[g]], j_ptr[groups[g] + 1]
        for a in range(first, last):
            for b in range(first, a + 1):
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


@numba.njit(cache=True, nogil=True)
def _values(j_ptr, j_val, groups, positions, col_ptr, beta, nnz):  # type: ignore[no-untyped-def]
    """Values of the lower pattern: ``J^T J`` group by group, ``beta`` added to the diagonal.

    Each group's rows are copied into a small dense block (contiguous), its lower triangle of
    column products summed over the rows, and each sum scattered once.
    """
    values = np.zeros(nnz)
    block = np.empty((8, 16))
    at = 0
    for g in range(groups.size - 1):
        first_row, end_row = groups[g], groups[g + 1]
        k = j_ptr[first_row + 1] - j_ptr[first_row]
        rows = end_row - first_row
        if rows > block.shape[0] or k > block.shape[1]:
            block = np.empty((max(rows, block.shape[0]), max(k, block.shape[1])))
        for r in range(rows):
            start = j_ptr[first_row + r]
            for a in range(k):
                block[r, a] = j_val[start + a]
        for a in range(k):
            for b in range(a + 1):
                total = 0.0
                for r in range(rows):
                    total += block[r, a] * block[r, b]
                values[positions[at]] += total
                at += 1
    for j in range(col_ptr.size - 1):
        values[col_ptr[j]] += beta  # the diagonal is the first entry of each column
    return values


class NormalPattern:
    """The fixed lower CSC pattern of ``J^T J + beta I`` for Jacobians with ``J``'s pattern."""

    def __init__(self, J: sp.csr_matrix) -> None:
        J = sp.csr_matrix(J)
        J.sort_indices()
        n = J.shape[1]
        self.shape = (n, n)
        self._j_pattern = (J.indptr.copy(), J.indices.copy())
        self._groups = _row_groups(J.indptr, J.indices)
        first_rows = self._groups[:-1]
        lengths = J.indptr[first_rows + 1] - J.indptr[first_rows]
        group_ptr = np.concatenate([[0], np.cumsum(lengths)])
        # the columns of each group's first row, gathered in one vectorized pass
        group_idx = J.indices[np.repeat(J.indptr[first_rows] - group_ptr[:-1], lengths) + np.arange(group_ptr[-1])]
        by_column = sp.csr_matrix(
            (np.ones(group_idx.size), group_idx, group_ptr), shape=(first_rows.size, n)
        ).tocsc()
        self.col_ptr, self.row_idx = _lower_pattern(
            J.indptr, J.indices, self._groups, by_column.indptr, by_column.indices, n
        )
        self._positions = _scatter(J.indptr, J.indices, self._groups, self.col_ptr, self.row_idx)

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
        return _values(J.indptr, J.data, self._groups, self._positions, self.col_ptr, float(beta), self.nnz)

    def lower(self, J: sp.csr_matrix, beta: float) -> sp.csc_matrix:
        """``tril(J^T J + beta I)`` as a SciPy CSC matrix with this pattern."""
        return sp.csc_matrix((self.values(J, beta), self.row_idx, self.col_ptr), shape=self.shape)
