# SPDX-License-Identifier: Apache-2.0
"""Networks: tokenizers, the shared backbone, the report encoder, heads and the UniMedI model."""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS = {
    "SDPABlock": "attention_block",
    "SharedBackbone": "backbone",
    "DistillationHead": "heads",
    "ProjectionHead": "heads",
    "PatchTokenizer": "patch_tokenizer",
    "BACKBONE_PRESETS": "presets",
    "BackboneConfig": "presets",
    "HEAD_OPTIONS": "presets",
    "head_options_of_state_dict": "presets",
    "pooling_of_state_dict": "presets",
    "preset_of_state_dict": "presets",
    "resolve_backbone_config": "presets",
    "SourceBatchNorm": "source_batch_norm",
    "ReportEncoder": "text_encoder",
    "TextModelNotFoundError": "text_encoder",
    "default_text_model_path": "text_encoder",
    "UniMedI": "unimedi",
    "UnifiedVisionEncoder": "vision_encoder",
    "UniMedIClassifier": "classifier",
    "UniMedIUNETR": "unetr_decoder",
    "UniMedISETRPUP": "setr_pup",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
