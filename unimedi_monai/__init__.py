"""unimedi-monai: UniMedI unified 2D/3D medical vision-language pre-training for MONAI.

Subpackages load on first use (``unimedi_monai.io``, ``.networks``, ``.data``, ``.engines``, ``.evaluation``,
``.bundle``), so bundle configs can ``$import unimedi_monai`` and reference any of them.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {"bundle", "classification", "data", "engines", "evaluation", "io", "losses", "networks", "packaging", "segmentation", "selection", "slice_selection"}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
