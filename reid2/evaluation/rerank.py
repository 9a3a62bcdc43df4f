"""k-reciprocal re-ranking (Zhong et al., CVPR'17) with the result of torchreid / fast-reid ``re_ranking``,
in bounded memory: no dense N×N matrix besides the caller's inputs and the (num_query × num_gallery) output.

The reference builds the full normalised N×N distance matrix, argsorts every row and loops in Python. Yet
it only uses, per row, the few nearest neighbours, the distances on its k-reciprocal sets, and the
query rows of the final matrix. Here:

1. ``original_dist[i, :] = d²[:, i] / max(d²[:, i])`` (the reference's column-max normalisation followed
   by a transpose) is built one block of rows at a time from the three input matrices, and only each
   row's ``max(k1 + 1, k2)`` nearest columns are kept (``np.partition`` + ordering of the few candidates);
2. k-reciprocal sets, their 2/3 expansion, the ``exp(-d)`` weights ``V`` and the local query expansion
   are sparse-matrix products (``scipy.sparse``);
3. the Jaccard distance ``1 - Σmin / (2 - Σmin)`` is computed for query rows only, through the inverted
   index (gallery rows of ``V`` by column), in blocks of queries.

Tie convention: the reference uses ``np.argsort`` (quicksort), whose order among exactly equal distances is
unspecified; here equal distances are ordered by column index (a stable sort). On tie-free inputs the
result equals the reference up to float32 rounding (sums are taken in float64; max difference ~3e-7).

Market-1501 (3,368 + 15,913) on one shared core: ~4 s and ~350 MiB beyond the inputs
(``python -m bench.bench_rerank``); the reference needs ~52 s and ~9 GB peak RSS there. CPU only: torch inputs are
read as numpy arrays.
"""
import numpy as np
import scipy.sparse as sp

from reid2.utils.progress import progress_bar

from .rank import _to_numpy

__all__ = ["re_ranking"]

# Rows of the normalised distance matrix (or query rows of the Jaccard step) handled at once; one block
# of rows costs about 16 × block_rows × N bytes (N = num_query + num_gallery).
_BLOCK_ROWS = 1024
# Rows selected from at once: partitioning a few rows at a time stays in cache (6× faster than 1024).
_SELECT_ROWS = 64
# Bound on (query entry, gallery entry) pairs expanded at once in the Jaccard step (about 50 B each).
_JACCARD_PAIRS = 1 << 22
# Bound on the dense (query block × num_gallery) float64 overlap of the Jaccard step.
_JACCARD_DENSE = 1 << 22


def re_ranking(q_g_dist, q_q_dist, g_g_dist, k1=20, k2=6, lambda_value=0.3, block_rows=_BLOCK_ROWS) -> np.ndarray:
    """Re-ranked (num_query, num_gallery) float32 distances; same arguments as torchreid's ``re_ranking``.

    The inputs are distance matrices (numpy or torch); they are squared inside, as in the reference
    (so torchreid, which passes squared euclidean distances, works with ‖·‖⁴). ``k1``: size of the
    k-reciprocal neighbourhood, ``k2``: local query expansion (1 disables it), ``lambda_value``: weight of
    the original distance. ``block_rows`` bounds the working memory (see the module docstring).
    """
    if k1 < 1 or k2 < 1 or block_rows < 1:
        raise ValueError(f"k1, k2 and block_rows must be >= 1, got k1={k1}, k2={k2}, block_rows={block_rows}")
    dists = _Distances(q_g_dist, q_q_dist, g_g_dist)
    size = dists.size
    num_forward = min(k1 + 1, size)
    num_half = min(int(np.around(k1 / 2.0)) + 1, size)
    num_expansion = min(k2, size)
    nearest = _nearest_neighbours(dists, max(num_forward, num_expansion), block_rows)

    reciprocal = _reciprocal_sets(nearest[:, :num_forward])
    reciprocal_half = _reciprocal_sets(nearest[:, :num_half])
    expanded = _expand(reciprocal, reciprocal_half)
    weights = _exp_weights(dists, expanded)
    if k2 != 1:
        weights = _neighbour_matrix(nearest[:, :num_expansion]) @ weights / num_expansion
    return _mix_with_jaccard(dists, weights.tocsr(), lambda_value, block_rows)


class _Distances:
    """The reference's ``original_dist`` (squared, column-max normalised, transposed), read on demand.

    Full matrix ``D = [[qq, qg], [qgᵀ, gg]]``; ``original_dist[i, j] = D[j, i]² / max_k D[k, i]²``.
    """

    def __init__(self, q_g_dist, q_q_dist, g_g_dist):
        self.qg, self.qq, self.gg = (_to_numpy(x) for x in (q_g_dist, q_q_dist, g_g_dist))
        if self.qg.ndim != 2 or 0 in self.qg.shape:
            raise ValueError(f"q_g_dist must be a 2-D (num_query, num_gallery) array with at least one query and "
                             f"one gallery item, got shape {self.qg.shape}")
        self.num_query, self.num_gallery = self.qg.shape
        for name, array, shape in (("q_g_dist", self.qg, self.qg.shape),
                                   ("q_q_dist", self.qq, (self.num_query, self.num_query)),
                                   ("g_g_dist", self.gg, (self.num_gallery, self.num_gallery))):
            if array.shape != shape or array.dtype.kind not in "fiu":
                raise ValueError(f"{name} must be a numeric array of shape {shape} (num_query={self.num_query}, "
                                 f"num_gallery={self.num_gallery} from q_g_dist), got shape {array.shape} "
                                 f"and dtype {array.dtype}")
        self.size = self.num_query + self.num_gallery
        self.dtype = np.result_type(self.qg, self.qq, self.gg)  # np.concatenate's, squared in it
        self.column_max = np.concatenate([  # max over each column of D²
            np.maximum(self._squared_max(self.qq, axis=0), self._squared_max(self.qg, axis=1)),
            np.maximum(self._squared_max(self.qg, axis=0), self._squared_max(self.gg, axis=0))])

    def rows(self, start, stop):
        """``original_dist[start:stop]`` (float32), ``start:stop`` within the query or the gallery part."""
        nq = self.num_query
        if stop <= nq:
            block = np.concatenate([self._squared(self.qq[:, start:stop].T), self._squared(self.qg[start:stop])], 1)
        else:
            cols = slice(start - nq, stop - nq)
            block = np.concatenate([self._squared(self.qg[:, cols].T), self._squared(self.gg[:, cols].T)], 1)
        block /= self.column_max[start:stop, None]
        return block

    def entries(self, rows, cols):
        """``original_dist[rows, cols]`` for index arrays, i.e. ``D[cols, rows]²`` normalised."""
        nq, d_rows, d_cols = self.num_query, cols, rows
        values = np.empty(len(rows), dtype=self.dtype)
        for in_query_rows, in_query_cols, read in (
                (True, True, lambda r, c: self.qq[r, c]),
                (True, False, lambda r, c: self.qg[r, c - nq]),
                (False, True, lambda r, c: self.qg[c, r - nq]),  # D's lower-left block is qgᵀ
                (False, False, lambda r, c: self.gg[r - nq, c - nq])):
            mask = ((d_rows < nq) == in_query_rows) & ((d_cols < nq) == in_query_cols)
            values[mask] = read(d_rows[mask], d_cols[mask])
        return self._squared(values) / self.column_max[rows]

    def query_gallery(self, start, stop):
        """``original_dist[start:stop, num_query:]`` for query rows: ``qg[start:stop]²`` normalised."""
        return self._squared(self.qg[start:stop]) / self.column_max[start:stop, None]

    def _squared(self, array):
        return np.power(np.asarray(array, dtype=self.dtype), 2).astype(np.float32, copy=False)

    def _squared_max(self, array, axis, block=4096):
        """``max(array², axis)`` in float32, squaring ``block`` rows at a time."""
        maxima = [self._squared(array[s:s + block]).max(axis) for s in range(0, len(array), block)]
        return np.concatenate(maxima) if axis == 1 else np.max(maxima, axis=0)


def _nearest_neighbours(dists, count, block_rows):
    """(N, count) column indices of each row's ``count`` smallest ``original_dist``, ascending, ties by index."""
    nearest = np.empty((dists.size, count), dtype=np.int64)
    boundaries = sorted({*range(0, dists.size, block_rows), dists.num_query, dists.size})
    for start, stop in zip(boundaries[:-1], boundaries[1:]):
        block = dists.rows(start, stop)
        for offset in range(0, stop - start, _SELECT_ROWS):
            rows = slice(offset, min(offset + _SELECT_ROWS, stop - start))
            nearest[start + rows.start:start + rows.stop] = _smallest(block[rows], count)
    return nearest


def _smallest(block, count):
    """Per row, the columns of the ``count`` smallest values, ascending, equal values by column."""
    kth = np.partition(block, count - 1, axis=1)[:, count - 1]
    rows, cols = np.nonzero(block <= kth[:, None])  # the count smallest, plus ties with the kth
    order = np.lexsort((cols, block[rows, cols], rows))
    first_of_row = np.searchsorted(rows[order], np.arange(len(block)))
    return cols[order][first_of_row[:, None] + np.arange(count)]


def _neighbour_matrix(neighbours):
    """Sparse 0/1 (N, N) matrix with ones at ``(i, neighbours[i])``."""
    size, count = neighbours.shape
    return sp.csr_matrix((np.ones(neighbours.size), neighbours.ravel(), np.arange(0, size * count + 1, count)),
                         shape=(size, size))


def _reciprocal_sets(neighbours):
    """0/1 matrix R with ``R[i, j] = 1`` iff j is among i's neighbours and i among j's."""
    forward = _neighbour_matrix(neighbours)
    return forward.multiply(forward.T).tocsr()


def _expand(reciprocal, reciprocal_half):
    """Add ``R_half(c)`` to ``R(i)`` for each ``c ∈ R(i)`` with ``|R_half(c) ∩ R(i)| > 2/3 |R_half(c)|``."""
    overlap = (reciprocal @ reciprocal_half.T).multiply(reciprocal).tocoo()
    half_sizes = reciprocal_half.getnnz(axis=1)
    accepted = overlap.data > 2.0 / 3 * half_sizes[overlap.col]
    accept = sp.csr_matrix((np.ones(accepted.sum()), (overlap.row[accepted], overlap.col[accepted])),
                           shape=reciprocal.shape)
    expanded = (reciprocal + accept @ reciprocal_half).tocsr()
    expanded.data[:] = 1.0
    return expanded


def _exp_weights(dists, expanded):
    """``V[i, j] = exp(-d_ij) / Σ_j exp(-d_ij)`` over each row's expanded set."""
    coo = expanded.tocoo()
    weights = np.exp(-dists.entries(coo.row, coo.col)).astype(np.float64)
    totals = np.bincount(coo.row, weights=weights, minlength=dists.size)
    return sp.csr_matrix((weights / totals[coo.row], (coo.row, coo.col)), shape=expanded.shape)


def _mix_with_jaccard(dists, weights, lambda_value, block_rows):
    """``(1 − λ)·jaccard + λ·original_dist`` on query rows × gallery columns, in blocks of queries."""
    nq, ng = dists.num_query, dists.num_gallery
    by_column = weights[nq:].tocsc()  # inverted index: gallery rows holding each column
    column_lengths = np.diff(by_column.indptr)
    query_rows = weights[:nq]
    row_of_entry = np.repeat(np.arange(nq), np.diff(query_rows.indptr))
    pairs_per_query = np.bincount(row_of_entry, weights=column_lengths[query_rows.indices], minlength=nq)
    block_rows = min(block_rows, max(1, _JACCARD_DENSE // ng))
    final = np.empty((nq, ng), dtype=np.float32)
    start = 0
    bar = progress_bar(total=nq, desc="re-ranking", unit="query")
    while start < nq:
        cumulative = np.cumsum(pairs_per_query[start:start + block_rows])
        stop = start + max(1, int(np.searchsorted(cumulative, _JACCARD_PAIRS, side="right")))
        overlap = _sum_of_minima(query_rows[start:stop], by_column, ng)
        jaccard = (1.0 - overlap / (2.0 - overlap)).astype(np.float32)
        final[start:stop] = jaccard * np.float32(1 - lambda_value) + dists.query_gallery(start, stop) \
            * np.float32(lambda_value)
        bar.update(stop - start)
        start = stop
    bar.close()
    return final


def _sum_of_minima(query_rows, by_column, num_gallery):
    """Dense (num_rows, num_gallery) ``Σ_j min(V[q, j], V[g, j])`` from CSR query rows and CSC gallery rows."""
    row_of_entry = np.repeat(np.arange(query_rows.shape[0]), np.diff(query_rows.indptr))
    starts = by_column.indptr[query_rows.indices]
    lengths = by_column.indptr[query_rows.indices + 1] - starts
    entry = np.repeat(np.arange(len(starts)), lengths)
    gallery_slot = np.arange(len(entry)) + np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
    minima = np.minimum(query_rows.data[entry], by_column.data[gallery_slot])
    flat = row_of_entry[entry] * num_gallery + by_column.indices[gallery_slot]
    return np.bincount(flat, weights=minima, minlength=query_rows.shape[0] * num_gallery).reshape(-1, num_gallery)
