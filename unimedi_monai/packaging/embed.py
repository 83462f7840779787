# SPDX-License-Identifier: Apache-2.0
"""Embed the X-rays and CT volumes of ``datalist`` / ``dataset_dir`` and CT volumes with a pre-trained image encoder
(the pre-training bundle's inference)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from unimedi_monai.data.inputs import CT_SUFFIXES, XRAY_SUFFIXES, infer_modality, list_inputs
from unimedi_monai.io.atomic_io import write_json_atomic

__all__ = ["CT_SUFFIXES", "XRAY_SUFFIXES", "infer_modality", "list_images", "embed_images"]


def list_images(datalist: Any = None, dataset_dir: str | os.PathLike | None = None) -> list[dict[str, str]]:
    """``[{"image": path, "modality": "xray" | "ct"}]`` for the inputs named by the config keys ``datalist`` /
    ``dataset_dir``.

    Args:
        datalist: as for :func:`unimedi_monai.data.inputs.list_inputs`; each entry must be an X-ray or a CT.
        dataset_dir: a folder: every image file and DICOM-series folder directly in it (sorted).

    Raises:
        ValueError: neither key is set, the folder holds no image, or a ``datalist`` entry is neither an X-ray nor a CT.
    """
    return [
        {"image": path, "modality": infer_modality(path)} for path in list_inputs(datalist, dataset_dir, modality="any")
    ]


@torch.no_grad()
def embed_images(
    network: nn.Module,
    items: Sequence[Mapping[str, Any]],
    xray_transform: Callable[[dict], dict],
    ct_transform: Callable[[dict], dict],
    output_path: str | os.PathLike,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Embed each item (one at a time) and write ``{"images", "modality", "embeddings"}`` to ``output_path``
    (JSON, atomically).

    Args:
        network: image -> ``(1, D)`` embedding network (e.g. :class:`ImageEmbeddingNetwork`), weights loaded.
        items: ``{"image": path, "modality": "xray" | "ct"}`` entries (see :func:`list_images`).
        xray_transform: the X-ray pipeline (the pretrain bundle's ``xray_transforms`` in inference.yaml).
        ct_transform: the CT pipeline (the pretrain bundle's ``ct_transforms`` in inference.yaml).
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
