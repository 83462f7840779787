"""Evaluation: retrieval recall, slice hit rates, embedding / slice / training-curve plots, the pre-training evaluation."""

from unimedi_monai.evaluation.embedding_plot import plot_embeddings, plot_similarity_matrix, plot_slice_scores
from unimedi_monai.evaluation.pretrain_eval import evaluate_pretraining
from unimedi_monai.evaluation.retrieval import retrieval_recall, retrieval_recall_subsets
from unimedi_monai.evaluation.slice_hits import random_slice_hit_rate, slice_hit, slice_hit_rate
from unimedi_monai.evaluation.training_curves import plot_training_curves, read_jsonl_history

__all__ = [
    "evaluate_pretraining",
    "plot_embeddings",
    "plot_similarity_matrix",
    "plot_slice_scores",
    "plot_training_curves",
    "random_slice_hit_rate",
    "read_jsonl_history",
    "retrieval_recall",
    "retrieval_recall_subsets",
    "slice_hit",
    "slice_hit_rate",
]
