# SPDX-License-Identifier: Apache-2.0
"""unimedi-monai: UniMedI unified 2D/3D medical vision-language pre-training for MONAI.

Subpackages load on first use (``unimedi_monai.io``, ``.networks``, ``.data``, ``.engines``, ``.evaluation``,
``.bundle``), so bundle configs can ``$import unimedi_monai`` and reference any of them.
"""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {}  # the subpackages themselves load on first use
__all__ = ["__version__"]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
