from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from unimedi_monai.data.datalist import (
    is_report_path,
    load_datalist,
    read_datalist_json,
    split_by_patient,
    write_datalist,
)


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    """A dataset folder with two X-ray files, a CT DICOM series folder and a report .txt file."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"jpg")
    (tmp_path / "images" / "b.png").write_bytes(b"png")
    (tmp_path / "ct_series").mkdir()
    (tmp_path / "ct_series" / "1.dcm").write_bytes(b"dcm")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "b.txt").write_text("Pleural effusión.\n", encoding="utf-8")
    return tmp_path


def _write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def test_write_then_load_roundtrip(dataset: Path):
    items = [
        {
            "image": str(dataset / "images" / "a.jpg"),
            "report": "No acute process.",
            "modality": "XRay",
            "patient_id": "p1",
            "finding": "normal",
        },
        {
            "image": dataset / "images" / "b.png",
            "report": str(dataset / "reports" / "b.txt"),
            "modality": "xray",
            "patient_id": "p2",
        },
    ]
    val = [
        {
            "image": str(dataset / "ct_series"),
            "report": "Ground-glass opacities.",
            "modality": "CT",
            "num_slices": 3,
            "lesion_slices": [0, 2],
        }
    ]
    sections = {"training": items, "validation": val}
    path = write_datalist(dataset / "datalist.json", sections, name="toy", description="d")
    assert path == dataset / "datalist.json"

    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["name"] == "toy" and stored["description"] == "d"
    # paths inside the datalist's folder are stored relative to it, with POSIX separators
    assert stored["training"][0]["image"] == "images/a.jpg"
    assert stored["training"][1]["image"] == "images/b.png"
    assert stored["training"][1]["report"] == "reports/b.txt"
    assert stored["validation"][0]["image"] == "ct_series"

    loaded = load_datalist(dataset)
    assert set(loaded) == {"training", "validation"}
    a, b = loaded["training"]
    assert a["image"] == str(dataset / "images" / "a.jpg") and Path(a["image"]).is_file()
    assert a["modality"] == "xray" and a["finding"] == "normal" and a["patient_id"] == "p1"
    assert b["report"] == "Pleural effusión.\n"  # read from the .txt file as UTF-8
    (ct,) = loaded["validation"]
    assert ct["modality"] == "ct" and Path(ct["image"]).is_dir()
    assert ct["num_slices"] == 3 and ct["lesion_slices"] == [0, 2]


def test_write_keeps_outside_paths_absolute_and_creates_parents(tmp_path: Path, dataset: Path):
    outside = tmp_path.parent / f"{tmp_path.name}_outside.jpg"
    out = dataset / "lists" / "nested" / "dl.json"
    write_datalist(
        out,
        {
            "training": [
                {"image": str(outside), "report": "r", "modality": "xray"},
                {"image": "relative/kept.jpg", "report": "r", "modality": "xray"},
            ]
        },
    )
    stored = json.loads(out.read_text(encoding="utf-8"))
    assert stored["training"][0]["image"] == str(outside)
    assert stored["training"][1]["image"] == "relative/kept.jpg"


def test_write_is_atomic(dataset: Path):
    out = dataset / "out" / "datalist.json"
    write_datalist(out, {"training": [{"image": "images/a.jpg", "report": "r", "modality": "xray"}]})
    assert os.listdir(out.parent) == ["datalist.json"]
    before = out.read_bytes()
    # a value that cannot be serialised fails before anything replaces the file, leaving no temp file
    with pytest.raises(ValueError, match="not JSON serialisable"):
        write_datalist(out, {"training": [{"image": "x.jpg", "report": "r", "modality": "xray", "bad": object()}]})
    assert os.listdir(out.parent) == ["datalist.json"]
    assert out.read_bytes() == before
    with pytest.raises(ValueError, match="collide with section names"):
        write_datalist(out, {"training": []}, training="meta")


def test_load_named_datalist_and_optional_validation(dataset: Path):
    _write_json(dataset / "other.json", {"training": [{"image": "images/a.jpg", "report": "r", "modality": "xray"}]})
    loaded = load_datalist(dataset, "other.json")
    assert loaded["validation"] == [] and len(loaded["training"]) == 1
    loaded = load_datalist(str(dataset), dataset / "other.json", sections=("training",))
    assert list(loaded) == ["training"]
    with pytest.raises(ValueError, match=r"other\.json has no section 'test'"):
        load_datalist(dataset, "other.json", sections=("training", "test"))


def test_missing_datalist_file(dataset: Path):
    with pytest.raises(FileNotFoundError) as err:
        load_datalist(dataset)
    message = str(err.value)
    assert str(dataset / "datalist.json") in message
    assert "must contain 'datalist.json'" in message and "'datalist' key" in message
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_datalist(dataset, "nope.json")


def test_invalid_json_names_file_and_line(dataset: Path):
    (dataset / "datalist.json").write_text('{\n  "training": [\n    {"image": "a.jpg",}\n  ]\n}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"datalist\.json is not valid JSON: .* line 3"):
        load_datalist(dataset)
    (dataset / "datalist.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="must hold a JSON object"):
        read_datalist_json(dataset / "datalist.json")


def test_missing_training_section(dataset: Path):
    _write_json(dataset / "datalist.json", {"validation": []})
    with pytest.raises(ValueError, match=r"has no section 'training'"):
        load_datalist(dataset)


@pytest.mark.parametrize("missing", ["image", "report", "modality"])
def test_missing_key_names_file_section_index_key(dataset: Path, missing: str):
    entry = {"image": "images/a.jpg", "report": "r", "modality": "xray"}
    bad = {k: v for k, v in entry.items() if k != missing}
    _write_json(dataset / "datalist.json", {"training": [entry], "validation": [entry, entry, bad]})
    with pytest.raises(ValueError) as err:
        load_datalist(dataset)
    message = str(err.value)
    assert str(dataset / "datalist.json") in message
    assert "section 'validation'" in message and "entry 2" in message and f"missing key '{missing}'" in message


def test_item_value_errors(dataset: Path):
    def load_one(entry):
        _write_json(
            dataset / "datalist.json",
            {"training": [{"image": "images/a.jpg", "report": "r", "modality": "xray"}, entry]},
        )
        return load_datalist(dataset)

    with pytest.raises(ValueError, match=r"entry 1: key 'modality' is 'mri'"):
        load_one({"image": "images/a.jpg", "report": "r", "modality": "mri"})
    with pytest.raises(FileNotFoundError, match=r"entry 1: key 'image' names .*missing\.jpg"):
        load_one({"image": "images/missing.jpg", "report": "r", "modality": "xray"})
    with pytest.raises(FileNotFoundError, match=r"entry 1: key 'report' names the file .*nothere\.txt"):
        load_one({"image": "images/a.jpg", "report": "reports/nothere.txt", "modality": "xray"})
    with pytest.raises(ValueError, match=r"entry 1: key 'report' is empty"):
        load_one({"image": "images/a.jpg", "report": "  \n ", "modality": "xray"})
    with pytest.raises(ValueError, match=r"entry 1: key 'image' must be a non-empty path"):
        load_one({"image": 5, "report": "r", "modality": "xray"})
    # without check_files, a missing image is accepted (and made absolute)
    _write_json(
        dataset / "datalist.json", {"training": [{"image": "images/missing.jpg", "report": "r", "modality": "xray"}]}
    )
    (item,) = load_datalist(dataset, check_files=False)["training"]
    assert item["image"] == str(dataset / "images" / "missing.jpg")


def test_absolute_paths_and_multiline_text_ending_in_txt(dataset: Path, tmp_path: Path):
    text = "Findings in attached notes.txt\nsee report.txt"
    _write_json(
        dataset / "datalist.json",
        {
            "training": [
                {
                    "image": str(dataset / "images" / "a.jpg"),
                    "report": str(dataset / "reports" / "b.txt"),
                    "modality": "xray",
                },
                {"image": "images/b.png", "report": text, "modality": "xray"},
            ]
        },
    )
    first, second = load_datalist(dataset)["training"]
    assert first["report"] == "Pleural effusión.\n"
    assert second["report"] == text  # multi-line text is never mistaken for a path
    assert is_report_path(" reports/x.TXT ") and not is_report_path(text) and not is_report_path("normal.")


def _items(n_patients: int, per_patient: int = 3):
    return [
        {"image": f"{p}_{k}.jpg", "patient_id": f"pat{p:03d}"} for p in range(n_patients) for k in range(per_patient)
    ]


def test_split_by_patient_is_disjoint_deterministic_and_order_independent():
    items = _items(20)
    train, val = split_by_patient(items, 0.2, seed=0)
    assert len(train) + len(val) == len(items)
    train_p, val_p = {i["patient_id"] for i in train}, {i["patient_id"] for i in val}
    assert not train_p & val_p
    assert len(val_p) == 4  # round(0.2 * 20) patients
    # deterministic, independent of the input order, and items keep their order on each side
    again_train, again_val = split_by_patient(list(reversed(items)), 0.2, seed=0)
    assert {i["image"] for i in again_val} == {i["image"] for i in val}
    assert val == [i for i in items if i["patient_id"] in val_p]
    # another seed picks other patients
    other = {i["patient_id"] for i in split_by_patient(items, 0.2, seed=1)[1]}
    assert other != val_p


def test_split_by_patient_edge_cases():
    items = _items(3)
    train, val = split_by_patient(items, 0.0, seed=0)
    assert len(train) == 9 and val == []
    train, val = split_by_patient(items, 0.01, seed=0)  # at least one validation patient
    assert len({i["patient_id"] for i in val}) == 1 and len(train) == 6
    train, val = split_by_patient(items, 0.9, seed=0)  # at least one training patient
    assert len({i["patient_id"] for i in train}) == 1
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\)"):
        split_by_patient(items, 1.0, seed=0)
    with pytest.raises(ValueError, match="entry 1 has no 'subject' key"):
        split_by_patient([{"subject": "a"}, {"patient_id": "b"}], 0.5, seed=0, key="subject")
