"""Data: datalists, readers, MONAI transforms, mixed 2D/3D sampling, report cleaning, demo data, adapters."""

from unimedi_monai.data.collate import collate_mixed, move_batch_to_device
from unimedi_monai.data.datalist import load_datalist, split_by_patient, write_datalist
from unimedi_monai.data.dataset import MixedModalityDataset, build_pretrain_dataset
from unimedi_monai.data.readers import SimpleITKReader
from unimedi_monai.data.reports import clean_report, extract_sections, report_from_sections, truncate_report
from unimedi_monai.data.sampler import MixedBatchSampler
from unimedi_monai.data.sources import resolve_dataset_dir
from unimedi_monai.data.transforms import ct_transforms, xray_transforms

__all__ = [
    "MixedBatchSampler",
    "MixedModalityDataset",
    "SimpleITKReader",
    "build_pretrain_dataset",
    "clean_report",
    "collate_mixed",
    "ct_transforms",
    "extract_sections",
    "load_datalist",
    "move_batch_to_device",
    "report_from_sections",
    "resolve_dataset_dir",
    "split_by_patient",
    "truncate_report",
    "write_datalist",
    "xray_transforms",
]
