"""Bad input: each case raises an error naming the file and the datalist entry, or (on_bad_sample=skip)
is left out of its batch and logged; random augmentations do not depend on workers or resume points."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from conftest import pretrain_pipeline
from PIL import Image
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from torch.utils.data import DataLoader

from unimedi_monai.data import (
    MixedBatchSampler,
    build_pretrain_dataset,
    collate_mixed,
    load_datalist,
)
from unimedi_monai.data.demo import generate_demo_dataset
from unimedi_monai.engines import UniMedITrainer, param_groups
from unimedi_monai.networks import UniMedI

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _png(path: Path) -> Path:
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)).save(path)
    return path


def _nifti(path: Path, volume: np.ndarray) -> Path:
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.eye(4)), path)
    return path


def _dicom(path: Path) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "DX", 64, 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = (np.arange(64 * 64, dtype=np.uint16) % 4000).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _case_files(folder: Path) -> dict[str, tuple[str, Path, str]]:
    """case -> (modality, file, pattern of the reason)."""
    volume = np.random.default_rng(0).normal(0, 100, (24, 24, 8))
    nan_volume = volume.copy()
    nan_volume[1, 2, 3], nan_volume[4, 5, 6] = np.nan, np.inf
    corrupt_nii = folder / "corrupt.nii.gz"
    corrupt_nii.write_bytes(gzip.compress(b"\0" * 4000)[:60])  # a gzip stream cut short
    return {
        "missing file": ("xray", folder / "gone.png", "not found"),
        "truncated png": ("xray", _truncate(_png(folder / "cut.png")), "cannot read"),
        "corrupt dicom x-ray": ("xray", _truncate(_dicom(folder / "cut.dcm"), 0.4), "cannot read"),
        "corrupt nifti": ("ct", corrupt_nii, "cannot read"),
        "corrupt dicom ct": ("ct", _truncate(_dicom(folder / "cut_ct.dcm"), 0.1), "cannot read"),
        "2d file as a volume": (
            "ct",
            _nifti(folder / "flat.nii.gz", volume[:, :, 0]),
            "2D image .* where a 3D volume is expected",
        ),
        "nan/inf volume": ("ct", _nifti(folder / "nan.nii.gz", nan_volume), "2 NaN/inf values"),
        "placeholder-only report": ("xray", _png(folder / "ok_but_no_text.png"), "report .* is empty after cleaning"),
    }


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    good = {
        "xray": _png(folder / "good.png"),
        "ct": _nifti(folder / "good.nii.gz", np.random.default_rng(1).normal(0, 100, (24, 24, 8))),
    }
    return folder, good, _case_files(folder)


def _items(good, modality, bad_file, report="Small nodule in the left lung."):
    other = "ct" if modality == "xray" else "xray"
    return [
        {"image": str(good[modality]), "report": "Normal study.", "modality": modality},
        {"image": str(good[other]), "report": "Normal study.", "modality": other},
        {"image": str(bad_file), "report": report, "modality": modality},
    ]


def _build(items, on_bad_sample, cache="memory"):
    return build_pretrain_dataset(
        items,
        pretrain_pipeline("xray", image_size=32),
        pretrain_pipeline("ct", ct_size=[16, 16, 8]),
        cache=cache,
        progress=False,
        on_bad_sample=on_bad_sample,
    )


CASES = [
    "missing file",
    "truncated png",
    "corrupt dicom x-ray",
    "corrupt nifti",
    "corrupt dicom ct",
    "2d file as a volume",
    "nan/inf volume",
    "placeholder-only report",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_sample_raises_naming_entry_and_file(files, case):
    _, good, cases = files
    modality, path, reason = cases[case]
    report = "___" if case == "placeholder-only report" else "Small nodule."
    items = _items(good, modality, path, report)
    # memory cache: the error comes while the cache fills, before any training
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        _build(items, "raise", cache="memory")
    message = str(info.value)
    assert "datalist entry 2" in message and path.name in message and "section 'training'" in message, message
    assert __import__("re").search(reason, message), message
    assert "\n" not in message
    # no cache: the same error when the sample is fetched
    ds = _build(items, "raise", cache="none")
    index = ds.num_xray - 1 if modality == "xray" else len(ds) - 1
    with pytest.raises((ValueError, FileNotFoundError), match="datalist entry 2"):
        ds[index]


@pytest.mark.parametrize("case", ["truncated png", "corrupt nifti", "2d file as a volume", "missing file"])
def test_skip_leaves_the_bad_sample_out_of_its_batch(files, case, caplog):
    _, good, cases = files
    modality, path, _ = cases[case]
    with caplog.at_level(logging.WARNING, logger="unimedi_monai.data.dataset"):
        ds = _build(_items(good, modality, path), "skip")
    assert any(path.name in r.getMessage() and "datalist entry 2" in r.getMessage() for r in caplog.records)
    batch = collate_mixed([ds[i] for i in range(len(ds))])
    assert len(batch["skipped"]) == 1 and path.name in batch["skipped"][0]
    assert batch[modality]["image"].shape[0] == 1 and len(batch[modality]["report"]) == 1  # the good one stays
    assert batch[modality]["report"] == ["Normal study."]
    other = "ct" if modality == "xray" else "xray"
    assert batch[other]["image"].shape[0] == 1
    bad = ds.num_xray - 1 if modality == "xray" else len(ds) - 1
    assert "skipped" not in collate_mixed([ds[i] for i in range(len(ds)) if i != bad])  # nothing skipped: no key


def test_datalist_errors_name_the_entry(tmp_path, files):
    _, good, _ = files
    entries = [
        {"image": str(good["xray"]), "report": "ok", "modality": "xray"},
        {"image": str(good["ct"]), "modality": "ct"},
    ]
    (tmp_path / "datalist.json").write_text(json.dumps({"training": entries}))
    with pytest.raises(ValueError, match=r"section 'training', entry 1: missing key 'report'"):
        load_datalist(tmp_path)
    entries[1]["report"] = "   "
    (tmp_path / "datalist.json").write_text(json.dumps({"training": entries}))
    with pytest.raises(ValueError, match=r"entry 1: key 'report' is empty"):
        load_datalist(tmp_path)
    entries[1].update(report="ok", image=str(tmp_path / "nowhere.nii.gz"))
    (tmp_path / "datalist.json").write_text(json.dumps({"training": entries}))
    with pytest.raises(FileNotFoundError, match=r"entry 1: key 'image' names .*nowhere.nii.gz"):
        load_datalist(tmp_path)
    with pytest.raises(ValueError, match="on_bad_sample must be one of"):
        build_pretrain_dataset(entries, None, None, cache="none", on_bad_sample="ignore")


def test_long_reports_are_truncated_and_counted(text_encoder, caplog):
    long_report = " ".join(["consolidation"] * 400)
    assert text_encoder.tokenize([long_report, "short"])["input_ids"].shape[1] == text_encoder.max_length
    state = SimpleNamespace(truncated_reports=0)
    model = SimpleNamespace(text_encoder=text_encoder)
    group = {"report": ["short report", long_report, long_report], "index": torch.tensor([4, 7, 9])}
    with caplog.at_level(logging.WARNING, logger="unimedi_monai.engines.trainer"):
        UniMedITrainer._count_long_reports(state, model, [group, None])
    assert state.truncated_reports == 2
    assert sum("sample 7" in r.getMessage() and "truncated" in r.getMessage() for r in caplog.records) == 1


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    generate_demo_dataset(root, n_xray=6, n_ct=3, seed=5, progress=False)
    lists = load_datalist(root)
    return lists["training"] + lists["validation"]


def test_skipped_samples_are_logged_and_counted_per_epoch(demo, text_encoder, tmp_path, caplog):
    bad = _truncate(_png(tmp_path / "broken.png"))
    items = demo + [{"image": str(bad), "report": "Left lower lobe opacity.", "modality": "xray"}]
    ds = build_pretrain_dataset(
        items,
        pretrain_pipeline("xray"),
        pretrain_pipeline("ct"),
        cache="memory",
        progress=False,
        on_bad_sample="skip",
    )
    model = UniMedI("tiny", text_encoder=text_encoder, slice_top_k=2)
    opt = torch.optim.AdamW(param_groups(model, 0.04), lr=1e-4)
    sampler = MixedBatchSampler(
        ds.num_xray, ds.num_ct, batch_size=len(ds), ct_fraction=ds.num_ct / len(ds), drop_last=False
    )
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_mixed)
    trainer = UniMedITrainer(
        device="cpu", max_epochs=1, train_data_loader=loader, network=model, optimizer=opt, lr=1e-4
    )
    with caplog.at_level(logging.WARNING, logger="unimedi_monai.engines.trainer"):
        trainer.run()
    messages = [r.getMessage() for r in caplog.records]
    per_item = [m for m in messages if "skipped a bad sample" in m]
    assert len(per_item) == len(sampler) and all(
        "broken.png" in m and f"datalist entry {len(demo)}" in m for m in per_item
    )
    assert any(f"epoch 1: {len(sampler)} bad samples were skipped" in m for m in messages)
    assert np.isfinite(trainer.state.output["loss"])


def test_augmentations_do_not_depend_on_workers_or_resume(demo):
    ds = build_pretrain_dataset(
        demo,
        pretrain_pipeline("xray", train=True, image_size=64),
        pretrain_pipeline("ct", train=True, ct_size=[32, 32, 8]),
        cache="memory",
        progress=False,
    )

    def batches(num_workers, position=0):
        sampler = MixedBatchSampler(ds.num_xray, ds.num_ct, batch_size=3, ct_fraction=0.34, seed=2, sample_seeds=True)
        sampler.load_state_dict({"epoch": 1, "position": position})
        loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_mixed, num_workers=num_workers)
        return [torch.cat([b["xray"]["image"].flatten(), b["ct"]["image"].flatten()]) for b in loader]

    serial = batches(0)
    assert len(serial) >= 3
    for a, b in zip(serial, batches(2)):
        assert torch.equal(a, b)
    for a, b in zip(serial[2:], batches(0, position=2)):  # resumed mid-epoch: the same augmented batches
        assert torch.equal(a, b)
    # the seeds do change the augmentation (a test that could fail): a different epoch gives other images
    sampler = MixedBatchSampler(ds.num_xray, ds.num_ct, batch_size=3, ct_fraction=0.34, seed=2, sample_seeds=True)
    first = sampler.batch(0, epoch=1)
    other = [(i, s + 1) for i, s in first]
    a = torch.cat([ds[k]["image"].flatten() for k in first])
    b = torch.cat([ds[k]["image"].flatten() for k in other])
    assert not torch.equal(a, b)
