# SPDX-License-Identifier: Apache-2.0
"""
Built-in synthetic demo dataset: chest radiographs (PNG), chest CTs (NIfTI) and paired reports.

The pre-training bundle uses this set when no user data is given. The images are synthetic but
*learnable*: the anatomy is a left-right mirror-symmetric template, so the lesion is the only
lateralised anatomy, and every report states what is drawn: the finding, its side, its zone and
its size in mm. By default (``xray_variation="template"``) every chest is the same template with a
small global jitter, so the lesion is nearly all that differs between two images. With
``xray_variation="patient"`` the X-rays vary the way real radiographs do (framing, zoom and
rotation, body habitus, heart size, exposure, burned-in markers and ECG electrodes): two demo
X-rays then correlate about as much as two real ones. The CTs keep a small global jitter only.

Conventions (also written into ``datalist.json`` under ``"conventions"``):

- X-ray: 256 x 256 8-bit PNG at 1.4 mm per pixel, displayed in the radiological convention
  (PA view seen from the front): row 0 is superior, and the patient's LEFT is on the IMAGE RIGHT
  (large column index); the patient's right lung is on the image left. Zones are the upper,
  middle and lower thirds of the lung field's vertical extent.
- CT: int16 HU volume of shape 128 x 128 x 48 with a diagonal, positive affine
  (2.5 x 2.5 x 5.0 mm), i.e. RAS+ world axes (nibabel's convention): the first voxel axis points
  to the patient's RIGHT, the second to Anterior, the third to Superior. So the patient's right lung
  is at large first-axis index, the posterior (dorsal) side at small second-axis index, and a
  higher slice index (last axis) is more superior. ``Orientationd(axcodes="RAS")`` keeps the
  array unchanged. Zones are the thirds of the lung z-range (upper = highest slice indices).

Example::

    python -m unimedi_monai.data.demo ./demo_data --n-xray 240 --n-ct 120 --seed 0

Modules: :mod:`~unimedi_monai.data.demo.spec` (findings, sides, zones, sizes, geometry),
:mod:`~unimedi_monai.data.demo.xray` and :mod:`~unimedi_monai.data.demo.ct` (rendering),
:mod:`~unimedi_monai.data.demo.report_templates` (reports), :mod:`~unimedi_monai.data.demo.plan`
(cases, patients, split), :mod:`~unimedi_monai.data.demo.generate` (files, datalist, manifest),
:mod:`~unimedi_monai.data.demo.cache` (generate-once folders, shared with the segmentation demos) and
:mod:`~unimedi_monai.data.demo.cli` (the command line).
"""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS = {
    "main": "cli",
    "ct_affine": "ct",
    "synth_ct": "ct",
    "FORMAT_VERSION": "generate",
    "generate_demo_dataset": "generate",
    "make_report": "report_templates",
    "CT_SHAPE": "spec",
    "CT_SPACING_MM": "spec",
    "FINDINGS": "spec",
    "SIDES": "spec",
    "SIZE_RANGES_MM": "spec",
    "XRAY_PIXEL_MM": "spec",
    "XRAY_SHAPE": "spec",
    "ZONES": "spec",
    "synth_xray": "xray",
    "XRAY_VARIATIONS": "xray",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
