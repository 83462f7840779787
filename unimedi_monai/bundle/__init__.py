# SPDX-License-Identifier: Apache-2.0
"""Helpers the bundle configs call: locating the bundle folder, checking the command line, guarding outputs.

Every bundle of this repository calls them first in its ``initialize`` list::

  initialize:
    - "$unimedi_monai.bundle.check_overrides()"
    - "$unimedi_monai.bundle.guard_outputs({'ckpt_dir': @ckpt_dir, 'log_dir': @log_dir}, {'dataset_dir': @dataset_dir})"
    - "$monai.utils.set_determinism(seed=@seed)"

:func:`check_overrides` refuses a mistyped ``--key`` on the command line (MONAI would silently add it
as a new, unused key); :func:`guard_outputs` refuses output folders inside the data folders and
takes a lock on each output folder so that two runs never write into the same one.

The configs reach every helper as ``unimedi_monai.bundle.<name>``; each lives in the submodule named
after what it holds:

- :mod:`.root`: :func:`find_bundle_root`, the folder of the running bundle;
- :mod:`.command_line`: the ``monai.bundle run`` command line of this process (:func:`parse_overrides`);
- :mod:`.overrides`: :func:`check_overrides`, refusing an unknown ``--key``;
- :mod:`.values`: :func:`check_values` and the ranges of the numeric keys (:data:`NUMERIC_KEYS`),
  :func:`check_spatial_values` for spacings, ROI sizes and windows;
- :mod:`.config_item`: :func:`bundle_item`, one parsed item of a bundle config (e.g. its transforms);
- :mod:`.errors`: the one-line reason of a refused run (:func:`install_excepthook`);
- :mod:`.outputs`: :func:`guard_outputs` and :func:`check_dataset_dir`;
- :mod:`.run_lock`: the lock of an output folder (:func:`acquire_lock`);
- :mod:`.output_names`: one output file name per input (:func:`per_input_outputs`).
"""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS = {
    "find_bundle_root": "root",
    "RUN_ARGUMENTS": "command_line",
    "parse_overrides": "command_line",
    "ConfigKeyError": "overrides",
    "config_keys": "overrides",
    "check_overrides": "overrides",
    "NUMERIC_KEYS": "values",
    "check_values": "values",
    "SPATIAL_KEYS": "values",
    "check_spatial_values": "values",
    "bundle_item": "config_item",
    "FULL_TRACEBACK_ENV": "errors",
    "root_error": "errors",
    "install_excepthook": "errors",
    "_excepthook": "errors",
    "OutputFolderError": "run_lock",
    "LOCK_FILENAME": "run_lock",
    "acquire_lock": "run_lock",
    "release_locks": "run_lock",
    "check_dataset_dir": "outputs",
    "guard_outputs": "outputs",
    "IMAGE_SUFFIXES": "output_names",
    "output_stem": "output_names",
    "unique_output_stems": "output_names",
    "per_input_outputs": "output_names",
}

__all__ = sorted(k for k in _EXPORTS if not k.startswith("_"))
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
