# SPDX-License-Identifier: Apache-2.0
"""MONAI Label app folder for ``monailabel start_server --app <this folder>``; the app is
:class:`unimedi_monai.label.app.UniMedILabelApp`."""

from unimedi_monai.label.app import UniMedILabelApp  # noqa: F401  (MONAI Label looks for a MONAILabelApp subclass here)
