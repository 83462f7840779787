# SPDX-License-Identifier: Apache-2.0
"""Organ label tables of the BCV (BTCV) and AMOS CT benchmarks, and the TotalSegmentator -> BCV id map."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["BCV_ORGANS", "AMOS_ORGANS", "TOTALSEGMENTATOR_TO_BCV", "organ_names", "channel_def"]

#: BCV / BTCV multi-organ labels 1..13 (label 0 is background), in MONAI's swin_unetr_btcv order.
BCV_ORGANS: tuple[str, ...] = (
    "spleen",
    "right kidney",
    "left kidney",
    "gallbladder",
    "esophagus",
    "liver",
    "stomach",
    "aorta",
    "inferior vena cava",
    "portal and splenic veins",
    "pancreas",
    "right adrenal gland",
    "left adrenal gland",
)

#: AMOS 2022 CT labels 1..15 (label 0 is background), in the order of AMOS's dataset.json.
AMOS_ORGANS: tuple[str, ...] = (
    "spleen",
    "right kidney",
    "left kidney",
    "gallbladder",
    "esophagus",
    "liver",
    "stomach",
    "aorta",
    "inferior vena cava",
    "pancreas",
    "right adrenal gland",
    "left adrenal gland",
    "duodenum",
    "bladder",
    "prostate/uterus",
)

#: TotalSegmentator "total" task id -> BCV id (every other TotalSegmentator id is background).
TOTALSEGMENTATOR_TO_BCV: dict[int, int] = {
    1: 1,
    2: 2,
    3: 3,
    4: 4,
    15: 5,
    5: 6,
    6: 7,
    52: 8,
    63: 9,
    64: 10,
    7: 11,
    8: 12,
    9: 13,
}

_TABLES: Mapping[str, tuple[str, ...]] = {"bcv": BCV_ORGANS, "amos": AMOS_ORGANS}


def organ_names(dataset: str) -> list[str]:
    """The organ names (labels 1..N) of ``dataset`` (``"bcv"`` or ``"amos"``)."""
    if dataset not in _TABLES:
        raise ValueError(f"unknown segmentation dataset {dataset!r}; choose one of {sorted(_TABLES)}.")
    return list(_TABLES[dataset])


def channel_def(dataset: str) -> dict[str, str]:
    """``{"0": "background", "1": <organ 1>, ...}``: the output channels, as bundle metadata names them."""
    return {"0": "background", **{str(i): name for i, name in enumerate(organ_names(dataset), start=1)}}
