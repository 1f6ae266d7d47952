"""Re-ID ranking evaluation (Market-1501 protocol) and query-gallery distances.

Protocol (Zheng et al. 2015, "Scalable Person Re-identification: A Benchmark", and its official
MATLAB code): single query; for each query the gallery images with the same pid *and* the same
camera are junk, and so are pid ``-1`` images; distractors (pid ``0``) stay and count as wrong
matches. A query without any valid true match is skipped and counted.

Exactness: the gallery is ranked by ascending distance with ties broken by gallery index (a stable
sort), so results never depend on the sorting algorithm. Instead of sorting each row (3,368 x
15,913 floats take seconds), the rank of every true match is *counted*: the number of valid
gallery entries that precede it, i.e. smaller distance, or equal distance and smaller index. A
query has ~14 true matches on Market-1501, so this is ~14 vectorised compare-and-count passes
over the row, done on a small chunk of query rows at a time (bounded memory, cache friendly).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor

# Dtypes whose values map to an order-preserving 32-bit integer, so (value, gallery index) packs
# into one int64 key and one comparison per entry decides "precedes". 64-bit dtypes do not fit
# and take a two-comparison path (about twice as slow).
_KEY_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_INT32_DTYPES = (torch.int8, torch.int16, torch.int32, torch.uint8)

# Elements per chunk (query rows x gallery columns): 2**19 int64 keys = 4 MiB, small enough to
# stay in cache for the repeated passes.
DEFAULT_CHUNK_ELEMENTS = 1 << 19


@dataclass(frozen=True)
class RankingResult:
    """CMC and mAP over the queries that have at least one valid true match.

    Attributes:
        cmc: float64 [max_rank]; ``cmc[k]`` = fraction of valid queries whose first true match
            is within the top ``k + 1`` valid gallery entries (non-decreasing, in [0, 1]).
        mAP: mean average precision in [0, 1] with the AP definition ``ap``.
        per_query_ap: float64 [num_queries]; NaN for queries without a valid true match.
        num_valid_queries: queries that entered the averages.
        num_queries_without_match: queries skipped because no valid true match exists.
        ap: ``"standard"`` (non-interpolated, as torchreid) or ``"trapezoid"`` (Market-1501 MATLAB).
    """

    cmc: np.ndarray
    mAP: float
    per_query_ap: np.ndarray
    num_valid_queries: int
    num_queries_without_match: int
    ap: str

    def rank(self, k: int) -> float:
        """CMC at rank ``k`` (1-based): ``cmc[k - 1]``."""
        if not 1 <= k <= len(self.cmc):
            raise ValueError(f"rank {k} outside 1..{len(self.cmc)} (raise max_rank)")
        return float(self.cmc[k - 1])

    @property
    def rank1(self) -> float:
        return self.rank(1)

    @property
    def rank5(self) -> float:
        return self.rank(5)

    @property
    def rank10(self) -> float:
        return self.rank(10)


def _as_int_array(values: ArrayLike, name: str) -> np.ndarray:
    array = values.cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    return array.astype(np.int64)


def _ordered_keys(rows: torch.Tensor) -> torch.Tensor:
    """int64 keys ``(order-preserving 32-bit value) << 32 | column``: one comparison = precedes."""
    if rows.dtype in _KEY_DTYPES:
        bits = rows.float().view(torch.int32)
        # Negative floats order backwards as signed ints: flip their magnitude bits. The +1 maps
        # -0.0 onto +0.0's key (0), so the two zeros tie as they compare equal.
        value = torch.where(bits < 0, (bits ^ 0x7FFFFFFF) + 1, bits)
    else:
        value = rows.to(torch.int32)
    columns = torch.arange(rows.shape[1], dtype=torch.int64)
    return (value.to(torch.int64) << 32) | columns


def _count_preceding(rows: torch.Tensor, match_cols: torch.Tensor) -> torch.Tensor:
    """Number of entries of each row that precede each match.

    Args:
        rows: [C, G] distances (any real dtype).
        match_cols: int64 [C, K] columns of the matches (padding: any valid column).

    Returns:
        int64 [C, K]: entries with (distance, column) lexicographically below the match's.
    """
    counts = torch.empty(match_cols.shape, dtype=torch.int64)
    if rows.dtype in _KEY_DTYPES or rows.dtype in _INT32_DTYPES:
        keys = _ordered_keys(rows)
        match_keys = keys.gather(1, match_cols)
        for k in range(match_cols.shape[1]):
            counts[:, k] = (keys < match_keys[:, k : k + 1]).sum(1)
        return counts
    columns = torch.arange(rows.shape[1])
    match_values = rows.gather(1, match_cols)
    for k in range(match_cols.shape[1]):
        value = match_values[:, k : k + 1]
        earlier = columns < match_cols[:, k : k + 1]
        counts[:, k] = (rows < value).sum(1) + ((rows == value) & earlier).sum(1)
    return counts


def _average_precision(ranks: torch.Tensor, valid: np.ndarray, ap: str) -> np.ndarray:
    """AP per query from the sorted 0-based ranks of its true matches.

    Args:
        ranks: int64 [C, K] ascending ranks among the valid gallery entries (padding at the end).
        valid: bool [C, K], False for padding.
        ap: ``"standard"``: mean over true matches of precision at their rank (torchreid);
            ``"trapezoid"``: Market-1501's ``compute_AP.m``, which averages the precision at the
            match's rank r and at r - 1 (precision 1 before the first entry) per recall step.
    """
    position = ranks.numpy().astype(np.float64) + 1.0  # 1-based rank r_i of the i-th match
    hits = np.arange(1, ranks.shape[1] + 1, dtype=np.float64)[None, :]  # i
    precision = hits / position
    if ap == "trapezoid":
        before = np.divide(
            hits - 1.0, position - 1.0, out=np.ones_like(position), where=position > 1.0
        )
        precision = (precision + before) / 2.0
    return np.where(valid, precision, 0.0).sum(1) / valid.sum(1)


def evaluate_ranking(
    distmat: ArrayLike,
    q_pids: ArrayLike,
    g_pids: ArrayLike,
    q_cams: ArrayLike,
    g_cams: ArrayLike,
    *,
    max_rank: int = 50,
    ap: Literal["standard", "trapezoid"] = "standard",
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> RankingResult:
    """CMC and mAP of a query x gallery distance matrix under the Market-1501 protocol.

    Args:
        distmat: [Q, G] real distances (smaller = more similar), CPU numpy or torch; float32 (or a
            dtype of at most 32 bits) takes the fast path, float64/int64 an exact slower one. NaN
            is rejected.
        q_pids, g_pids: int [Q] / [G] person ids; gallery pid -1 = junk, 0 = distractor.
        q_cams, g_cams: int [Q] / [G] camera ids.
        max_rank: length of the returned CMC curve.
        ap: AP definition, ``"standard"`` (non-interpolated, torchreid) or ``"trapezoid"``
            (original Market-1501 MATLAB code); use one definition for every run compared.
        chunk_elements: query rows x gallery columns handled at once; memory use is about
            13 bytes per element (float32 rows, int64 keys, a boolean mask).

    Returns:
        :class:`RankingResult`.

    Raises:
        ValueError: on shape mismatches, NaN distances, or when no query has a true match.
    """
    if ap not in ("standard", "trapezoid"):
        raise ValueError(f"ap must be 'standard' or 'trapezoid', got {ap!r}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    dist = torch.as_tensor(distmat).cpu()
    qp, gp = _as_int_array(q_pids, "q_pids"), _as_int_array(g_pids, "g_pids")
    qc, gc = _as_int_array(q_cams, "q_cams"), _as_int_array(g_cams, "g_cams")
    num_q, num_g = len(qp), len(gp)
    if dist.shape != (num_q, num_g) or len(qc) != num_q or len(gc) != num_g:
        raise ValueError(
            f"distmat {tuple(dist.shape)} does not match {num_q} queries / {num_g} gallery "
            f"entries (cams {len(qc)} / {len(gc)})"
        )
    if dist.is_floating_point() and bool(torch.isnan(dist).any()):
        raise ValueError("distmat contains NaN")

    # pid -1 is junk for every query: drop those columns once. Keeping the column order keeps
    # the index tie-break intact.
    keep = np.flatnonzero(gp != -1)
    gp, gc = gp[keep], gc[keep]

    # Same-pid gallery columns per query, in increasing column order: [Q, L].
    by_pid = np.argsort(gp, kind="stable")
    start = np.searchsorted(gp[by_pid], qp, side="left")
    stop = np.searchsorted(gp[by_pid], qp, side="right")
    width = int((stop - start).max(initial=0))
    position = start[:, None] + np.arange(width)[None, :]
    in_pid = position < stop[:, None]
    same_pid = by_pid[np.minimum(position, max(len(by_pid) - 1, 0))] if len(by_pid) else position
    same_cam = gc[same_pid] == qc[:, None] if len(by_pid) else in_pid
    good, junk = in_pid & ~same_cam, in_pid & same_cam
    # Move true matches (and same-camera junk) to the left of each row: padding at the end.
    good_cols = np.take_along_axis(same_pid, np.argsort(~good, axis=1, kind="stable"), 1)
    junk_cols = np.take_along_axis(same_pid, np.argsort(~junk, axis=1, kind="stable"), 1)
    n_good, n_junk = good.sum(1), junk.sum(1)

    # Chunks of queries with similar match counts waste little on padding.
    queries = np.flatnonzero(n_good > 0)
    queries = queries[np.argsort(n_good[queries], kind="stable")]
    if len(queries) == 0:
        raise ValueError("no query has a valid true match in the gallery")
    rows_per_chunk = max(1, chunk_elements // max(1, len(keep)))
    keep_t = torch.from_numpy(keep) if len(keep) < num_g else None

    per_query_ap = np.full(num_q, np.nan)
    first_rank = np.empty(len(queries), dtype=np.int64)
    for begin in range(0, len(queries), rows_per_chunk):
        chunk = queries[begin : begin + rows_per_chunk]
        rows = dist.index_select(0, torch.from_numpy(chunk))
        if keep_t is not None:
            rows = rows.index_select(1, keep_t)
        k_max, j_max = int(n_good[chunk].max()), int(n_junk[chunk].max())
        match_cols = torch.from_numpy(good_cols[chunk, :k_max])
        match_ok = np.arange(k_max)[None, :] < n_good[chunk, None]
        ranks = _count_preceding(rows, match_cols)
        if j_max > 0:
            # Same-camera junk of the query's own pid was counted above: take it back out.
            junk_t = torch.from_numpy(junk_cols[chunk, :j_max])
            junk_ok = torch.from_numpy(np.arange(j_max)[None, :] < n_junk[chunk, None])
            match_values = rows.gather(1, match_cols)[:, :, None]  # [C, K, 1]
            junk_values = rows.gather(1, junk_t)[:, None, :]  # [C, 1, J]
            precedes = (junk_values < match_values) | (
                (junk_values == match_values) & (junk_t[:, None, :] < match_cols[:, :, None])
            )
            ranks -= (precedes & junk_ok[:, None, :]).sum(2)
        ranks = ranks.masked_fill(torch.from_numpy(~match_ok), torch.iinfo(torch.int64).max)
        ranks = ranks.sort(dim=1).values
        per_query_ap[chunk] = _average_precision(ranks, match_ok, ap)
        first_rank[begin : begin + len(chunk)] = ranks[:, 0].numpy()

    hits_at = np.bincount(np.minimum(first_rank, max_rank), minlength=max_rank + 1)[:max_rank]
    cmc = np.cumsum(hits_at) / len(queries)
    return RankingResult(
        cmc=cmc,
        mAP=float(np.nanmean(per_query_ap)),
        per_query_ap=per_query_ap,
        num_valid_queries=len(queries),
        num_queries_without_match=num_q - len(queries),
        ap=ap,
    )


def compute_distance(
    qf: torch.Tensor,
    gf: torch.Tensor,
    *,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    matrix: torch.Tensor | None = None,
) -> torch.Tensor:
    """Query x gallery distance matrix.

    Args:
        qf: float [Q, D] query features; gf: float [G, D] gallery features (same dtype/device).
        metric: ``"euclidean"``: squared Euclidean ``|q - g|^2``, or, with ``matrix``, the squared
            Mahalanobis distance ``(q - g)' M (q - g)`` (XQDA/KISSME); ``"cosine"``:
            ``1 - cos(q, g)`` in [0, 2].
        matrix: float [D, D] symmetric metric ``M``; only with ``"euclidean"``.

    Returns:
        float [Q, G], >= 0 (rounding below zero is clamped).
    """
    if metric == "cosine":
        if matrix is not None:
            raise ValueError("matrix applies to the euclidean metric only")
        qn = torch.nn.functional.normalize(qf, dim=1)
        gn = torch.nn.functional.normalize(gf, dim=1)
        return (1.0 - qn @ gn.T).clamp_(min=0.0)
    if metric != "euclidean":
        raise ValueError(f"unknown metric {metric!r}")
    q_proj = qf if matrix is None else qf @ matrix
    g_proj = gf if matrix is None else gf @ matrix
    # |q-g|_M^2 = q'Mq + g'Mg - 2 q'Mg: one matrix product instead of Q x G differences.
    q_norm = (q_proj * qf).sum(1, keepdim=True)  # [Q, 1]
    g_norm = (g_proj * gf).sum(1)[None, :]  # [1, G]
    return (q_norm + g_norm - 2.0 * q_proj @ gf.T).clamp_(min=0.0)
