"""The shared inference input keys ``datalist`` / ``dataset_dir`` (unimedi_monai.data.inputs.list_inputs)."""

from __future__ import annotations

import pytest

from unimedi_monai.data.inputs import infer_modality, list_inputs


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_datalist_forms(tmp_path):
    a, b = _touch(tmp_path / "a.png"), _touch(tmp_path / "sub" / "b.png")
    ct = _touch(tmp_path / "ct.nii.gz")
    assert list_inputs(str(a)) == [str(a)]
    assert list_inputs([str(b), str(a)]) == [str(b), str(a)]  # a list keeps its order
    assert list_inputs(str(tmp_path / "*.png")) == [str(a)]  # a glob
    (tmp_path / "list.txt").write_text(f"sub/b.png\n\n{ct}\n")
    assert list_inputs(str(tmp_path / "list.txt")) == [
        str(tmp_path / "sub" / "b.png"),
        str(ct),
    ]  # relative to the listing
    odd = _touch(tmp_path / "odd[1].png")  # glob characters in a real file name
    assert list_inputs(str(odd)) == [str(odd)]
    assert list_inputs(str(a), str(tmp_path / "absent")) == [str(a)]  # datalist wins over dataset_dir


def test_dataset_dir_by_modality(tmp_path):
    xr = [_touch(tmp_path / "x.png"), _touch(tmp_path / "deep" / "y.dcm")]
    ct = _touch(tmp_path / "ct.nii.gz")
    series = tmp_path / "series"
    _touch(series / "1.dcm")
    _touch(tmp_path / "notes.txt")
    assert list_inputs(None, tmp_path, modality="xray") == sorted(str(p) for p in xr + [series / "1.dcm"])
    assert list_inputs(None, tmp_path, modality="ct") == sorted([str(ct), str(tmp_path / "deep"), str(series)])
    assert list_inputs([], tmp_path, modality="any") == sorted(str(p) for p in [ct, tmp_path / "deep", series, xr[0]])
    assert infer_modality(ct) == "ct" and infer_modality(xr[0]) == "xray" and infer_modality(series) == "ct"


def test_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="set config key 'datalist'.*or 'dataset_dir'"):
        list_inputs(None, None)
    with pytest.raises(FileNotFoundError, match=r"config key 'datalist', entry 1: '.*missing.png' does not exist"):
        list_inputs([str(_touch(tmp_path / "a.png")), str(tmp_path / "missing.png")])
    with pytest.raises(FileNotFoundError, match="config key 'dataset_dir': .*nowhere is not a folder"):
        list_inputs(None, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config key 'dataset_dir': .*empty holds no input"):
        list_inputs(None, tmp_path / "empty", modality="xray")
    with pytest.raises(ValueError, match="modality must be one of"):
        list_inputs(str(tmp_path / "a.png"), modality="mri")
