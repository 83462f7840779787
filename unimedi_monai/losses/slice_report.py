# SPDX-License-Identifier: Apache-2.0
"""Slice-report contrastive loss: a CT's report against the best-matching of its slices (multiple-instance InfoNCE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SliceReportLoss"]


class SliceReportLoss(nn.Module):
    """InfoNCE between CT reports and CT slices encoded alone, a CT's score being its best slice's.

    A report names a finding that lies in a few slices of its CT; which ones is not known at training
    time. So each CT is a bag of slice embeddings (multiple-instance learning): its similarity to a
    report is the highest cosine over its slices, and the loss is the symmetric InfoNCE of those
    similarities, CT -> every report of the batch (X-ray reports included, as in ``L_vl``) and CT
    report -> every CT of the batch. The gradient reaches the best slice of each pair only, so the
    slice that matches the report is pulled towards it. Text-guided slice selection at inference
    picks that same arg-max slice; without this term the 2D path never sees a CT slice alone with a
    report in pre-training, and what it knows of CT findings comes through the X-rays.

    Stateless: the temperature is the one of the image-report loss (passed as ``logit_scale``).
    Computed on the local batch only (not gathered across ranks).
    """

    def forward(
        self,
        slice_emb: torch.Tensor,
        text_emb: torch.Tensor,
        targets: torch.Tensor,
        logit_scale: torch.Tensor | float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and the index of each CT's best slice for its own report.

        Args:
            slice_emb: ``(Bc, n, D)`` L2-normalised embeddings of ``n`` slices of each of ``Bc`` CTs.
            text_emb: ``(Bt, D)`` L2-normalised report embeddings (every report of the batch).
            targets: ``(Bc,)`` row of ``text_emb`` holding each CT's own report.
            logit_scale: inverse temperature.

        Returns:
            ``(loss, best)``: the scalar loss and ``(Bc,)`` the index (into ``n``) of each CT's
            best-matching slice for its own report (detached).
        """
        if slice_emb.ndim != 3 or text_emb.ndim != 2 or slice_emb.shape[-1] != text_emb.shape[-1]:
            raise ValueError(
                f"slice embeddings must be (Bc, n, D) and report embeddings (Bt, D), got {tuple(slice_emb.shape)} "
                f"and {tuple(text_emb.shape)}."
            )
        if targets.shape != (slice_emb.shape[0],):
            raise ValueError(f"targets must be ({slice_emb.shape[0]},), got {tuple(targets.shape)}.")
        sims = torch.einsum("cnd,td->ctn", slice_emb.float(), text_emb.float())  # (Bc, Bt, n)
        scores = logit_scale * sims.amax(dim=-1)  # (Bc, Bt)
        rows = torch.arange(len(targets), device=scores.device)
        ct_to_report = F.cross_entropy(scores, targets)
        report_to_ct = F.cross_entropy(scores[:, targets].t(), rows)
        best = sims[rows, targets].argmax(dim=-1).detach()
        return 0.5 * (ct_to_report + report_to_ct), best
