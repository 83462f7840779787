"""The 2D mask layout of :class:`unimedi_monai.label.infer_tasks.UniMedIBundleInferTask` through MONAI Label's own writer.

An asymmetric ``(1, H, W)`` class-id mask (``H != W``, one corner marked) goes through
``mask_2d_for_label_writer`` and MONAI Label 0.8.5's ``Writer``; the PNG it writes must hold the same
rows and columns, and bad predictions must be refused with a clear error. Runs in the MONAI Label
environment (a subprocess), so only through ``bash scripts/run_label_tests.sh`` (``UNIMEDI_LABEL_TESTS=1``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
LABEL_PYTHON = Path(os.environ.get("UNIMEDI_LABEL_PYTHON", REPO_ROOT / ".venv-label" / "bin" / "python"))

pytestmark = pytest.mark.skipif(
    os.environ.get("UNIMEDI_LABEL_TESTS") != "1",
    reason="needs the MONAI Label environment: run `bash scripts/run_label_tests.sh` (needs scripts/setup_label_env.sh)",
)

SCRIPT = r"""
import numpy as np, torch
from monai.data import MetaTensor
from monailabel.transform.writer import Writer
from PIL import Image
from unimedi_monai.label.infer_tasks import mask_2d_for_label_writer

mask = np.zeros((1, 5, 7), dtype=np.float32)   # 5 rows, 7 columns
mask[0, 0, :3] = 1                              # top-left, along the first row
mask[0, 4, 6] = 2                               # bottom-right pixel, another class
out = mask_2d_for_label_writer(MetaTensor(torch.from_numpy(mask)))
assert out.shape == (7, 5) and out.dtype == np.uint8, (out.shape, out.dtype)
path, _ = Writer(label="pred")({"pred": out, "image_path": "/studies/xray.png", "result_extension": ".png"})
written = np.asarray(Image.open(path))
assert written.shape == (5, 7), written.shape
np.testing.assert_array_equal(written, mask[0].astype(np.uint8))
assert mask_2d_for_label_writer(np.full((2, 3), 300.0)).dtype == np.uint16
for bad, words in ((np.zeros((2, 5, 7)), "shape (2, 5, 7)"), (np.full((5, 7), 0.5), "class ids"), (-np.ones((5, 7)), "class ids")):
    try:
        mask_2d_for_label_writer(bad)
    except ValueError as err:
        assert words in str(err), err
    else:
        raise AssertionError(f"no error for {bad.shape}")
print("ok")
"""


def test_2d_mask_keeps_rows_and_columns_through_monailabel_writer(tmp_path):
    if not LABEL_PYTHON.is_file():
        pytest.fail(f"MONAI Label environment missing ({LABEL_PYTHON}); run bash scripts/setup_label_env.sh")
    env = dict(os.environ, PYTHONPATH=os.environ.get("PYTHONPATH", str(REPO_ROOT)))
    run = subprocess.run([str(LABEL_PYTHON), "-c", SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stdout[-2000:] + run.stderr[-4000:]
