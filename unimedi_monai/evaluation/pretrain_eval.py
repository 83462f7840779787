# SPDX-License-Identifier: Apache-2.0
"""Evaluation of a pre-trained UniMedI on held-out image-report pairs.

Computes, on the validation items of a datalist:

- image-to-text and text-to-image Recall@1/5/10 over all pairs and within each modality, next to
  the chance level (``k / N``);
- for CT items that list their lesion slices, the fraction of volumes where a slice chosen by
  attentive slice selection lies within ``tolerance`` slices of the lesion (``slice_hit_rate``),
  next to the expected figure for the same number of random slices (``slice_hit_rate_random``);
  lesion slices are mapped from the original numbering onto the resampled 32-slice grid;
- the slice hit test of attentive selection: exact random expectation and one-sided p-value
  (``slice_hit_p_value``, Poisson-binomial over the CTs), and the position-only baseline: the hit rate of the
  best fixed slice(s) for every CT, chosen on the evaluated CTs (``slice_hit_rate_position_prior``, at
  ``slice_position_prior_slices``), with the spread of the selected slice over the CTs
  next to that of the lesion centres (``slice_selected_std``, ``slice_lesion_centre_std``), and the
  selection on each CT's slice scores minus the mean scores of the evaluated CTs, which keeps only what
  the attention holds beyond position (``slice_hit_rate_centred``, ``slice_hit_p_value_centred``,
  ``slice_selected_std_centred``);
- cross-modal alignment (:func:`cross_modal_alignment`): for each CT the findings of its 5 nearest
  X-ray embeddings, and for each X-ray those of its 5 nearest CTs, against chance;
- a [CLS] linear probe of the findings (:func:`cls_probe_accuracy`, stratified k-fold on the
  evaluation items) for the pre-trained encoder and for a randomly initialised encoder of the
  same size, per modality (``probe_acc_<modality>`` vs ``probe_acc_random_<modality>``);
- pictures in ``output_dir``: the joint embedding space (PCA / t-SNE, by modality and finding),
  the image-report similarity matrix, and per-slice scores of a few CTs.

Everything goes to ``output_dir/metrics.json`` (written atomically).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from unimedi_monai.evaluation.embedding_plot import plot_embeddings, plot_similarity_matrix, plot_slice_scores
from unimedi_monai.evaluation.retrieval import retrieval_recall_subsets
from unimedi_monai.evaluation.slice_hits import (
    position_prior_hit_rate,
    random_slice_hit_rate,
    slice_hit_rate,
    slice_hit_test,
)
from unimedi_monai.io.atomic_io import write_json_atomic
from unimedi_monai.networks.attention_selection import top_k_slices

__all__ = ["evaluate_pretraining", "cross_modal_alignment", "cls_probe_accuracy"]

logger = logging.getLogger(__name__)


def _lesion_on_grid(item: Mapping[str, Any], target: int) -> list[int]:
    from unimedi_monai.data.slice_grid import lesion_slices_resampled

    lesion = item.get("lesion_slices") or []
    if not lesion:
        return []
    depth = int(item.get("num_slices") or target)
    return lesion_slices_resampled(lesion, depth, target)


def cross_modal_alignment(
    embeddings: torch.Tensor,
    modality: Sequence[str],
    finding: Sequence[str],
    k: int = 5,
    a: str = "ct",
    b: str = "xray",
) -> dict[str, float]:
    """Finding agreement between modalities in the joint embedding space.

    For each item of modality ``a``: the fraction of its ``k`` nearest (cosine) items of modality
    ``b`` that share its finding; averaged over the ``a`` items. Chance: the same fraction for ``k``
    random ``b`` items, i.e. the share of ``b`` items with that finding, averaged over the ``a``
    items (exact). Items whose finding is ``"unknown"`` are left out.

    Returns:
        ``{"precision": ..., "chance": ..., "ratio": ..., "num_queries": ...}``.
    """
    emb = torch.nn.functional.normalize(torch.as_tensor(embeddings).float(), dim=-1)
    ia = [i for i, (m, f) in enumerate(zip(modality, finding)) if m == a and f != "unknown"]
    ib = [i for i, (m, f) in enumerate(zip(modality, finding)) if m == b and f != "unknown"]
    if not ia or not ib:
        return {"precision": float("nan"), "chance": float("nan"), "ratio": float("nan"), "num_queries": 0}
    k = min(int(k), len(ib))
    sim = emb[ia] @ emb[ib].t()
    nearest = sim.topk(k, dim=1).indices
    fb = np.asarray([finding[i] for i in ib])
    fa = np.asarray([finding[i] for i in ia])
    precision = float((fb[nearest.numpy()] == fa[:, None]).mean())
    share = {f: float((fb == f).mean()) for f in set(fb)}
    chance = float(np.mean([share.get(f, 0.0) for f in fa]))
    return {
        "precision": precision,
        "chance": chance,
        "ratio": precision / chance if chance > 0 else float("inf"),
        "num_queries": len(ia),
    }


def cls_probe_accuracy(features: torch.Tensor, labels: Sequence[str], folds: int = 5, seed: int = 0) -> float:
    """Accuracy of a linear probe on frozen features, by stratified ``folds``-fold cross-validation.

    Uses :func:`unimedi_monai.classification.linear_probe.train_linear_probe` (standardised
    features, AdamW, 300 full-batch epochs, no model selection: the last epoch is kept).

    Args:
        features: ``(N, F)`` frozen features (e.g. the [CLS] token).
        labels: ``N`` class names.
        folds: number of folds (each class is dealt round-robin over the folds).
        seed: seed of the fold assignment and the probe.
    """
    from unimedi_monai.classification.linear_probe import train_linear_probe
    from unimedi_monai.classification.tasks import ClassificationTask

    names = sorted(set(labels))
    if len(names) < 2 or len(labels) < 2 * folds:
        return float("nan")
    y = torch.tensor([names.index(v) for v in labels], dtype=torch.long)
    task = ClassificationTask(name="probe", class_names=tuple(names), key_metric="accuracy")
    rng = np.random.default_rng(seed)
    fold = np.zeros(len(labels), dtype=np.int64)
    for c in range(len(names)):
        idx = np.flatnonzero(y.numpy() == c)
        rng.shuffle(idx)
        fold[idx] = np.arange(len(idx)) % folds
    correct = 0
    for f in range(folds):
        train, test = torch.from_numpy(fold != f), torch.from_numpy(fold == f)
        with torch.enable_grad():  # the evaluation around it runs under no_grad
            probe = train_linear_probe(
                features[train], y[train], task, epochs=300, lr=1e-2, weight_decay=1e-4, seed=seed
            )
        correct += int((probe.logits(features[test]).argmax(-1) == y[test]).sum())
    return correct / len(labels)


def _random_encoder(network: nn.Module, seed: int) -> nn.Module:
    """A randomly initialised vision encoder of the same size and position init as ``network.encoder``
    (the probe's baseline)."""
    from unimedi_monai.networks.vision_encoder import UnifiedVisionEncoder

    enc = network.encoder
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        rand = UnifiedVisionEncoder(
            enc.backbone.config,
            enc.tokenizer_2d.img_size,
            enc.tokenizer_3d.img_size,
            enc.tokenizer_2d.patch_size,
            enc.tokenizer_3d.patch_size,
            enc.tokenizer_2d.position_scale,
        )
    finally:
        torch.random.set_rng_state(state)
    return rand.to(next(enc.parameters()).device).eval()


@torch.no_grad()
def evaluate_pretraining(
    network: nn.Module,
    items: Sequence[Mapping[str, Any]],
    xray_transform: Callable,
    ct_transform: Callable,
    output_dir: str | os.PathLike,
    device: torch.device | str = "cpu",
    batch_size: int = 16,
    slice_k: int = 1,
    tolerance: int = 1,
    seed: int = 0,
    plot_method: str = "pca",
    num_slice_plots: int = 3,
    num_workers: int = 0,
    progress: bool = True,
    probe: bool = True,
    alignment_k: int = 5,
) -> dict[str, float]:
    """Evaluate ``network`` (a :class:`~unimedi_monai.networks.UniMedI`) on ``items``.

    Args:
        network: the pre-trained model (weights already loaded).
        items: datalist items (``image``, ``report``, ``modality``; CT items may carry
            ``lesion_slices`` in original slice numbers and ``num_slices``; ``finding`` colours plots).
        xray_transform: deterministic X-ray transform (the pretrain bundle's ``validate#xray_transforms``).
        ct_transform: deterministic CT transform (the pretrain bundle's ``validate#ct_transforms``).
        output_dir: where ``metrics.json`` and the PNGs go.
        device: evaluation device.
        batch_size: images per forward pass.
        slice_k: slices selected per CT for the hit rate (1: the single best slice).
        tolerance: a selected slice within this many slices of a lesion slice is a hit.
        seed: seed of the random-selection baseline.
        plot_method: ``"pca"`` or ``"tsne"`` for the embedding picture.
        num_slice_plots: CTs with lesions whose slice scores are drawn.
        num_workers: data loading workers.
        progress: show a progress bar.
        probe: also run the [CLS] linear probe (pre-trained vs random-init encoder); costs one
            forward pass of the random encoder over the items.
        alignment_k: neighbours of the cross-modal alignment.

    Returns:
        the metrics written to ``metrics.json``.
    """
    from torch.utils.data import DataLoader, Subset

    from unimedi_monai.data.collate import collate_mixed
    from unimedi_monai.data.dataset import build_pretrain_dataset

    if not items:
        raise ValueError("no validation items to evaluate: the datalist's 'validation' section is empty.")
    network = network.to(device).eval()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    dataset = build_pretrain_dataset(items, xray_transform, ct_transform, cache="none", progress=False)
    by_modality = {"xray": list(dataset.xray_indices), "ct": list(dataset.ct_indices)}
    image_emb, text_emb, modality, finding, reports = [], [], [], [], []
    ct_selected, ct_scores, ct_lesions, ct_previews = [], [], [], []
    cls_feats: dict[str, list[torch.Tensor]] = {"xray": [], "ct": []}
    rand_feats: dict[str, list[torch.Tensor]] = {"xray": [], "ct": []}
    k_train = getattr(network, "slice_top_k", 4)
    random_encoder = _random_encoder(network, seed) if probe else None
    for m in ("xray", "ct"):
        if not by_modality[m]:
            continue
        loader = DataLoader(
            Subset(dataset, by_modality[m]), batch_size=batch_size, num_workers=num_workers, collate_fn=collate_mixed
        )
        for batch in tqdm(loader, desc=f"evaluate {m}", disable=not progress):
            data = batch[m]
            images = data["image"].to(device)
            selected_train = None
            if m == "ct":
                # one teacher selection pass serves the embedding (k_train slices) and the hit rate
                _, scores = network.select_slices(images, max(slice_k, k_train))
                if getattr(network, "slice_selection", "attention") == "uniform":
                    selected_train = network.uniform_slices(images)  # as in its pre-training
                else:
                    selected_train = top_k_slices(scores, k_train)
            feats = network.image_features(images, slice_indices=selected_train)
            emb = network.image_projection(feats["pooled"], normalize=True)
            image_emb.append(emb.float().cpu())
            cls_feats[m].append(feats["pooled"].float().cpu())
            if random_encoder is not None:
                tokens = (
                    random_encoder.embed_ct(images, selected_train) if m == "ct" else random_encoder.embed_xray(images)
                )
                rand_feats[m].append(random_encoder(tokens)["pooled"].float().cpu())
            text_emb.append(network.encode_text(data["report"]).float().cpu())
            reports += list(data["report"])
            modality += [m] * images.shape[0]
            finding += [str(f) for f in data.get("finding", ["unknown"] * images.shape[0])]
            if m == "ct":
                top = torch.topk(scores, slice_k, dim=-1).indices
                ct_selected += top.cpu().tolist()
                ct_scores += scores.cpu().tolist()
                depth = images.shape[-1]
                for j in range(images.shape[0]):
                    item = {
                        key: (data[key][j] if isinstance(data.get(key), list) else None)
                        for key in ("lesion_slices", "num_slices")
                    }
                    ct_lesions.append(_lesion_on_grid(item, depth))
                    if len(ct_previews) < num_slice_plots and ct_lesions[-1]:
                        ct_previews.append((images[j, 0].cpu(), scores[j].cpu(), top[j].cpu().tolist(), ct_lesions[-1]))
    image_all, text_all = torch.cat(image_emb), torch.cat(text_emb)
    metrics: dict[str, Any] = dict(
        retrieval_recall_subsets(image_all, text_all, modality, ks=(1, 5, 10), text_groups=reports)
    )
    metrics["num_xray"] = modality.count("xray")
    metrics["num_ct"] = modality.count("ct")
    if any(ct_lesions):
        n_slices = len(ct_scores[0])
        metrics["slice_hit_rate"] = slice_hit_rate(ct_selected, ct_lesions, tolerance)
        rnd = random_slice_hit_rate(ct_lesions, n_slices, slice_k, tolerance, seed=seed)
        metrics["slice_hit_rate_random"] = rnd["expected"]
        metrics["slice_hit_rate_random_sampled"] = rnd["sampled"]
        metrics["slice_k"] = slice_k
        metrics["slice_tolerance"] = tolerance
        metrics["num_ct_with_lesion"] = sum(1 for x in ct_lesions if x)
        top_train = [list(np.argsort(-np.asarray(s))[:k_train]) for s in ct_scores]
        metrics[f"slice_hit_rate_top{k_train}"] = slice_hit_rate(top_train, ct_lesions, tolerance)
        metrics[f"slice_hit_rate_random_top{k_train}"] = random_slice_hit_rate(
            ct_lesions, n_slices, k_train, tolerance, seed=seed
        )["expected"]
        test = slice_hit_test(ct_selected, ct_lesions, n_slices, tolerance)
        metrics["slice_hit_p_value"] = test["p_value"]
        metrics["slice_hit_ratio"] = test["ratio"]
        # the position-only baseline: the best fixed slice(s) for every CT, chosen on these CTs
        prior = position_prior_hit_rate(ct_lesions, n_slices, slice_k, tolerance)
        metrics["slice_hit_rate_position_prior"] = prior["hit_rate"]
        metrics["slice_position_prior_slices"] = prior["positions"]
        metrics[f"slice_hit_rate_position_prior_top{k_train}"] = position_prior_hit_rate(
            ct_lesions, n_slices, k_train, tolerance
        )["hit_rate"]
        # does the selection move with the CT? spread of the best slice against the spread of the lesions
        with_lesion = [(s[0], les) for s, les in zip(ct_selected, ct_lesions) if les]
        metrics["slice_selected_std"] = float(np.std([s for s, _ in with_lesion]))
        # what the attention holds beyond position: select on each CT's scores minus the mean scores of
        # all evaluated CTs (a slice wins when it gets more attention than that slice usually gets)
        scores_arr = np.asarray(ct_scores, dtype=np.float64)
        centred = scores_arr - scores_arr.mean(axis=0, keepdims=True)
        centred_sel = [list(np.argsort(-c, kind="stable")[:slice_k]) for c in centred]
        centred_test = slice_hit_test(centred_sel, ct_lesions, n_slices, tolerance)
        metrics["slice_hit_rate_centred"] = centred_test["hit_rate"]
        metrics["slice_hit_p_value_centred"] = centred_test["p_value"]
        metrics["slice_selected_std_centred"] = float(np.std([s[0] for s, les in zip(centred_sel, ct_lesions) if les]))
        metrics["slice_lesion_centre_std"] = float(np.std([float(np.mean(les)) for _, les in with_lesion]))
    for a, b in (("ct", "xray"), ("xray", "ct")):
        align = cross_modal_alignment(image_all, modality, finding, alignment_k, a, b)
        if align["num_queries"]:
            metrics[f"align_{a}2{b}_p@{alignment_k}"] = align["precision"]
            metrics[f"align_{a}2{b}_chance"] = align["chance"]
    if probe:
        for m in ("xray", "ct"):
            labels = [f for f, mm in zip(finding, modality) if mm == m]
            if not cls_feats[m] or len(set(labels)) < 2:
                continue
            metrics[f"probe_acc_{m}"] = cls_probe_accuracy(torch.cat(cls_feats[m]), labels, seed=seed)
            metrics[f"probe_acc_random_{m}"] = cls_probe_accuracy(torch.cat(rand_feats[m]), labels, seed=seed)
            metrics[f"probe_chance_{m}"] = max(labels.count(f) for f in set(labels)) / len(labels)
    metrics["temperature"] = float(getattr(getattr(network, "contrastive_loss", None), "temperature", float("nan")))

    plot_embeddings(
        image_all,
        modality,
        finding,
        output_dir / "embeddings.png",
        method=plot_method,
        title="Image embeddings (held-out): 2D X-ray and 3D CT",
    )
    order = np.argsort(np.asarray(finding), kind="stable")
    plot_similarity_matrix(
        image_all[order], text_all[order], output_dir / "similarity.png", labels=[finding[i] for i in order]
    )
    for n, (volume, scores, selected, lesion) in enumerate(ct_previews):
        plot_slice_scores(
            scores.numpy(),
            selected,
            lesion,
            output_dir / f"slice_scores_{n}.png",
            volume_slices=volume.permute(2, 0, 1)[selected].numpy(),
        )
    write_json_atomic(metrics, output_dir / "metrics.json")
    logger.info("evaluation metrics written to %s", output_dir / "metrics.json")
    return metrics
