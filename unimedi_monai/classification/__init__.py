"""Downstream classification: tasks and splits, linear probe on cached features, fine-tuning pieces,
metrics, inference and zero-shot classification with the pre-trained report encoder."""

from unimedi_monai.classification.evaluate import evaluate_classifier, load_classifier_weights, predict_logits
from unimedi_monai.classification.features import extract_features, feature_cache_key, state_dict_hash
from unimedi_monai.classification.handlers import BestModelSaver
from unimedi_monai.classification.inference import predict_to_json, prediction_names
from unimedi_monai.classification.linear_probe import LinearProbeResult, labels_tensor, run_linear_probe, train_linear_probe
from unimedi_monai.classification.losses import MaskedBCEWithLogitsLoss
from unimedi_monai.classification.metrics import (
    ClassificationMetric,
    classification_metrics,
    confusion_matrix,
    plot_confusion_matrix,
    predict_probabilities,
    write_classification_report,
)
from unimedi_monai.classification.settings import INITS, MODES, run_settings, validation_metrics
from unimedi_monai.classification.tasks import (
    DATASETS,
    ClassificationTask,
    fraction_indices,
    get_task,
    prepare_splits,
    training_fraction,
)
from unimedi_monai.classification.transforms import classification_transforms
from unimedi_monai.classification.zero_shot import class_text_embeddings, zero_shot_evaluate, zero_shot_probabilities

__all__ = [
    "prediction_names",
    "BestModelSaver",
    "ClassificationMetric",
    "ClassificationTask",
    "DATASETS",
    "INITS",
    "MODES",
    "LinearProbeResult",
    "MaskedBCEWithLogitsLoss",
    "class_text_embeddings",
    "classification_metrics",
    "classification_transforms",
    "confusion_matrix",
    "evaluate_classifier",
    "extract_features",
    "feature_cache_key",
    "fraction_indices",
    "get_task",
    "labels_tensor",
    "load_classifier_weights",
    "plot_confusion_matrix",
    "predict_logits",
    "predict_probabilities",
    "predict_to_json",
    "prepare_splits",
    "run_linear_probe",
    "run_settings",
    "state_dict_hash",
    "train_linear_probe",
    "training_fraction",
    "validation_metrics",
    "write_classification_report",
    "zero_shot_evaluate",
    "zero_shot_probabilities",
]
