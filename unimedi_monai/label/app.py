# SPDX-License-Identifier: Apache-2.0
"""The MONAI Label app that serves the project's bundles (``--app unimedi_monai/label/app_dir``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

import unimedi_monai
from unimedi_monai.label.infer_tasks import SliceSelectionInferTask, UniMedIBundleInferTask, inference_config

__all__ = ["UniMedILabelApp", "resolve_bundles", "is_selector_bundle"]

logger = logging.getLogger(__name__)


def resolve_bundles(app_dir: str, conf: Mapping[str, str]) -> dict[str, str]:
    """``{model name: bundle folder}`` for ``--conf models a,b``.

    Each name is looked up as ``<app_dir>/model/<name>`` (MONAI Label's monaibundle layout), then
    ``<bundles_dir>/<name>`` when ``--conf bundles_dir DIR`` is given. Nothing is looked up relative to
    where the package is installed: an installed wheel has no ``bundles/`` beside it.

    Raises:
        ValueError: no ``models`` given, or a name found nowhere (lists the folders searched).
    """
    names = [n.strip() for n in str(conf.get("models") or "").split(",") if n.strip()]
    if not names:
        raise ValueError(
            "pass the bundles to serve with --conf models <name>[,<name>...], e.g. --conf models bcv_segmentation"
        )
    roots = [Path(app_dir) / "model"]
    if conf.get("bundles_dir"):
        bundles_dir = Path(str(conf["bundles_dir"])).expanduser()
        if not bundles_dir.is_dir():
            raise ValueError(f"--conf bundles_dir: {bundles_dir} is not a folder.")
        roots.append(bundles_dir)
    found = {}
    for name in names:
        path = next((r / name for r in roots if (r / name / "configs" / "metadata.json").is_file()), None)
        if path is None:
            raise ValueError(
                f"--conf models: bundle '{name}' not found in {[str(r) for r in roots]}; pass --conf bundles_dir DIR."
            )
        found[name] = str(path)
    return found


def is_selector_bundle(path: str) -> bool:
    """A bundle whose inference config defines ``selector`` (served by :class:`SliceSelectionInferTask`)."""
    from monai.bundle import ConfigParser

    return "selector" in ConfigParser.load_config_file(str(inference_config(path)))


class UniMedILabelApp(MONAILabelApp):
    """MONAI Label app for the unimedi-monai bundles, modelled on MONAI Label's ``monaibundle`` sample app.

    Segmentation bundles are served with MONAI Label's ``BundleInferTask`` (through
    :class:`UniMedIBundleInferTask`): 3D CT bundles (``bcv_segmentation``) and the 2D X-ray bundle
    (``rsna_segmentation``, a 2D task: ``BundleInferTask`` takes the dimension from the length of
    its metadata's input ``spatial_shape``); a bundle with a ``selector`` with
    :class:`SliceSelectionInferTask`. Training from MONAI Label is not offered (the bundles train with
    ``monai.bundle run``). ``--conf`` keys: ``models`` (comma-separated bundle names),
    ``bundles_dir`` (a folder of bundles, searched after ``<app_dir>/model``) and
    ``<name>.<key>`` config overrides of one bundle (e.g. ``--conf slice_selection.top_k 6``,
    ``--conf bcv_segmentation.overlap 0.25``).

    Example::

        monailabel start_server --app unimedi_monai/label/app_dir --studies /data/ct \\
            --conf models bcv_segmentation,slice_selection
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.bundles = resolve_bundles(app_dir, conf)
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name=f"unimedi-monai bundles ({unimedi_monai.__version__})",
            description="UniMedI bundles (3D and 2D segmentation, slice selection) served with MONAI Label",
            version=unimedi_monai.__version__,
        )

    def _overrides(self, name: str) -> dict[str, Any]:
        import ast

        out = {}
        for key, value in self.conf.items():
            if key.startswith(f"{name}."):
                try:
                    out[key[len(name) + 1 :]] = ast.literal_eval(value)
                except (ValueError, SyntaxError):
                    out[key[len(name) + 1 :]] = value
        return out

    def init_infers(self) -> dict[str, InferTask]:
        infers: dict[str, InferTask] = {}
        for name, path in self.bundles.items():
            overrides = self._overrides(name)
            if is_selector_bundle(path):
                task: InferTask = SliceSelectionInferTask(path, self.conf, overrides=overrides)
            else:
                task = UniMedIBundleInferTask(path, self.conf, overrides=overrides)
            if not task.is_valid():
                raise ValueError(
                    f"bundle '{name}' ({path}) cannot be served: it needs configs/inference.yaml and models/model.pt "
                    "(or model.ts)."
                )
            logger.info("+++ Adding Inferer:: %s => %s", name, path)
            infers[name] = task
        return infers

    def init_trainers(self) -> dict[str, TrainTask]:
        return {}

    def init_strategies(self) -> dict[str, Strategy]:
        return {"random": Random(), "first": First()}
