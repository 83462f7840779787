# SPDX-License-Identifier: Apache-2.0
"""
Image-text retrieval metrics (Recall@k) for paired image / report embeddings.

Pair ``i`` is ``image_emb[i]`` with ``text_emb[i]``. Similarity is cosine similarity: both sets of
embeddings are L2-normalised inside the functions. Everything runs on CPU and is chunked over the
queries, so only a ``(chunk_size, N)`` block of similarities is held in memory at any time.

Ranking convention (pessimistic ties):
    the rank of the correct candidate of query ``i`` is::

        rank_i = 1 + #{candidates with similarity strictly higher than the correct one}
                   + #{OTHER candidates with exactly the same similarity as the correct one}

    so ties never favour the correct answer: if all candidates are identical, every query has
    rank ``N`` and ``R@k`` is 0 for ``k < N`` (1 when ``N == 1``). A query is a hit at ``k`` when
    ``rank_i <= k``. Candidates with bitwise identical embeddings are guaranteed to receive bitwise
    identical similarities (similarities are computed once per distinct candidate vector), so
    duplicated reports tie exactly and are handled by the rule above.

Report-level recall (``text_groups``):
    several pairs often share an identical report (e.g. "no acute cardiopulmonary process").
    Given one group key per pair (typically the report string), the ``*_text`` metrics count a
    query as a hit when any of its top-k candidates belongs to the same group:

    - ``i2t_R@k_text``: image query, hit if one of the top-k retrieved texts is identical to the
      image's own report;
    - ``t2i_R@k_text``: text query, hit if one of the top-k retrieved images is paired with a report
      identical to the query text.

    The rank used is ``1 + #{candidates of a different group whose similarity is >= the best
    similarity among same-group candidates}`` (pessimistic ties again; ties inside the group are
    irrelevant since any of them is a hit). ``chance_R@k_text`` is the exact expectation of this
    hit rate under a uniformly random ranking, ``mean_i 1 - C(N - s_i, k) / C(N, k)`` with ``s_i``
    the size of the group of pair ``i``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["pessimistic_ranks", "retrieval_recall", "retrieval_recall_subsets", "modality_suffix"]


def _as_2d_float(x: torch.Tensor, name: str) -> torch.Tensor:
    """Return ``x`` as a 2D floating CPU tensor (float32 unless it is float64), validating it."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (N, D), got shape {tuple(x.shape)}; stack one embedding per row.")
    x = x.detach().to("cpu")
    x = x if x.dtype == torch.float64 else x.to(torch.float32)
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(dim=1).nonzero()[0])
        raise ValueError(f"{name} contains NaN/inf values (first at row {bad}); check the model outputs.")
    return x


def _validate_ks(ks: Sequence[int]) -> tuple[int, ...]:
    ks = tuple(ks)
    if len(ks) == 0:
        raise ValueError("ks must contain at least one cut-off, e.g. ks=(1, 5, 10).")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"ks must be positive integers, got {k!r} in ks={ks}.")
    return ks


def _group_ids(groups: Sequence[str], n: int, name: str) -> torch.Tensor:
    if len(groups) != n:
        raise ValueError(f"{name} has {len(groups)} entries but there are {n} image-text pairs; give one per pair.")
    index: dict[str, int] = {}
    return torch.tensor([index.setdefault(g, len(index)) for g in groups], dtype=torch.long)


def pessimistic_ranks(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    groups: torch.Tensor | None = None,
    chunk_size: int = 512,
) -> torch.Tensor:
    """
    Rank (1-based, pessimistic ties) of the correct candidate for every query.

    The correct candidate of query ``i`` is ``candidates[i]``. Both inputs are L2-normalised here.

    Args:
        queries: (N, D) query embeddings.
        candidates: (N, D) candidate embeddings.
        groups: optional (N,) integer group id per pair. When given, any candidate of the query's
            group counts as correct and the rank is ``1 + #{other-group candidates with similarity
            >= best same-group similarity}``.
        chunk_size: number of queries processed at once (memory is ``chunk_size * N`` floats).

    Returns:
        (N,) long tensor of ranks in ``[1, N]``.
    """
    queries = _as_2d_float(queries, "queries")
    candidates = _as_2d_float(candidates, "candidates")
    if queries.shape != candidates.shape:
        raise ValueError(
            f"queries {tuple(queries.shape)} and candidates {tuple(candidates.shape)} must have the same shape (N, D)."
        )
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    n = queries.shape[0]
    dtype = torch.promote_types(queries.dtype, candidates.dtype)
    q = F.normalize(queries.to(dtype), dim=1)
    # similarities are computed once per distinct candidate vector, which guarantees that identical
    # candidates get bitwise identical scores (exact ties) whatever the GEMM tiling.
    unique_cands, inverse, counts = torch.unique(candidates.to(dtype), dim=0, return_inverse=True, return_counts=True)
    c = F.normalize(unique_cands, dim=1)
    has_duplicates = unique_cands.shape[0] < n
    ranks = torch.empty(n, dtype=torch.long)
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        rows = torch.arange(stop - start)
        sims = q[start:stop] @ c.T  # (chunk, number of distinct candidates)
        if groups is None:
            # #(strictly higher) + #(equal, the correct one included) = rank under the pessimistic rule
            at_least = sims >= sims[rows, inverse[start:stop]].unsqueeze(1)
            if has_duplicates:  # weight each distinct vector by its multiplicity (integer sums < 2**24: exact)
                ranks[start:stop] = (at_least.to(torch.float32) @ counts.to(torch.float32)).round().long()
            else:
                ranks[start:stop] = at_least.sum(dim=1)
        else:
            sims = sims[:, inverse]  # (chunk, N): back to one column per candidate
            same = groups.unsqueeze(0) == groups[start:stop].unsqueeze(1)
            best_same = sims.masked_fill(~same, float("-inf")).max(dim=1, keepdim=True).values
            ranks[start:stop] = 1 + ((sims >= best_same) & ~same).sum(dim=1)
    return ranks


def _chance_recall_groups(group_ids: torch.Tensor, k: int) -> float:
    """Exact expected hit rate at ``k`` under random ranking when any same-group candidate is a hit."""
    n = int(group_ids.numel())
    k = min(k, n)
    total = math.comb(n, k)
    # each of the ``s`` members of a group of size ``s`` hits with probability 1 - C(n - s, k) / C(n, k);
    # summed in exact integer arithmetic, divided once
    hits = sum(s * (total - math.comb(n - s, k)) for s in Counter(group_ids.tolist()).values())
    return hits / (n * total)


def retrieval_recall(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    ks: Sequence[int] = (1, 5, 10),
    text_groups: Sequence[str] | None = None,
    chunk_size: int = 512,
) -> dict[str, float]:
    """
    Image-to-text and text-to-image Recall@k of paired embeddings (see the module docstring for
    the exact, pessimistic tie rule).

    Args:
        image_emb: (N, D) image embeddings; row ``i`` is paired with ``text_emb[i]``.
        text_emb: (N, D) text embeddings.
        ks: cut-offs ``k`` (positive integers; ``k > N`` is allowed and gives recall 1).
        text_groups: optional group key per pair (e.g. the report string). Adds the report-level
            metrics ``i2t_R@k_text``, ``t2i_R@k_text`` and ``chance_R@k_text``.
        chunk_size: queries processed at once; memory is ``chunk_size * N`` similarities.

    Returns:
        dict with ``i2t_R@k`` and ``t2i_R@k`` (fraction of queries whose correct partner is in the
        top-k), ``chance_R@k`` (``min(k, N) / N``, the expected recall of a random ranking),
        ``num_pairs`` (N) and, with ``text_groups``, the ``*_text`` keys described above.
    """
    ks = _validate_ks(ks)
    image_emb = _as_2d_float(image_emb, "image_emb")
    text_emb = _as_2d_float(text_emb, "text_emb")
    if image_emb.shape[0] != text_emb.shape[0]:
        raise ValueError(
            f"image_emb has {image_emb.shape[0]} rows but text_emb has {text_emb.shape[0]}; "
            "pair i must be row i of both."
        )
    if image_emb.shape[1] != text_emb.shape[1]:
        raise ValueError(
            f"image_emb dim {image_emb.shape[1]} != text_emb dim {text_emb.shape[1]}; "
            "use the projected (joint) embeddings."
        )
    n = image_emb.shape[0]
    if n == 0:
        raise ValueError("retrieval_recall needs at least one image-text pair, got N=0.")

    i2t = pessimistic_ranks(image_emb, text_emb, chunk_size=chunk_size)
    t2i = pessimistic_ranks(text_emb, image_emb, chunk_size=chunk_size)
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_R@{k}"] = float((i2t <= k).double().mean())
        out[f"t2i_R@{k}"] = float((t2i <= k).double().mean())
        out[f"chance_R@{k}"] = min(k, n) / n
    if text_groups is not None:
        gid = _group_ids(text_groups, n, "text_groups")
        i2t_g = pessimistic_ranks(image_emb, text_emb, groups=gid, chunk_size=chunk_size)
        t2i_g = pessimistic_ranks(text_emb, image_emb, groups=gid, chunk_size=chunk_size)
        for k in ks:
            out[f"i2t_R@{k}_text"] = float((i2t_g <= k).double().mean())
            out[f"t2i_R@{k}_text"] = float((t2i_g <= k).double().mean())
            out[f"chance_R@{k}_text"] = _chance_recall_groups(gid, k)
    out["num_pairs"] = n
    return out


def modality_suffix(modality: str) -> str:
    """
    Key suffix for a modality name: lower case with non-alphanumerics removed, e.g.
    ``"X-ray" -> "_xray"``, ``"CT" -> "_ct"``.
    """
    name = re.sub(r"[^0-9a-z]", "", str(modality).lower())
    if not name:
        raise ValueError(f"modality {modality!r} has no letters or digits; use names such as 'xray' or 'ct'.")
    return f"_{name}"


def retrieval_recall_subsets(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    modality: Sequence[str],
    ks: Sequence[int] = (1, 5, 10),
    text_groups: Sequence[str] | None = None,
    chunk_size: int = 512,
) -> dict[str, float]:
    """
    Retrieval over all pairs together plus retrieval within each modality.

    The overall metrics (all queries against all candidates, whatever their modality) use the plain
    keys of :func:`retrieval_recall`. For each modality ``m`` the same metrics are computed with
    queries **and** candidates restricted to the pairs of modality ``m`` and stored with the suffix
    :func:`modality_suffix` (``"xray"``/``"X-ray"`` -> ``_xray``, ``"ct"``/``"CT"`` -> ``_ct``), e.g.
    ``i2t_R@1_xray``, ``chance_R@1_ct``, ``num_pairs_ct``.

    Args:
        image_emb: (N, D) image embeddings.
        text_emb: (N, D) text embeddings paired row by row with ``image_emb``.
        modality: one modality name per pair.
        ks: recall cut-offs.
        text_groups: optional report key per pair (adds the ``*_text`` metrics, also per modality).
        chunk_size: queries processed at once.

    Returns:
        dict of overall and per-modality metrics.
    """
    n = len(image_emb)
    if len(modality) != n:
        raise ValueError(f"modality has {len(modality)} entries but there are {n} image-text pairs; give one per pair.")
    if text_groups is not None and len(text_groups) != n:
        raise ValueError(f"text_groups has {len(text_groups)} entries but there are {n} pairs; give one per pair.")
    out = retrieval_recall(image_emb, text_emb, ks=ks, text_groups=text_groups, chunk_size=chunk_size)
    by_suffix: dict[str, list[int]] = {}
    names: dict[str, str] = {}
    for i, m in enumerate(modality):
        suffix = modality_suffix(m)
        if names.setdefault(suffix, str(m)) != str(m):
            raise ValueError(
                f"modality names {names[suffix]!r} and {m!r} (pair {i}) map to the same key suffix {suffix!r}; "
                "use one spelling per modality."
            )
        by_suffix.setdefault(suffix, []).append(i)
    for suffix, idx_list in by_suffix.items():
        idx = torch.tensor(idx_list, dtype=torch.long)
        groups = None if text_groups is None else [text_groups[i] for i in idx_list]
        sub = retrieval_recall(
            torch.as_tensor(image_emb)[idx],
            torch.as_tensor(text_emb)[idx],
            ks=ks,
            text_groups=groups,
            chunk_size=chunk_size,
        )
        out.update({f"{key}{suffix}": value for key, value in sub.items()})
    return out
