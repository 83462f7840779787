"""CT slice selection as a tool: per-slice scores in the file's own numbering, top-k slices, pictures, evaluation."""

from unimedi_monai.slice_selection.cases import demo_cases, evaluation_cases
from unimedi_monai.slice_selection.evaluate import evaluate_slice_selection
from unimedi_monai.slice_selection.network import SLICE_SCORE_MODES, SliceSelectionNet
from unimedi_monai.slice_selection.plot import plot_slice_selection
from unimedi_monai.slice_selection.selector import SliceSelection, SliceSelector, output_files, output_stem, read_query

__all__ = [
    "SLICE_SCORE_MODES",
    "SliceSelection",
    "SliceSelectionNet",
    "SliceSelector",
    "demo_cases",
    "evaluate_slice_selection",
    "evaluation_cases",
    "output_files",
    "output_stem",
    "plot_slice_selection",
    "read_query",
]
