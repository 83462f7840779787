# SPDX-License-Identifier: Apache-2.0
"""Evaluation: retrieval recall, slice hit rates, embedding / slice / training-curve plots, the pre-training
evaluation."""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS = {
    "plot_embeddings": "embedding_plot",
    "plot_similarity_matrix": "embedding_plot",
    "plot_slice_scores": "embedding_plot",
    "evaluate_pretraining": "pretrain_eval",
    "retrieval_recall": "retrieval",
    "retrieval_recall_subsets": "retrieval",
    "random_slice_hit_rate": "slice_hits",
    "position_prior_hit_rate": "slice_hits",
    "slice_hit": "slice_hits",
    "slice_hit_rate": "slice_hits",
    "plot_training_curves": "training_curves",
    "read_jsonl_history": "training_curves",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
