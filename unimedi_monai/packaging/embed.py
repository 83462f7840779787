"""Embed a folder or list of X-rays and CT volumes with a pre-trained image encoder (the pre-training bundle's inference)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from tqdm import tqdm

from unimedi_monai.io.atomic_io import write_json_atomic

__all__ = ["CT_SUFFIXES", "XRAY_SUFFIXES", "infer_modality", "list_images", "embed_images"]

CT_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
XRAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".dcm")


def infer_modality(path: str | os.PathLike) -> str:
    """``"ct"`` for NIfTI / NRRD / MHA / MHD files and DICOM-series folders, ``"xray"`` for PNG / JPEG / BMP / single DICOM files.

    Raises:
        ValueError: another kind of file, naming it and the accepted suffixes.
    """
    p = Path(path)
    name = p.name.lower()
    if p.is_dir() or name.endswith(CT_SUFFIXES):
        return "ct"
    if name.endswith(XRAY_SUFFIXES):
        return "xray"
    raise ValueError(f"{p}: cannot tell the modality; CT volumes end in {CT_SUFFIXES} (or are DICOM-series folders), X-rays in {XRAY_SUFFIXES}.")


def list_images(folder: str | os.PathLike | None) -> list[dict[str, str]]:
    """``[{"image": path, "modality": "xray" | "ct"}]`` for every image file or DICOM-series folder in ``folder`` (sorted).

    Raises:
        ValueError: ``folder`` is None, missing or holds no image (names the config key ``input_dir``).
    """
    if folder is None:
        raise ValueError("input_dir is not set; pass --input_dir with a folder of X-rays (png/jpg/dcm) and CT volumes (nii/nii.gz/nrrd/mha or DICOM-series folders).")
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"input_dir {folder} is not a folder.")
    items = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        try:
            items.append({"image": str(p), "modality": infer_modality(p)})
        except ValueError:
            continue
    if not items:
        raise ValueError(f"input_dir {folder} holds no image; expected {CT_SUFFIXES + XRAY_SUFFIXES} files or DICOM-series folders.")
    return items


@torch.no_grad()
def embed_images(
    network: nn.Module,
    items: Sequence[Mapping[str, Any]],
    xray_transform: Callable[[dict], dict],
    ct_transform: Callable[[dict], dict],
    output_path: str | os.PathLike,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Embed each item (one at a time) and write ``{"images", "modality", "embeddings"}`` to ``output_path`` (JSON, atomically).

    Args:
        network: image -> ``(1, D)`` embedding network (e.g. :class:`ImageEmbeddingNetwork`), weights loaded.
        items: ``{"image": path, "modality": "xray" | "ct"}`` entries (see :func:`list_images`).
        xray_transform: the X-ray pipeline (``unimedi_monai.data.xray_transforms(train=False)``).
        ct_transform: the CT pipeline (``unimedi_monai.data.ct_transforms(train=False)``).
        output_path: the JSON file to write.
        device: where the network runs.

    Returns:
        the written document.
    """
    network.eval().to(device)
    names, modalities, embeddings = [], [], []
    for item in tqdm(items, desc="embedding", disable=bool(os.environ.get("CI"))):
        modality = item.get("modality") or infer_modality(item["image"])
        transform = ct_transform if modality == "ct" else xray_transform
        image = transform({"image": item["image"]})["image"]
        emb = network(torch.as_tensor(image).unsqueeze(0).to(device))
        names.append(str(item["image"]))
        modalities.append(modality)
        embeddings.append([round(float(v), 7) for v in emb[0].cpu()])
    doc = {"images": names, "modality": modalities, "embeddings": embeddings}
    write_json_atomic(doc, output_path)
    return doc
