"""Data: datalists, readers, MONAI transforms, mixed 2D/3D sampling, report cleaning, demo data, adapters.

Names load on first use, so the command-line tools (``python -m unimedi_monai.data.prepare``,
``python -m unimedi_monai.data.demo``) start without importing MONAI.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CHEXPERT_COMPETITION": "chexpert",
    "load_chexpert": "chexpert",
    "COVIDX_CLASSES": "covidx",
    "load_covidx": "covidx",
    "load_rsna_pneumonia": "rsna_pneumonia",
    "collate_mixed": "collate",
    "move_batch_to_device": "collate",
    "load_datalist": "datalist",
    "split_by_patient": "datalist",
    "write_datalist": "datalist",
    "ResampleToSized": "ct_resample",
    "resampled_grid": "ct_resample",
    "MixedModalityDataset": "dataset",
    "build_pretrain_dataset": "dataset",
    "fraction_count": "fractions",
    "select_fraction": "fractions",
    "generate_demo_dataset": "demo",
    "luna16_cases": "luna16",
    "read_luna16_annotations": "luna16",
    "world_to_voxel": "luna16",
    "lesion_slices_resampled": "demo",
    "SimpleITKReader": "readers",
    "infer_modality": "inputs",
    "list_inputs": "inputs",
    "clean_report": "reports",
    "extract_sections": "reports",
    "report_from_sections": "reports",
    "truncate_report": "reports",
    "MixedBatchSampler": "sampler",
    "resolve_dataset_dir": "sources",
    "ct_transforms": "transforms",
    "xray_transforms": "transforms",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
