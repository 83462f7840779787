# SPDX-License-Identifier: Apache-2.0
"""Where the pre-processing transforms live (the names stay importable from here). The pipelines themselves
are listed step by step in the bundles' YAML (e.g. ``xray_preprocessing`` / ``ct_preprocessing`` in
``bundles/pretrain/configs/train.yaml``), from these transforms and MONAI's:

- :mod:`unimedi_monai.data.read_image`: ``ReadImaged`` (kept beside MONAI's ``LoadImaged``: see its docstring);
- :mod:`unimedi_monai.data.intensity_transforms`: ``CheckFinited``, ``ToGreyscaled``, ``ScaleToUnitd``;
- :mod:`unimedi_monai.data.resize_shortest_side`: ``ResizeShortestSided``;
- :mod:`unimedi_monai.data.report_transforms`: ``CleanReportd``;
- :mod:`unimedi_monai.data.pipeline_compose`: ``PipelineCompose`` (kept beside MONAI's ``Compose``: see its
  docstring) and ``unwrap_transform_error``.
"""

from __future__ import annotations

from unimedi_monai.data.intensity_transforms import CheckFinited, ScaleToUnitd, ToGreyscaled
from unimedi_monai.data.pipeline_compose import PipelineCompose, unwrap_transform_error
from unimedi_monai.data.read_image import ReadImaged
from unimedi_monai.data.report_transforms import CleanReportd
from unimedi_monai.data.resize_shortest_side import ResizeShortestSided

__all__ = [
    "PipelineCompose",
    "unwrap_transform_error",
    "ReadImaged",
    "CheckFinited",
    "ToGreyscaled",
    "ScaleToUnitd",
    "ResizeShortestSided",
    "CleanReportd",
]
