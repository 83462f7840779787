"""The input listing of the inference workflows (unimedi_monai.data.inputs) and its three users."""

from __future__ import annotations

from pathlib import Path

import pytest

from unimedi_monai.classification import list_input_images
from unimedi_monai.data.inputs import folder_inputs, infer_modality, input_paths
from unimedi_monai.packaging import list_images
from unimedi_monai.segmentation.io import inference_items


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    (tmp_path / "sub").mkdir()
    (tmp_path / "series").mkdir()
    for name in ("a.png", "sub/b.JPG", "c.nii.gz", ".hidden.png", "notes.csv"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.txt").write_text("a.png\n\nc.nii.gz\n", encoding="utf-8")
    return tmp_path


def test_each_workflow_keeps_its_forms(folder: Path):
    assert list_input_images(None, folder) == [str(folder / "a.png"), str(folder / "sub" / "b.JPG")]  # recursive, any case
    assert list_input_images(str(folder / "*.png")) == [str(folder / "a.png")]  # a glob pattern
    assert list_images(folder) == [  # one level, DICOM-series folders as CTs
        {"image": str(folder / "a.png"), "modality": "xray"},
        {"image": str(folder / "c.nii.gz"), "modality": "ct"},
        {"image": str(folder / "series"), "modality": "ct"},
        {"image": str(folder / "sub"), "modality": "ct"},
    ]
    assert inference_items(str(folder / "list.txt")) == [{"image": str(folder / "a.png")}, {"image": str(folder / "c.nii.gz")}]
    assert infer_modality(folder / "x.dicom") == "xray" and infer_modality(folder / "v.MHA") == "ct"


def test_errors_name_the_key_and_the_input(folder: Path):
    with pytest.raises(FileNotFoundError, match=r"config key 'input_files': input 1 '.*zz\*\.png' does not exist \(or the pattern"):
        list_input_images([str(folder / "a.png"), str(folder / "zz*.png")])
    with pytest.raises(FileNotFoundError, match="config key 'input': input 0 '.*gone.nii' does not exist; set `input`"):
        input_paths(str(folder / "gone.nii"), "input", hint="; set `input` to files")
    with pytest.raises(FileNotFoundError, match="config key 'input_dir': .*nowhere is not a folder"):
        list_images(folder / "nowhere")
    with pytest.raises(ValueError, match="config key 'input_dir' is not set"):
        list_images(None)
    with pytest.raises(ValueError, match=r"config key 'input_dir': no \.png files in"):
        folder_inputs(folder / "series", "input_dir", (".png",))
    with pytest.raises(ValueError, match="set config key 'input_files'"):
        list_input_images(None, None)
