# SPDX-License-Identifier: Apache-2.0
"""MONAI Label support: serving the project's bundles with MONAI Label's ``monaibundle`` app.

Kept import-light: ``torchvision_cpu`` is imported at interpreter start in the MONAI Label
environment (see ``scripts/setup_label_env.sh``).
"""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS: dict[str, str] = {}  # its modules (``app``, ``infer_tasks``, ...) load on first use; none is re-exported
__all__: list[str] = []
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
