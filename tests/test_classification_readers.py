"""COVIDx / CheXpert / RSNA readers on fixture files in the published formats, patient splits and label fractions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unimedi_monai.classification import get_task, prepare_splits, training_fraction
from unimedi_monai.data.adapters.chexpert import CHEXPERT_COMPETITION, load_chexpert
from unimedi_monai.data.adapters.covidx import load_covidx, read_covidx_split
from unimedi_monai.data.adapters.rsna_pneumonia import load_rsna_pneumonia
from unimedi_monai.data.fractions import fraction_count


def _png(path: Path, value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((32, 40), value, dtype=np.uint8)).save(path)


def _covidx(root: Path, train_lines: list[str], test_lines: list[str]) -> Path:
    for split, lines in (("train", train_lines), ("test", test_lines)):
        (root / f"{split}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
        for line in lines:
            if line.strip():
                _png(root / split / line.split()[1])
    return root


@pytest.fixture()
def covidx_dir(tmp_path) -> Path:
    labels = ["normal", "pneumonia", "COVID-19"]
    train = [f"{p} img_{p}_{k}.png {labels[p % 3]} {'cohen' if p % 2 else 'rsna'}" for p in range(30) for k in range(2)]
    test = [f"{p} img_{p}.png {labels[p % 3]} sirm" for p in range(100, 106)]
    return _covidx(tmp_path / "covidx", train, test)


def test_covidx_reads_published_layout(covidx_dir):
    sections = load_covidx(covidx_dir, "3class")
    train, test = sections["training"], sections["test"]
    assert len(train) == 60 and len(test) == 6
    first = train[0]
    assert first["label"] == 0 and first["class_name"] == "normal" and first["patient_id"] == "0"
    assert first["source"] == "rsna" and Path(first["image"]).is_file()
    assert Counter(i["label"] for i in train) == {0: 20, 1: 20, 2: 20}
    two = load_covidx(covidx_dir, "2class")["training"]  # a 3-class file read as positive / negative
    assert Counter(i["class_name"] for i in two) == {"negative": 40, "positive": 20}


def test_covidx_names_leaving_dataset_dir_are_logged_or_refused(covidx_dir, tmp_path, caplog):
    """A train.txt name with '..' that leads outside dataset_dir: followed and logged by default,
    refused with allow_outside_dataset_dir=False, naming the file and the line."""
    _png(tmp_path / "elsewhere" / "x.png")
    lines = (covidx_dir / "train.txt").read_text().splitlines()
    lines.append("999 ../../elsewhere/x.png normal sirm")
    (covidx_dir / "train.txt").write_text("\n".join(lines) + "\n")
    with caplog.at_level("INFO"):
        train = load_covidx(covidx_dir, "3class")["training"]
    assert len(train) == 61
    messages = [r.getMessage() for r in caplog.records]
    assert any("train.txt, line 61" in m and "outside dataset_dir" in m for m in messages)
    assert any("1 paths lead outside dataset_dir" in m for m in messages)
    with pytest.raises(
        ValueError,
        match=r"train.txt, line 61: .*x.png' resolves to .*, outside dataset_dir .*allow_outside_dataset_dir is false",
    ):
        load_covidx(covidx_dir, "3class", allow_outside_dataset_dir=False)


def test_covidx_two_class_file_and_errors(tmp_path):
    root = _covidx(tmp_path / "b", ["1 a.png positive src", "2 b.png negative src"], ["3 c.png positive src"])
    assert [i["label"] for i in load_covidx(root, "2class")["training"]] == [1, 0]
    with pytest.raises(ValueError, match=r"train.txt, line 1: unknown label 'positive'"):
        load_covidx(root, "3class")
    (root / "train.txt").write_text("1 a.png positive src\n2 b.png\n")
    with pytest.raises(ValueError, match=r"train.txt, line 2: expected 'patientid filename label source'"):
        read_covidx_split(root / "train.txt", root / "train", "2class")
    (root / "train.txt").write_text("1 a.png positive src\n2 missing.png negative src\n")
    with pytest.raises(FileNotFoundError, match=r"line 2: image .*missing.png does not exist"):
        read_covidx_split(root / "train.txt", root / "train", "2class")
    (root / "train.txt").write_text("3 a.png positive src\n")
    with pytest.raises(ValueError, match="patients are in both train.txt and test.txt"):
        load_covidx(root, "2class")


def _chexpert(root: Path) -> Path:
    header = (
        "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
        "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,"
        "Pleural Other,Fracture,Support Devices"
    )
    cols = header.split(",")

    def row(path: str, view: str, values: dict[str, str]) -> str:
        cells = {
            "Path": path,
            "Sex": "Female",
            "Age": "68",
            "Frontal/Lateral": view,
            "AP/PA": "AP" if view == "Frontal" else "",
        }
        cells.update(values)
        return ",".join(cells.get(c, "") for c in cols)

    train = [
        row(
            "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg",
            "Frontal",
            {"Atelectasis": "-1.0", "Cardiomegaly": "1.0", "Edema": "0.0", "Pleural Effusion": "1.0"},
        ),
        row("CheXpert-v1.0-small/train/patient00001/study1/view2_lateral.jpg", "Lateral", {"Edema": "1.0"}),
        row(
            "CheXpert-v1.0-small/train/patient00002/study1/view1_frontal.jpg",
            "Frontal",
            {"No Finding": "1.0", "Consolidation": "-1.0"},
        ),
        row(
            "CheXpert-v1.0-small/train/patient00003/study2/view1_frontal.jpg",
            "Frontal",
            {"Edema": "1.0", "Consolidation": "0.0"},
        ),
    ]
    valid = [
        row(
            "CheXpert-v1.0-small/valid/patient64541/study1/view1_frontal.jpg",
            "Frontal",
            {"Cardiomegaly": "1.0", "Atelectasis": "0.0"},
        )
    ]
    (root).mkdir(parents=True)
    (root / "train.csv").write_text("\n".join([header] + train) + "\n")
    (root / "valid.csv").write_text("\n".join([header] + valid) + "\n")
    for line in train + valid:
        _png(root / Path(*Path(line.split(",")[0]).parts[1:]).with_suffix(".jpg"))
    return root


@pytest.mark.parametrize("policy,uncertain", [("ones", 1.0), ("zeros", 0.0), ("ignore", -1.0)])
def test_chexpert_labels_and_uncertainty_policy(tmp_path, policy, uncertain):
    root = _chexpert(tmp_path / "CheXpert-v1.0-small")
    sections = load_chexpert(root, uncertain=policy)
    train = sections["training"]
    assert len(train) == 3 and all(i["view"] == "Frontal" for i in train)  # the lateral view is dropped
    assert CHEXPERT_COMPETITION == ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
    assert train[0]["label"] == [uncertain, 1.0, 0.0, 0.0, 1.0]
    assert train[1]["label"] == [0.0, 0.0, uncertain, 0.0, 0.0]  # blank cells are negatives
    assert train[2]["label"] == [0.0, 0.0, 0.0, 1.0, 0.0]
    assert [i["patient_id"] for i in train] == ["patient00001", "patient00002", "patient00003"]
    assert sections["test"][0]["label"] == [0.0, 1.0, 0.0, 0.0, 0.0] and Path(sections["test"][0]["image"]).is_file()
    assert len(load_chexpert(root, policy, frontal_only=False)["training"]) == 4


def test_chexpert_errors_name_row_and_column(tmp_path):
    root = _chexpert(tmp_path / "CheXpert-v1.0-small")
    text = (root / "train.csv").read_text().replace("1.0,", "2.0,", 1)
    (root / "train.csv").write_text(text)
    with pytest.raises(ValueError, match=r"train.csv, row 2, column '.*': '2.0' is not one of 1, 0, -1 or blank"):
        load_chexpert(root)
    (root / "train.csv").write_text("Path,Sex\nx.jpg,F\n")
    with pytest.raises(ValueError, match=r"header lacks the columns \['Frontal/Lateral', 'Atelectasis'"):
        load_chexpert(root)
    with pytest.raises(ValueError, match="uncertain policy must be one of"):
        load_chexpert(root, uncertain="maybe")


def _dicom(path: Path, value: int) -> None:
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "CR"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 64, 64, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.full((64, 64), value, dtype=np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)


@pytest.fixture()
def rsna_dir(tmp_path) -> Path:
    root = tmp_path / "rsna"
    rows = ["patientId,x,y,width,height,Target"]
    for p in range(20):
        pid = f"pid-{p:03d}"
        if p % 4 == 0:  # positives: two boxes each
            rows += [f"{pid},264.0,152.0,213.0,379.0,1", f"{pid},562.0,152.0,256.0,453.0,1"]
        else:
            rows.append(f"{pid},,,,,0")
        _dicom(root / "stage_2_train_images" / f"{pid}.dcm", 40 + p)
    (root / "stage_2_train_labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_rsna_patient_level_labels_and_dicom(rsna_dir):
    from conftest import classification_pipeline

    items = load_rsna_pneumonia(rsna_dir)["training"]
    assert len(items) == 20  # one item per patient, several rows for positives
    assert [i["label"] for i in items[:4]] == [1, 0, 0, 0] and items[0]["num_boxes"] == 2 and items[1]["num_boxes"] == 0
    out = classification_pipeline(image_size=64)(items[0])
    assert tuple(out["image"].shape) == (1, 64, 64) and int(out["label"]) == 1
    (rsna_dir / "stage_2_train_labels.csv").write_text("patientId,x,y,width,height,Target\npid-000,,,,,yes\n")
    with pytest.raises(ValueError, match=r"stage_2_train_labels.csv, row 2, column 'Target': 'yes' must be 0 or 1"):
        load_rsna_pneumonia(rsna_dir)


@pytest.mark.parametrize("dataset", ["covidx", "rsna"])
def test_splits_are_patient_disjoint(dataset, covidx_dir, rsna_dir):
    task = get_task(dataset)
    splits = prepare_splits(
        task, covidx_dir if dataset == "covidx" else rsna_dir, val_fraction=0.2, test_fraction=0.25, seed=3
    )
    patients = {name: {i["patient_id"] for i in items} for name, items in splits.items()}
    assert all(patients.values())
    assert not patients["training"] & patients["validation"] and not patients["training"] & patients["test"]
    assert not patients["validation"] & patients["test"]
    total = sum(len(v) for v in splits.values())
    assert total == (66 if dataset == "covidx" else 20)


def test_chexpert_split_and_task(tmp_path):
    root = _chexpert(tmp_path / "CheXpert-v1.0-small")
    task = get_task("chexpert")
    assert task.multi_label and task.num_classes == 5 and task.key_metric == "auc"
    splits = prepare_splits(task, root, val_fraction=0.34, seed=0, uncertain="ignore")
    assert len(splits["training"]) + len(splits["validation"]) == 3 and len(splits["test"]) == 1


@pytest.mark.parametrize("data_pct", [0.01, 0.1, 1.0])
def test_training_fraction_counts_per_class(data_pct):
    task = get_task("covidx")
    counts = {0: 700, 1: 250, 2: 50}
    items = [
        {"image": f"{c}_{k}.png", "label": c, "patient_id": f"{c}-{k}"} for c, n in counts.items() for k in range(n)
    ]
    subset = training_fraction(task, items, data_pct, seed=1)
    got = Counter(i["label"] for i in subset)
    assert got == {c: fraction_count(n, data_pct) for c, n in counts.items()}
    assert set(got) == {0, 1, 2}  # every class present at 1%
    assert subset == training_fraction(task, items, data_pct, seed=1)


def test_get_task_errors():
    with pytest.raises(ValueError, match="config key 'dataset' must be one of"):
        get_task("mnist")
    with pytest.raises(ValueError, match="config key 'prompts' names the class 'cat'"):
        get_task("covidx", prompts={"cat": ["a cat"]})
    assert get_task("covidx", "2class").class_names == ("negative", "positive")
    assert get_task("covidx", prompts={"COVID-19": "covid"}).prompts["COVID-19"] == ["covid"]
