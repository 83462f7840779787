# SPDX-License-Identifier: Apache-2.0
"""Downstream classification: tasks and splits, linear probe on cached features, fine-tuning pieces,
metrics, inference and zero-shot classification with the pre-trained report encoder."""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS = {
    "evaluate_classifier": "evaluate",
    "predict_logits": "evaluate",
    "extract_features": "features",
    "feature_cache_key": "features",
    "state_dict_hash": "features",
    "predict_to_json": "inference",
    "prediction_names": "inference",
    "LinearProbeResult": "linear_probe",
    "labels_tensor": "linear_probe",
    "run_linear_probe": "linear_probe",
    "train_linear_probe": "linear_probe",
    "MaskedBCEWithLogitsLoss": "losses",
    "ClassificationMetric": "metrics",
    "classification_metrics": "metrics",
    "confusion_matrix": "metrics",
    "plot_confusion_matrix": "metrics",
    "predict_probabilities": "metrics",
    "write_classification_report": "metrics",
    "INITS": "settings",
    "MODES": "settings",
    "run_settings": "settings",
    "validation_metrics": "settings",
    "DATASETS": "tasks",
    "ClassificationTask": "tasks",
    "fraction_indices": "tasks",
    "get_task": "tasks",
    "prepare_splits": "tasks",
    "training_fraction": "tasks",
    "class_text_embeddings": "zero_shot",
    "zero_shot_evaluate": "zero_shot",
    "zero_shot_probabilities": "zero_shot",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
