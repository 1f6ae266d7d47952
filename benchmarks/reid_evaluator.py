"""Re-ID evaluator at Market-1501 size: time per call, its spread, and the machine's load.

Each round times :func:`reid.evaluate.evaluate_ranking` and, as the yardstick in the same run,
a plain per-query numpy loop (stable argsort of the row, junk dropped, AP walked), which
computes the same CMC and mAP. Run: ``python -m benchmarks.reid_evaluator [--rounds 5]``;
prints the lines that the "Re-ID" section of BENCHMARKS.md quotes.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from reid.evaluate import DEFAULT_CHUNK_ELEMENTS, compute_distance, evaluate_ranking

NUM_QUERY, NUM_GALLERY = 3368, 15913  # Market-1501's query and gallery sizes


def market_like_distances(seed: int = 0):
    """Market-1501 test split sizes without junk: 750 ids, ~17 gallery images each, 2,793
    distractors (pid 0), 3,368 queries, cameras 1-6; distances from noisy identity centres
    (a weak model: rank-1 ~40%, so true matches spread far down the ranking)."""
    rng = np.random.default_rng(seed)
    distractors = NUM_GALLERY - 750 * 17
    g_pids = np.concatenate([np.repeat(np.arange(1, 751), 17), np.zeros(distractors, np.int64)])
    g_cams = rng.integers(1, 7, NUM_GALLERY)
    q_pids, q_cams = rng.integers(1, 751, NUM_QUERY), rng.integers(1, 7, NUM_QUERY)
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(751, 64, generator=gen)
    gf = centres[g_pids] + 1.5 * torch.randn(NUM_GALLERY, 64, generator=gen)
    qf = centres[q_pids] + 1.5 * torch.randn(NUM_QUERY, 64, generator=gen)
    return compute_distance(qf, gf), q_pids, g_pids, q_cams, g_cams


def argsort_loop(distmat, q_pids, g_pids, q_cams, g_cams) -> tuple[float, float]:
    """(rank-1, mAP) by a per-query stable argsort: the slow, obviously right reference."""
    first, aps = [], []
    for q in range(len(q_pids)):
        order = np.argsort(distmat[q], kind="stable")
        pids, cams = g_pids[order], g_cams[order]
        junk = ((pids == q_pids[q]) & (cams == q_cams[q])) | (pids == -1)
        good = pids[~junk] == q_pids[q]
        if not good.any():
            continue
        hits = np.flatnonzero(good)
        first.append(hits[0])
        aps.append(np.mean(np.arange(1, len(hits) + 1) / (hits + 1)))
    return float(np.mean(np.array(first) == 0)), float(np.mean(aps))


def evaluator_lines(rounds: int = 5) -> list[str]:
    distmat, q_pids, g_pids, q_cams, g_cams = market_like_distances()
    dist = distmat.numpy()
    ours, loop, loads = [], [], []
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        start = time.perf_counter()
        result = evaluate_ranking(dist, q_pids, g_pids, q_cams, g_cams)
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        rank1, mean_ap = argsort_loop(dist, q_pids, g_pids, q_cams, g_cams)
        loop.append(time.perf_counter() - start)
    if abs(rank1 - result.rank1) > 1e-12 or abs(mean_ap - result.mAP) > 1e-9:
        raise AssertionError("evaluator and argsort loop disagree")
    start = time.perf_counter()
    evaluate_ranking(dist.astype(np.float64), q_pids, g_pids, q_cams, g_cams)
    seconds64 = time.perf_counter() - start
    ratios = np.array(loop) / np.array(ours)
    rows = DEFAULT_CHUNK_ELEMENTS // NUM_GALLERY
    return [
        f"- evaluate_ranking, {NUM_QUERY} x {NUM_GALLERY} float32 (realistic pids/cams, "
        f"{result.num_valid_queries} valid queries), numpy on one thread, {rounds} calls at "
        f"load {min(loads):.1f}-{max(loads):.1f} (2 cores): {min(ours):.2f} / "
        f"{np.median(ours):.2f} / {max(ours):.2f} s (min / median / max); the per-query "
        f"numpy stable-argsort loop in the same rounds {min(loop):.2f} / {np.median(loop):.2f}"
        f" / {max(loop):.2f} s, so the evaluator is {ratios.min():.1f}-{ratios.max():.1f}x "
        f"faster; float64 input {seconds64:.2f} s",
        f"- evaluator memory bound: chunks of {rows} query rows ({DEFAULT_CHUNK_ELEMENTS:,} "
        f"elements, one sorted copy: {DEFAULT_CHUNK_ELEMENTS * 4 / 2**20:.0f} MiB) besides the "
        f"distance matrix itself ({dist.nbytes / 2**20:.0f} MiB)",
        f"- sanity: rank-1 {result.rank1:.3f}, mAP {result.mAP:.3f} (standard), equal to the "
        "argsort loop's",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    print("\n".join(evaluator_lines(parser.parse_args().rounds)))


if __name__ == "__main__":
    main()
