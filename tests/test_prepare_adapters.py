from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from unimedi_monai.data.adapters.bimcv import build_bimcv_datalist, is_ct_nifti
from unimedi_monai.data.adapters.mimic_cxr import build_mimic_cxr_datalist
from unimedi_monai.data.datalist import load_datalist
from unimedi_monai.data.prepare import main

REPO_ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- MIMIC-CXR-JPG fixture

METADATA_HEADER = [
    "dicom_id",
    "subject_id",
    "study_id",
    "PerformedProcedureStepDescription",
    "ViewPosition",
    "Rows",
    "Columns",
    "StudyDate",
    "StudyTime",
    "ProcedureCodeSequence_CodeMeaning",
    "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]
FULL_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough

 COMPARISON:  ___

 FINDINGS:

 The lungs are clear without consolidation , effusion or pneumothorax.
 Heart size is normal.

 IMPRESSION:

 No acute cardiopulmonary process.
"""
# (dicom_id, subject, study, view, split, write_jpeg, report text or None for no file)
MIMIC_ROWS = [
    ("02aa804e-bde0afdd-112c0b34-7bc16630-4e384014", "10000032", "50414267", "PA", "train", True, FULL_REPORT),
    ("174413ec-4ec4c1f7-34ea26b7-c5f994f8-79ef1962", "10000032", "50414267", "LATERAL", "train", True, FULL_REPORT),
    (
        "2a2277a9-b0ded155-c0de8eb9-c124d10e-82c5caab",
        "10000032",
        "53189527",
        "AP",
        "train",
        True,
        " FINAL REPORT\n IMPRESSION:  Low lung volumes.  No pneumonia.\n",
    ),
    (
        "68b5c4b1-227d0485-9cc38c3f-7b84ab51-4b472714",
        "10000764",
        "57375967",
        "PA",
        "validate",
        True,
        " WET READ: ___ ___  No acute process .\n",
    ),
    ("096052b7-d256dc40-453a102b-fa7d01c6-1b22c6b4", "10000764", "57375967", "LL", "validate", True, None),
    ("fffabebf-74fd3a1f-673b6b41-96ec0ac9-2ab69818", "11000011", "51029426", "PA", "train", True, None),
    ("ea030e7a-2e3b1346-bc518786-7a8fd698-f673b44c", "12000000", "52000000", "AP", "train", True, "  ___\n\n [** **] "),
    (
        "d0b71acc-b5a62046-bbb5f6b8-7b173b85-65cdf738",
        "13000000",
        "53000000",
        "PA",
        "test",
        True,
        "FINDINGS: Test split study.\n",
    ),
    (
        "4b8e5f5e-c7a6f1ac-02a6d8b3-7b7c1a6a-0c1b8f41",
        "14000000",
        "54000000",
        "PA",
        "train",
        False,
        "FINDINGS: Image was not downloaded.\n",
    ),
    (
        "9c9e0f61-9d7a3b7e-5e4b1d2c-1a2b3c4d-5e6f7a8b",
        "15000000",
        "55000000",
        "AP",
        None,
        True,
        "FINDINGS: Not in the split table.\n",
    ),
]


def _write_csv(path: Path, header, rows, gz: bool = False) -> None:
    opener = gzip.open if gz else open
    with opener(path, "wt", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def make_mimic(root: Path, reports_root: Path | None = None, gz: bool = False) -> Path:
    reports_root = root if reports_root is None else reports_root
    metadata, split = [], []
    for dicom_id, subject, study, view, split_name, jpeg, report in MIMIC_ROWS:
        metadata.append(
            [
                dicom_id,
                subject,
                study,
                "CHEST (PA AND LAT)",
                view,
                8,
                6,
                21800506,
                213014.531,
                "CHEST (PA AND LAT)",
                "postero-anterior",
                "Erect",
            ]
        )
        if split_name is not None:
            split.append([dicom_id, study, subject, split_name])
        study_dir = root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
        study_dir.mkdir(parents=True, exist_ok=True)
        if jpeg:
            Image.new("L", (6, 8), color=128).save(study_dir / f"{dicom_id}.jpg", "JPEG")
        report_file = reports_root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
        report_file.parent.mkdir(parents=True, exist_ok=True)
        if report is not None:
            report_file.write_text(report, encoding="utf-8")
    suffix = ".csv.gz" if gz else ".csv"
    _write_csv(root / f"mimic-cxr-2.0.0-metadata{suffix}", METADATA_HEADER, metadata, gz)
    _write_csv(root / f"mimic-cxr-2.0.0-split{suffix}", ["dicom_id", "study_id", "subject_id", "split"], split, gz)
    return root


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_mimic_cxr_builder(tmp_path: Path):
    root = make_mimic(tmp_path / "mimic-cxr-jpg")
    datalist, summary = build_mimic_cxr_datalist(root)
    assert list(datalist) == ["training", "validation"]
    assert summary["kept"] == {"training": 2, "validation": 1}
    assert summary["skipped"] == {
        "view_not_selected": 2,
        "no_split_entry": 1,
        "split_not_selected": 1,
        "missing_image": 1,
        "missing_report": 1,
        "empty_report": 1,
    }
    assert summary["metadata_rows"] == len(MIMIC_ROWS)
    assert summary["examples"]["missing_report"] == [str(root / "files/p11/p11000011/s51029426.txt")]
    assert summary["examples"]["empty_report"] == [str(root / "files/p12/p12000000/s52000000.txt")]
    assert summary["examples"]["view_not_selected"][0].endswith("(view LATERAL)")

    first, second = datalist["training"]
    assert first == {
        "image": "files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg",
        "report": "FINDINGS: The lungs are clear without consolidation, effusion or pneumothorax. "
        "Heart size is normal. IMPRESSION: No acute cardiopulmonary process.",
        "modality": "xray",
        "patient_id": "10000032",
        "study_id": "50414267",
        "dicom_id": "02aa804e-bde0afdd-112c0b34-7bc16630-4e384014",
        "view": "PA",
    }
    assert second["report"] == "IMPRESSION: Low lung volumes. No pneumonia."
    assert second["view"] == "AP"
    (val,) = datalist["validation"]
    assert val["report"] == "WET READ: No acute process."  # no FINDINGS/IMPRESSION: whole cleaned text
    for item in datalist["training"] + datalist["validation"]:
        assert (root / item["image"]).is_file()


def test_mimic_cxr_options_reports_root_and_gzip(tmp_path: Path):
    root, reports = tmp_path / "jpg", tmp_path / "reports"
    make_mimic(root, reports_root=reports, gz=True)
    datalist, summary = build_mimic_cxr_datalist(root, reports_root=reports, views=("pa",), include_test=True)
    assert summary["kept"] == {"training": 1, "validation": 1, "test": 1}
    assert datalist["test"][0]["report"] == "FINDINGS: Test split study."
    assert "split_not_selected" not in summary["skipped"]
    assert summary["skipped"]["view_not_selected"] == 5  # the three AP images are now excluded too
    # without --reports-root the reports are looked up (and missing) under ROOT/files
    _, summary = build_mimic_cxr_datalist(root)
    assert summary["skipped"]["missing_report"] == 5 and sum(summary["kept"].values()) == 0


def test_mimic_cxr_errors(tmp_path: Path):
    root = make_mimic(tmp_path / "mimic")
    with pytest.raises(FileNotFoundError, match="reports folder .*nowhere"):
        build_mimic_cxr_datalist(root, reports_root=tmp_path / "nowhere")
    (root / "mimic-cxr-2.0.0-split.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"mimic-cxr-2\.0\.0-split\.csv"):
        build_mimic_cxr_datalist(root)
    _write_csv(root / "mimic-cxr-2.0.0-split.csv", ["dicom_id", "study", "subject_id"], [])
    with pytest.raises(ValueError, match=r"split\.csv is missing the column\(s\) \['study_id', 'split'\]"):
        build_mimic_cxr_datalist(root)
    with pytest.raises(FileNotFoundError, match="no files/ folder"):
        build_mimic_cxr_datalist(tmp_path)


# ---------------------------------------------------------------- BIMCV-COVID19+ fixture

SPANISH = {
    1: "Opacidades en vidrio deslustrado bilaterales, de predominio periférico.",
    2: "Consolidación en el lóbulo inferior derecho.",
    3: "Sin hallazgos patológicos.",
    4: "Derrame pleural izquierdo.",
    5: "Neumonía bilateral   compatible con COVID-19 .",
    6: "Patrón en empedrado.",
    7: "Nódulo pulmonar de 5 mm.",
    8: "Atelectasia basal.",
    9: "Cardiomegalia leve.",
}
ENGLISH = {
    1: "Bilateral ground-glass opacities, predominantly peripheral.",
    2: "Right lower lobe consolidation.",
    3: "No pathological findings.",
    4: "Left pleural effusion.",
    5: "Bilateral pneumonia compatible with COVID-19.",
    6: "Crazy-paving pattern.",
    7: "",  # translation missing
    8: "Basal atelectasis.",
    9: "Mild cardiomegaly.",
}


def _nifti(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), dtype=np.int16), np.eye(4)), str(path))


def make_bimcv(root: Path) -> Path:
    """Subjects 1-9 have reports; 1-8 and 10 have a CT; 9 has only an X-ray; 2 has two CT runs."""
    for i in range(1, 11):
        sub, ses = f"sub-S{i:05d}", f"ses-E{i:05d}"
        mod = root / sub / ses / "mod-rx"
        _nifti(mod / f"{sub}_{ses}_run-1_bp-chest_vp-pa_cr.nii.gz")  # X-ray: never a CT item
        if i == 9:
            continue
        if i == 3:  # CT recognised from its DICOM-JSON sidecar only
            _nifti(mod / f"{sub}_{ses}_run-1_bp-chest.nii.gz")
            sidecar = {"00080060": {"vr": "CS", "Value": ["CT"]}}  # DICOM-JSON Modality tag
            (mod / f"{sub}_{ses}_run-1_bp-chest.json").write_text(json.dumps(sidecar))
        else:
            _nifti(mod / f"{sub}_{ses}_run-1_bp-chest_ct.nii.gz")
        if i == 2:
            _nifti(mod / f"{sub}_{ses}_run-2_bp-chest_ct.nii.gz")
    return root


def make_reports_table(path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["subject", "ses", "report", "report_en"])
        for i in range(1, 10):
            subject = f"S{i:05d}" if i % 2 else f"sub-S{i:05d}"  # both spellings are accepted
            writer.writerow([subject, f"ses-E{i:05d}", SPANISH[i], ENGLISH[i]])
    return path


def test_is_ct_nifti(tmp_path: Path):
    root = make_bimcv(tmp_path / "bimcv")
    mod = root / "sub-S00003" / "ses-E00003" / "mod-rx"
    assert is_ct_nifti(mod / "sub-S00003_ses-E00003_run-1_bp-chest.nii.gz")
    assert not is_ct_nifti(mod / "sub-S00003_ses-E00003_run-1_bp-chest_vp-pa_cr.nii.gz")
    assert not is_ct_nifti(mod / "sub-S00003_ses-E00003_run-1_bp-chest.json")
    assert is_ct_nifti(tmp_path / "x" / "mod-ct" / "scan.nii")


def test_bimcv_builder_spanish(tmp_path: Path):
    root = make_bimcv(tmp_path / "covid19_posi")
    table = make_reports_table(tmp_path / "sil_reg_covid_posi.tsv")
    datalist, summary = build_bimcv_datalist(root, table, val_fraction=0.25, seed=0)
    items = datalist["training"] + datalist["validation"]
    assert len(items) == 9  # subjects 1-8, subject 2 has two runs
    assert summary["kept"] == {"training": len(datalist["training"]), "validation": len(datalist["validation"])}
    assert summary["skipped"] == {"session_without_report": 1, "report_without_ct": 1}
    assert summary["examples"] == {
        "session_without_report": ["sub-S00010/ses-E00010"],
        "report_without_ct": ["sub-S00009/ses-E00009"],
    }
    assert summary["ct_files"] == 10 and summary["ct_sessions"] == 9 and summary["report_rows"] == 9
    train_subjects = {i["patient_id"] for i in datalist["training"]}
    val_subjects = {i["patient_id"] for i in datalist["validation"]}
    assert not train_subjects & val_subjects and len(val_subjects) == 2  # round(0.25 * 8)
    by_image = {i["image"]: i for i in items}
    first = by_image["sub-S00001/ses-E00001/mod-rx/sub-S00001_ses-E00001_run-1_bp-chest_ct.nii.gz"]
    assert first["report"] == SPANISH[1] and first["language"] == "es" and first["modality"] == "ct"
    assert first["patient_id"] == "sub-S00001" and first["study_id"] == "ses-E00001"
    assert "report_original" not in first
    assert by_image["sub-S00005/ses-E00005/mod-rx/sub-S00005_ses-E00005_run-1_bp-chest_ct.nii.gz"]["report"] == (
        "Neumonía bilateral compatible con COVID-19."
    )
    assert sum(i["patient_id"] == "sub-S00002" for i in items) == 2
    for item in items:
        assert (root / item["image"]).is_file() and "_cr" not in item["image"]
    # deterministic
    assert build_bimcv_datalist(root, table, val_fraction=0.25, seed=0)[0] == datalist


def test_bimcv_builder_translated(tmp_path: Path):
    root = make_bimcv(tmp_path / "covid19_posi")
    table = make_reports_table(tmp_path / "reports.tsv")
    datalist, summary = build_bimcv_datalist(root, table, translated_column="report_en", val_fraction=0.0)
    assert datalist["validation"] == [] and len(datalist["training"]) == 8
    assert summary["skipped"]["empty_translation"] == 1
    assert summary["examples"]["empty_translation"] == ["sub-S00007/ses-E00007"]
    item = next(i for i in datalist["training"] if i["patient_id"] == "sub-S00004")
    assert item["report"] == ENGLISH[4] and item["report_original"] == SPANISH[4] and item["language"] == "en"


def test_bimcv_release_label_table_and_errors(tmp_path: Path):
    root = make_bimcv(tmp_path / "covid19_posi")
    # the release's labels_covid_posi.tsv style: PatientID / ReportID / Report with a list of sentences
    labels = tmp_path / "labels_covid_posi.csv"
    with open(labels, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ReportID", "PatientID", "Report", "Labels"])
        writer.writerow(["ses-E00001", "sub-S00001", "['opacidades bilaterales .', 'sin derrame']", "['COVID 19']"])
    datalist, summary = build_bimcv_datalist(root, labels, val_fraction=0.0)
    assert [i["report"] for i in datalist["training"]] == ["opacidades bilaterales. sin derrame"]
    assert summary["skipped"]["session_without_report"] == 8

    bad = tmp_path / "bad.tsv"
    bad.write_text("participant\tfecha\ttexto\nS00001\t2020\tx\n", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        build_bimcv_datalist(root, bad, translated_column="english")
    message = str(err.value)
    assert str(bad) in message and "session (one of" in message and "'report'" in message and "'english'" in message
    assert "subject (one of" not in message  # 'participant' is an accepted subject column
    with pytest.raises(FileNotFoundError, match="no sub-\\*/ses-\\* folders"):
        build_bimcv_datalist(tmp_path / "covid19_posi" / "sub-S00001", labels)


# ---------------------------------------------------------------- CLI


def test_cli_mimic_cxr_outside_root(tmp_path: Path, capsys):
    root = make_mimic(tmp_path / "mimic")
    before = _snapshot(root)
    out = tmp_path / "lists" / "mimic.json"
    assert main(["mimic-cxr", str(root), str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    assert "  training: 2\n  validation: 1\n" in printed
    assert "  missing_report: 1 (e.g. " in printed and "  view_not_selected: 2" in printed
    assert _snapshot(root) == before  # the dataset folder is not modified
    stored = json.loads(out.read_text(encoding="utf-8"))
    assert stored["name"] == "MIMIC-CXR-JPG" and stored["summary"]["skipped"]["empty_report"] == 1
    assert all(Path(i["image"]).is_absolute() for i in stored["training"])  # images outside OUT's folder
    loaded = load_datalist(out.parent, out.name)
    assert len(loaded["training"]) == 2 and len(loaded["validation"]) == 1


def test_cli_mimic_cxr_inside_root_relative_paths(tmp_path: Path):
    root = make_mimic(tmp_path / "mimic")
    assert main(["mimic-cxr", str(root), str(root / "datalist.json"), "--views", "PA", "AP", "--include-test"]) == 0
    stored = json.loads((root / "datalist.json").read_text(encoding="utf-8"))
    assert stored["training"][0]["image"].startswith("files/p10/p10000032/s50414267/")
    loaded = load_datalist(root)
    assert all(Path(i["image"]).is_file() for i in loaded["training"])
    assert len(load_datalist(root, sections=("test",))["test"]) == 1


def test_cli_errors(tmp_path: Path, capsys):
    root = make_mimic(tmp_path / "mimic")
    (root / "mimic-cxr-2.0.0-metadata.csv").write_text("dicom_id,subject_id\nx,1\n", encoding="utf-8")
    assert main(["mimic-cxr", str(root), str(tmp_path / "o.json")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "mimic-cxr-2.0.0-metadata.csv is missing the column(s) ['study_id', 'ViewPosition']" in err
    assert not (tmp_path / "o.json").exists()

    assert main(["bimcv", str(tmp_path), str(tmp_path / "missing.tsv"), str(tmp_path / "o.json")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "reports table not found" in err and "missing.tsv" in err

    table = make_reports_table(tmp_path / "reports.tsv")
    assert main(["bimcv", str(tmp_path), str(table), str(table)]) == 1  # would overwrite the input table
    assert "is not a .json file" in capsys.readouterr().err

    # a --reports-root without a files/ tree is refused
    assert (
        main(
            [
                "mimic-cxr",
                str(make_mimic(tmp_path / "m2")),
                str(tmp_path / "e.json"),
                "--reports-root",
                str(tmp_path / "m2" / "files" / "p10"),
            ]
        )
        == 1
    )
    assert "reports folder" in capsys.readouterr().err
    # nothing kept: no file is written
    empty_reports = tmp_path / "empty_reports"
    (empty_reports / "files").mkdir(parents=True)
    argv = ["mimic-cxr", str(tmp_path / "m2"), str(tmp_path / "e.json"), "--reports-root", str(empty_reports)]
    assert main(argv) == 1
    assert "no entries kept" in capsys.readouterr().err and not (tmp_path / "e.json").exists()

    with pytest.raises(SystemExit) as exc:
        main(["bimcv", str(tmp_path)])  # missing arguments
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "mimic-cxr" in capsys.readouterr().out


def test_cli_bimcv_and_merge(tmp_path: Path, capsys):
    data = tmp_path / "data"
    mimic_root = make_mimic(data / "mimic")
    bimcv_root = make_bimcv(data / "bimcv")
    table = make_reports_table(tmp_path / "reports.tsv")
    assert main(["mimic-cxr", str(mimic_root), str(mimic_root / "datalist.json")]) == 0
    assert (
        main(
            [
                "bimcv",
                str(bimcv_root),
                str(table),
                str(bimcv_root / "datalist.json"),
                "--translated-column",
                "report_en",
                "--val-fraction",
                "0.3",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    bimcv = load_datalist(bimcv_root)
    assert all(i["language"] == "en" for i in bimcv["training"] + bimcv["validation"])
    capsys.readouterr()

    out = data / "pretrain" / "datalist.json"
    inputs = [str(mimic_root / "datalist.json"), str(bimcv_root / "datalist.json")]
    assert main(["merge", str(out), *inputs]) == 0
    printed = capsys.readouterr().out
    merged = load_datalist(out.parent)  # relative paths were rewritten for OUT's folder
    n_bimcv = len(bimcv["training"]) + len(bimcv["validation"])
    assert len(merged["training"]) + len(merged["validation"]) == 3 + n_bimcv
    assert {i["modality"] for i in merged["training"]} == {"xray", "ct"}
    stored = json.loads(out.read_text(encoding="utf-8"))
    # the images are outside OUT's folder: stored absolute, pointing at the same files
    assert stored["training"][0]["image"] == str(
        mimic_root / "files/p10/p10000032/s50414267/02aa804e-bde0afdd-112c0b34-7bc16630-4e384014.jpg"
    )
    assert f"  training: {len(merged['training'])}" in printed

    # merging into the common parent gives relative paths; a repeated input is de-duplicated and counted
    top = data / "all.json"
    assert main(["merge", str(top), *inputs, inputs[0]]) == 0
    printed = capsys.readouterr().out
    stored = json.loads(top.read_text(encoding="utf-8"))
    assert stored["training"][0]["image"].startswith("mimic/files/p10/")
    assert any(i["image"].startswith("bimcv/sub-S") for i in stored["training"])
    assert "duplicate_image: 3" in printed
    assert len(load_datalist(data, "all.json")["training"]) == len(merged["training"])

    # an invalid input names file, section, entry and key
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"training": [{"image": "a.jpg", "modality": "xray"}]}), encoding="utf-8")
    assert main(["merge", str(tmp_path / "m.json"), str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "section 'training', entry 0: missing key 'report'" in err


def test_cli_subprocess(tmp_path: Path):
    root = make_bimcv(tmp_path / "bimcv")
    table = make_reports_table(tmp_path / "reports.tsv")
    out = tmp_path / "out" / "bimcv.json"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(
        [sys.executable, "-m", "unimedi_monai.data.prepare", "bimcv", str(root), str(table), str(out), "--seed", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "session_without_report: 1" in result.stdout and "report_without_ct: 1" in result.stdout
    loaded = load_datalist(out.parent, out.name)
    assert len(loaded["training"]) + len(loaded["validation"]) == 9
