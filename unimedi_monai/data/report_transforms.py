# SPDX-License-Identifier: Apache-2.0
"""CleanReportd: the report-cleaning transform of the pipelines."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from typing import Any

from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["CleanReportd"]


class CleanReportd(MapTransform):
    """
    Clean free-text reports with :py:func:`unimedi_monai.data.reports.clean_report` (whitespace collapsed,
    de-identification placeholders removed). A report that is ``None``, empty, or empty once cleaned (e.g. only
    placeholders) raises :py:class:`ValueError` unless ``allow_empty`` (then it becomes ``""``): an image paired
    with no text would teach the contrastive loss nothing but noise.

    Args:
        keys: keys holding report strings.
        allow_empty: accept empty reports (returned as ``""``).
        allow_missing_keys: don't raise if a key is missing.

    Example::

        CleanReportd(keys="report")({"report": "  Small   nodule  in ___ lobe. "})["report"]  # 'Small nodule in lobe.'
    """

    def __init__(
        self, keys: KeysCollection = "report", allow_empty: bool = False, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.allow_empty = allow_empty

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """
        Args:
            data: a dict holding report strings under ``keys``.

        Returns:
            a new dict with cleaned reports.
        """
        from unimedi_monai.data.reports import clean_report

        d = dict(data)
        for key in self.key_iterator(d):
            text = d[key]
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise TypeError(
                    f"CleanReportd: key '{key}' must hold the report text (str), got {type(text).__name__}."
                )
            cleaned = clean_report(text)
            if not cleaned and not self.allow_empty:
                image = d.get("image")
                source = f" of image '{image}'" if isinstance(image, (str, os.PathLike)) else ""
                raise ValueError(
                    f"CleanReportd: the report{source} (key '{key}') is "
                    f"empty{' after cleaning' if text.strip() else ''}; give the entry a report or remove it from the "
                    "datalist."
                )
            d[key] = cleaned
        return d
