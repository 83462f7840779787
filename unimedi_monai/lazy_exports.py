# SPDX-License-Identifier: Apache-2.0
"""The one way the packages of ``unimedi_monai`` export their names: loaded on first use.

Every ``__init__.py`` maps each public name to the submodule defining it and installs
:func:`lazy_exports`' module ``__getattr__``/``__dir__``::

    _EXPORTS = {"load_datalist": "datalist", ...}
    __all__ = sorted(_EXPORTS)
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

so ``import unimedi_monai.data`` imports nothing (the command-line tools start without MONAI and
torch), bundle configs can still write ``$unimedi_monai.data.load_datalist(...)`` or reach a
submodule (``$unimedi_monai.engines.trainer.xxx``) after ``$import unimedi_monai``, and two
packages never import each other merely by being imported.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` for ``package`` that import a name's submodule on first use.

    Args:
        package: the package's ``__name__``.
        exports: public name -> the submodule of ``package`` (relative, e.g. ``"datalist"``) defining it.

    Returns:
        ``(__getattr__, __dir__)``: ``__getattr__(name)`` returns ``exports[name]`` from its submodule,
        or the submodule ``name`` of the package itself; other names raise ``AttributeError``.
    """
    module = importlib.import_module(package)
    submodules = {m.name for m in pkgutil.iter_modules(getattr(module, "__path__", []))}

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(module)) | set(exports) | submodules)

    return __getattr__, __dir__
