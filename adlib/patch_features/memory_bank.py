"""Memory banks of patch features: `greedy_coreset` picks a subset that covers a bank (PatchCore's k-centre
greedy subsampling), `knn_distances` gives exact k-nearest-neighbour distances in bounded-memory chunks (with a
faiss variant and a timing helper for the speed comparison of notebook 06)."""
from __future__ import annotations

import math
import time

import numpy as np
import torch
from ..progress import progress_bar


@torch.no_grad()
def greedy_coreset(features: torch.Tensor, n_select: int | None = None, fraction: float | None = None,
                   projection_dim: int | None = 128, seed: int = 0, progress: bool = False) -> torch.Tensor:
    """Indices of a greedy k-centre coreset of ``features`` (M, D): start at a seeded random point, then
    repeatedly add the point farthest from everything selected so far (PatchCore's subsampling).

    Distances are computed on a seeded Gaussian random projection to ``projection_dim`` dimensions (None or
    >= D: on the features themselves), which preserves distances approximately and makes each step cheap.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be (M, D), got {tuple(features.shape)}")
    m = len(features)
    if (n_select is None) == (fraction is None):
        raise ValueError("give exactly one of n_select and fraction")
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"fraction must be in (0, 1], got {fraction}")
        n_select = max(1, int(round(fraction * m)))
    if not 1 <= n_select <= m:
        raise ValueError(f"n_select must be in [1, {m}], got {n_select}")
    if n_select == m:
        return torch.arange(m)
    gen = torch.Generator().manual_seed(seed)
    x = features.float()
    if projection_dim is not None and projection_dim < x.shape[1]:
        proj = torch.randn(x.shape[1], projection_dim, generator=gen) / math.sqrt(projection_dim)
        x = x @ proj
    sq = (x * x).sum(1)
    selected = torch.empty(n_select, dtype=torch.long)
    current = int(torch.randint(m, (1,), generator=gen))
    min_dist = torch.full((m,), float("inf"))
    for i in progress_bar(range(n_select), desc="coreset", disable=not progress, leave=False, mininterval=2):
        selected[i] = current
        d = (sq - 2 * (x @ x[current]) + sq[current]).clamp_min_(0)  # squared distance to the newest centre
        torch.minimum(min_dist, d, out=min_dist)
        current = int(torch.argmax(min_dist))
    return selected


def _chunk_rows(n_cols: int, max_bytes: int) -> int:
    return max(1, int(max_bytes // (4 * max(n_cols, 1))))


@torch.no_grad()
def knn_distances(queries: torch.Tensor, bank: torch.Tensor, k: int = 1, max_bytes: int = 256 * 2**20,
                  return_indices: bool = False, progress: bool = False):
    """Exact L2 distances from each query (Q, D) to its k nearest rows of ``bank`` (M, D), ascending: (Q, k).

    Computed in blocks of queries x bank rows with torch.cdist (matrix-multiply form) so that no distance
    block exceeds ``max_bytes``; partial top-k results of bank blocks are merged.
    """
    if queries.ndim != 2 or bank.ndim != 2 or queries.shape[1] != bank.shape[1]:
        raise ValueError(f"need queries (Q, D) and bank (M, D) of the same D; got {tuple(queries.shape)} "
                         f"and {tuple(bank.shape)}")
    if not 1 <= k <= len(bank):
        raise ValueError(f"k must be in [1, {len(bank)}] (the bank size), got {k}")
    queries, bank = queries.float(), bank.float()
    bank_block = min(len(bank), max(k, _chunk_rows(1, max_bytes // 64)))  # at most 1/64 of budget per row
    query_block = _chunk_rows(bank_block, max_bytes)
    out_d = torch.empty(len(queries), k)
    out_i = torch.empty(len(queries), k, dtype=torch.long)
    for qs in progress_bar(range(0, len(queries), query_block), desc="kNN", disable=not progress, leave=False,
                   mininterval=2):
        q = queries[qs:qs + query_block]
        best_d = best_i = None
        for bs in range(0, len(bank), bank_block):
            d = torch.cdist(q, bank[bs:bs + bank_block], compute_mode="use_mm_for_euclid_dist")
            kk = min(k, d.shape[1])
            dv, di = torch.topk(d, kk, dim=1, largest=False)
            di = di + bs
            if best_d is None:
                best_d, best_i = dv, di
            else:
                cat_d, cat_i = torch.cat([best_d, dv], 1), torch.cat([best_i, di], 1)
                best_d, pos = torch.topk(cat_d, min(k, cat_d.shape[1]), dim=1, largest=False)
                best_i = torch.gather(cat_i, 1, pos)
        out_d[qs:qs + len(q)], out_i[qs:qs + len(q)] = best_d, best_i
    return (out_d, out_i) if return_indices else out_d


def knn_distances_faiss(queries: torch.Tensor, bank: torch.Tensor, k: int = 1) -> torch.Tensor:
    """The same exact L2 kNN with faiss-cpu's IndexFlatL2 (optional; only for the speed comparison)."""
    import faiss  # noqa: PLC0415  (optional dependency)

    index = faiss.IndexFlatL2(bank.shape[1])
    index.add(np.ascontiguousarray(bank.float().numpy()))
    d2, _ = index.search(np.ascontiguousarray(queries.float().numpy()), k)
    return torch.from_numpy(d2).clamp_min(0).sqrt()


def time_knn(queries: torch.Tensor, bank: torch.Tensor, k: int = 1, repeats: int = 1) -> dict[str, float]:
    """Seconds for torch-chunked and (when installed) faiss kNN on the same data, and their max difference."""
    out = {}
    t0 = time.perf_counter()
    for _ in range(repeats):
        d_torch = knn_distances(queries, bank, k)
    out["torch_cdist_chunked_s"] = (time.perf_counter() - t0) / repeats
    try:
        t0 = time.perf_counter()
        for _ in range(repeats):
            d_faiss = knn_distances_faiss(queries, bank, k)
        out["faiss_flatL2_s"] = (time.perf_counter() - t0) / repeats
        out["max_abs_difference"] = float((d_torch - d_faiss).abs().max())
    except ImportError:
        out["faiss_flatL2_s"] = float("nan")
    return out
