"""Re-ID ranking evaluation (Market-1501 protocol) and query-gallery distances.

Protocol (Zheng et al. 2015, "Scalable Person Re-identification: A Benchmark", and its official
MATLAB code): single query; for each query the gallery images with the same pid *and* the same
camera are junk, and so are pid ``-1`` images; distractors (pid ``0``) stay and count as wrong
matches. A query without any valid true match is skipped and counted.

Exactness: the gallery is ranked by ascending distance with ties broken by gallery index (a stable
sort, as torchreid's ``np.argsort(..., kind="stable")`` ranking), so results never depend on the
sorting algorithm. Each chunk of query rows is sorted once (numpy's vectorised sort, one
thread) and the rank of each true match is read off with two binary searches: the entries
strictly below its distance, plus, only when its distance occurs more than once in the row,
the equal entries at a smaller gallery index.

Steady under load: everything runs in numpy on the calling thread. The earlier torch version
(~14 compare-and-count passes per chunk, thousands of small 2-thread operations per call) took
2.1-21 s from one call to the next on a busy 2-core machine (BENCHMARKS.md, "Re-ID").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor

# Elements per chunk (query rows x gallery columns): 2**19 float32 = 2 MiB, small enough to
# stay in cache while the chunk is sorted.
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


def _match_ranks(
    rows: np.ndarray,
    match_cols: np.ndarray,
    *,
    dist: np.ndarray,
    dist_rows: np.ndarray,
    columns: np.ndarray,
) -> np.ndarray:
    """Number of entries of each row that precede each match (smaller distance, or equal
    distance and smaller column).

    Args:
        rows: [C, G] distances (any real dtype); sorted in place here.
        match_cols: int64 [C, K] columns of the matches (padding: any valid column).
        dist, dist_rows, columns: the full [Q, G'] distance matrix, and the rows (int64 [C])
            and columns (int64 [G]) of it that ``rows`` holds: read again only where a
            match's distance is tied.
    Returns:
        int64 [C, K].
    """
    values = np.take_along_axis(rows, match_cols, 1)  # [C, K]
    rows.sort(axis=1)
    ranks = np.empty(match_cols.shape, dtype=np.int64)
    for i in range(len(rows)):
        below = np.searchsorted(rows[i], values[i], side="left")
        ranks[i] = below
        tied = np.searchsorted(rows[i], values[i], side="right") - below > 1
        for k in np.flatnonzero(tied):
            col = match_cols[i, k]
            earlier = dist[dist_rows[i], columns[:col]]
            ranks[i, k] += np.count_nonzero(earlier == values[i, k])
    return ranks


def _average_precision(ranks: np.ndarray, valid: np.ndarray, ap: str) -> np.ndarray:
    """AP per query from the sorted 0-based ranks of its true matches.

    Args:
        ranks: int64 [C, K] ascending ranks among the valid gallery entries (padding at the end).
        valid: bool [C, K], False for padding.
        ap: ``"standard"``: mean over true matches of precision at their rank (torchreid);
            ``"trapezoid"``: Market-1501's ``compute_AP.m``, which averages the precision at the
            match's rank r and at r - 1 (precision 1 before the first entry) per recall step.
    """
    position = ranks.astype(np.float64) + 1.0  # 1-based rank r_i of the i-th match
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
        distmat: [Q, G] real distances (smaller = more similar), numpy or torch, any real
            dtype (bfloat16 is widened to float32, exactly). NaN is rejected.
        q_pids, g_pids: int [Q] / [G] person ids; gallery pid -1 = junk, 0 = distractor.
        q_cams, g_cams: int [Q] / [G] camera ids.
        max_rank: length of the returned CMC curve.
        ap: AP definition, ``"standard"`` (non-interpolated, torchreid) or ``"trapezoid"``
            (original Market-1501 MATLAB code); use one definition for every run compared.
        chunk_elements: query rows x gallery columns handled at once; memory use is one copy
            of the chunk (it is sorted in place).

    Returns:
        :class:`RankingResult`.

    Raises:
        ValueError: on shape mismatches, NaN distances, or when no query has a true match.
    """
    if ap not in ("standard", "trapezoid"):
        raise ValueError(f"ap must be 'standard' or 'trapezoid', got {ap!r}")
    if max_rank < 1:
        raise ValueError(f"max_rank must be >= 1, got {max_rank}")
    if isinstance(distmat, torch.Tensor):
        tensor = distmat.detach().cpu()
        dist = (tensor.float() if tensor.dtype == torch.bfloat16 else tensor).numpy()
    else:
        dist = np.asarray(distmat)
    qp, gp = _as_int_array(q_pids, "q_pids"), _as_int_array(g_pids, "g_pids")
    qc, gc = _as_int_array(q_cams, "q_cams"), _as_int_array(g_cams, "g_cams")
    num_q, num_g = len(qp), len(gp)
    if dist.shape != (num_q, num_g) or len(qc) != num_q or len(gc) != num_g:
        raise ValueError(
            f"distmat {tuple(dist.shape)} does not match {num_q} queries / {num_g} gallery "
            f"entries (cams {len(qc)} / {len(gc)})"
        )
    if not np.issubdtype(dist.dtype, np.number) or np.iscomplexobj(dist):
        raise ValueError(f"distmat must hold real numbers, got {dist.dtype}")
    if np.issubdtype(dist.dtype, np.floating) and bool(np.isnan(dist).any()):
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
    all_columns = len(keep) == num_g

    per_query_ap = np.full(num_q, np.nan)
    first_rank = np.empty(len(queries), dtype=np.int64)
    for begin in range(0, len(queries), rows_per_chunk):
        chunk = queries[begin : begin + rows_per_chunk]
        # A copy: it is sorted in place.
        rows = np.array(dist[chunk]) if all_columns else dist[chunk][:, keep]
        k_max, j_max = int(n_good[chunk].max()), int(n_junk[chunk].max())
        match_cols = good_cols[chunk, :k_max]
        match_ok = np.arange(k_max)[None, :] < n_good[chunk, None]
        if j_max > 0:
            # Same-camera junk of the query's own pid is counted by the ranks: take it out.
            junk = junk_cols[chunk, :j_max]
            junk_ok = np.arange(j_max)[None, :] < n_junk[chunk, None]
            match_values = np.take_along_axis(rows, match_cols, 1)[:, :, None]  # [C, K, 1]
            junk_values = np.take_along_axis(rows, junk, 1)[:, None, :]  # [C, 1, J]
            precedes = (junk_values < match_values) | (
                (junk_values == match_values) & (junk[:, None, :] < match_cols[:, :, None])
            )
            junk_before = (precedes & junk_ok[:, None, :]).sum(2)
        ranks = _match_ranks(rows, match_cols, dist=dist, dist_rows=chunk, columns=keep)
        if j_max > 0:
            ranks -= junk_before
        ranks = np.sort(np.where(match_ok, ranks, np.iinfo(np.int64).max), axis=1)
        per_query_ap[chunk] = _average_precision(ranks, match_ok, ap)
        first_rank[begin : begin + len(chunk)] = ranks[:, 0]

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
