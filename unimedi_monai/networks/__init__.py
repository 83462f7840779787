"""Networks: tokenizers, the shared backbone, the report encoder, heads and the UniMedI model."""

from unimedi_monai.networks.attention_block import SDPABlock
from unimedi_monai.networks.backbone import SharedBackbone
from unimedi_monai.networks.heads import DistillationHead, ProjectionHead
from unimedi_monai.networks.patch_tokenizer import PatchTokenizer
from unimedi_monai.networks.presets import BACKBONE_PRESETS, BackboneConfig, preset_of_state_dict, resolve_backbone_config
from unimedi_monai.networks.text_encoder import ReportEncoder, TextModelNotFoundError, default_text_model_path
from unimedi_monai.networks.unimedi import UniMedI
from unimedi_monai.networks.vision_encoder import UnifiedVisionEncoder
from unimedi_monai.networks.classifier import UniMedIClassifier  # noqa: E402  (builds on the encoder above)
from unimedi_monai.networks.unetr_decoder import UniMedIUNETR  # noqa: E402
from unimedi_monai.networks.setr_pup import UniMedISETRPUP  # noqa: E402

__all__ = [
    "BACKBONE_PRESETS",
    "BackboneConfig",
    "DistillationHead",
    "PatchTokenizer",
    "ProjectionHead",
    "ReportEncoder",
    "SDPABlock",
    "SharedBackbone",
    "TextModelNotFoundError",
    "UniMedI",
    "UniMedIClassifier",
    "UniMedISETRPUP",
    "UniMedIUNETR",
    "UnifiedVisionEncoder",
    "default_text_model_path",
    "preset_of_state_dict",
    "resolve_backbone_config",
]
