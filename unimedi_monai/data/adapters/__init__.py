# SPDX-License-Identifier: Apache-2.0
"""Dataset adapters: each reads one public dataset's own layout into datalist items or (image, label) lists.

Pre-training datalists: MIMIC-CXR (:mod:`.mimic_cxr`) and BIMCV-COVID19+ (:mod:`.bimcv`), written by
``python -m unimedi_monai.data.prepare``. Classification: COVIDx (:mod:`.covidx`), CheXpert
(:mod:`.chexpert`), RSNA Pneumonia (:mod:`.rsna_pneumonia`). Slice selection: LUNA16 nodule
annotations (:mod:`.luna16`). The modules load on first use.
"""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS: dict[str, str] = {}  # the adapter modules load on first use: unimedi_monai.data.adapters.<name>
__all__: list[str] = []
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
