# SPDX-License-Identifier: Apache-2.0
"""Data: datalists, readers, MONAI transforms, mixed 2D/3D sampling, report cleaning, demo data, adapters.

The pipeline core sits in this folder (datalist, readers, ct_resample, transforms, dataset, sampler,
collate, reports, fractions, integrity, slice_grid, sources, prepare); the readers of the public
datasets' own layouts in :mod:`unimedi_monai.data.adapters`; the built-in synthetic data set in
:mod:`unimedi_monai.data.demo`.

Names load on first use, so the command-line tools (``python -m unimedi_monai.data.prepare``,
``python -m unimedi_monai.data.demo``) start without importing MONAI.
"""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS = {
    "CHEXPERT_COMPETITION": "adapters.chexpert",
    "load_chexpert": "adapters.chexpert",
    "COVIDX_CLASSES": "adapters.covidx",
    "load_covidx": "adapters.covidx",
    "load_rsna_pneumonia": "adapters.rsna_pneumonia",
    "collate_mixed": "collate",
    "move_batch_to_device": "collate",
    "load_datalist": "datalist",
    "split_by_patient": "datalist",
    "write_datalist": "datalist",
    "resampled_grid": "ct_resample",
    "MixedModalityDataset": "dataset",
    "build_pretrain_dataset": "dataset",
    "fraction_count": "fractions",
    "select_fraction": "fractions",
    "generate_demo_dataset": "demo",
    "luna16_cases": "adapters.luna16",
    "read_luna16_annotations": "adapters.luna16",
    "world_to_voxel": "adapters.luna16",
    "lesion_slices_resampled": "slice_grid",
    "SimpleITKReader": "readers",
    "infer_modality": "inputs",
    "list_inputs": "inputs",
    "clean_report": "reports",
    "extract_sections": "reports",
    "report_from_sections": "reports",
    "truncate_report": "reports",
    "MixedBatchSampler": "sampler",
    "resolve_dataset_dir": "sources",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
