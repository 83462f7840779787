# SPDX-License-Identifier: Apache-2.0
""":class:`RemapLabelsd`: label ids mapped through a table (e.g. TotalSegmentator ids -> BCV organs)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import convert_to_tensor

__all__ = ["RemapLabelsd"]


class RemapLabelsd(MapTransform):
    """Map label ids through ``mapping``; ids not in it become ``default`` (e.g. TotalSegmentator -> BCV ids).

    Args:
        keys: label keys.
        mapping: ``{source id: target id}``.
        default: the id of every unlisted source id.

    Example::

        from unimedi_monai.segmentation import TOTALSEGMENTATOR_TO_BCV
        RemapLabelsd("label", TOTALSEGMENTATOR_TO_BCV)({"label": seg})["label"]  # BCV ids 0..13
    """

    def __init__(
        self, keys: KeysCollection, mapping: Mapping[int, int], default: int = 0, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mapping = {int(k): int(v) for k, v in mapping.items()}
        self.default = int(default)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            label = d[key]
            plain = convert_to_tensor(label, track_meta=False)
            size = max(int(plain.max()) + 1, max(self.mapping) + 1)
            table = torch.full((size,), self.default, dtype=torch.int64)
            for src, dst in self.mapping.items():
                table[src] = dst
            values = table[plain.long()].to(plain.dtype)
            d[key] = (
                MetaTensor(values, meta=label.meta, applied_operations=label.applied_operations)
                if isinstance(label, MetaTensor)
                else values
            )
        return d
