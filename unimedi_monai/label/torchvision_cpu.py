# SPDX-License-Identifier: Apache-2.0
"""Let PyPI's torchvision wheel import beside a CPU-only torch (for MONAI Label).

MONAI Label imports ``torchvision.utils`` (pure Python: ``make_grid``, ``save_image``) when its
server starts. PyPI's torchvision 0.28 wheel is a CUDA build: with the CPU torch its compiled ops
(``torchvision/_C.so``) cannot load, which torchvision tolerates, except that it then registers
fake kernels for ``torchvision::nms`` / ``torchvision::qnms`` unconditionally and its import fails
with ``RuntimeError: operator torchvision::nms does not exist``.

:func:`install` adds an import hook that, right before torchvision is first imported, tries to
load torchvision's compiled ops; only when they cannot load does it declare the schemas of those
two operators (no kernels), so the import succeeds. Calling ``torchvision.ops.nms`` then fails
with PyTorch's "could not run ... with arguments from the 'CPU' backend" error; everything that does
not need torchvision's C++ ops works. A working torchvision (a CPU build, or a CUDA torch) is left
untouched. ``scripts/setup_label_env.sh`` enables the hook in the MONAI Label environment through
a ``.pth`` file; nothing in the main environment uses it.

Why it ships inside the package: that ``.pth`` line runs at every interpreter start of the MONAI Label
environment, before any script, so the hook must be importable from the installed package there
(``import unimedi_monai.label.torchvision_cpu``); it imports nothing of the package and only the
standard library until torchvision is imported. Remove it once PyPI has a CPU torchvision wheel
matching the pinned torch (``constraints/label.txt``).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["install", "declare_missing_ops"]

# operators that torchvision registers fake kernels for without checking that its ops loaded
_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_LIBRARY: Any = None  # the torch.library.Library holding the declarations (kept alive)


def declare_missing_ops(extension_path: str | Path) -> bool:
    """Load torchvision's compiled ops from ``extension_path``, or declare the schemas they would define.

    Args:
        extension_path: torchvision's ``_C.so``.

    Returns:
        True when schemas were declared (the compiled ops could not be loaded), False otherwise.
    """
    global _LIBRARY
    import torch

    try:
        torch.ops.load_library(str(extension_path))
        return False
    except (ImportError, OSError):
        pass
    if _LIBRARY is None:
        _LIBRARY = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS.values():
            _LIBRARY.define(schema)
    return True


class _TorchvisionFinder(importlib.abc.MetaPathFinder):
    """Runs :func:`declare_missing_ops` once, before the ``torchvision`` package itself executes."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> None:
        if fullname != "torchvision":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torchvision")
        if spec is not None and spec.submodule_search_locations:
            extension = next((p for d in spec.submodule_search_locations for p in Path(d).glob("_C*.so")), None)
            if extension is not None:
                declare_missing_ops(extension)
        return None  # the regular finders import torchvision


def install() -> None:
    """Add the import hook (idempotent; a no-op once torchvision is imported)."""
    if "torchvision" in sys.modules or any(isinstance(f, _TorchvisionFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _TorchvisionFinder())
