# SPDX-License-Identifier: Apache-2.0
"""CT slice selection as a tool: per-slice scores in the file's own numbering, top-k slices, pictures, evaluation."""

from __future__ import annotations

from unimedi_monai.lazy_exports import lazy_exports

_EXPORTS = {
    "demo_cases": "cases",
    "evaluation_cases": "cases",
    "evaluate_slice_selection": "evaluate",
    "SLICE_SCORE_MODES": "network",
    "SliceSelectionNet": "network",
    "plot_slice_selection": "plot",
    "SliceSelection": "selector",
    "SliceSelector": "selector",
    "output_files": "selector",
    "output_stem": "selector",
    "read_query": "selector",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
