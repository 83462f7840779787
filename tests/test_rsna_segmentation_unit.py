"""2D segmentation on the X-ray encoder: the SETR-PUP network, the encoder load, the RSNA / datalist
readers, label fractions, the transforms and the inference post-processing (fast, no bundle run)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import segmentation_pipeline
from PIL import Image

from unimedi_monai.io.checkpoint import CheckpointMismatchError, load_weights
from unimedi_monai.networks import UnifiedVisionEncoder, UniMedISETRPUP
from unimedi_monai.segmentation import (
    boxes_to_mask,
    generate_lesion_demo,
    load_2d_datalist,
    load_rsna_segmentation,
    load_xray_segmentation_data,
    segmentation_param_groups,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- network
@pytest.mark.parametrize(
    "backbone, shape, classes", [("tiny", (224, 224), 2), ("tiny", (128, 96), 3), ("demo", (64, 64), 2)]
)
def test_output_shape(backbone, shape, classes):
    net = UniMedISETRPUP(classes, backbone=backbone, decoder_channels=8).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, *shape))
    assert out.shape == (2, classes, *shape)
    assert len(net.decoder) == 4  # four x2 stages undo the 16-pixel patches


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="out_channels must count the background"):
        UniMedISETRPUP(1, backbone="tiny")
    with pytest.raises(ValueError, match="patch_size must be a power of two"):
        UniMedISETRPUP(2, backbone="tiny", patch_size=12)
    with pytest.raises(ValueError, match="divisible by the patch size"):
        UniMedISETRPUP(2, backbone="tiny", decoder_channels=8)(torch.zeros(1, 1, 100, 100))


def _checkpoint(path: Path, backbone: str = "tiny") -> tuple[dict, dict]:
    """A pre-training ``model.pt`` layout: student ``encoder.*`` and (other) EMA teacher ``teacher.encoder.*``."""
    student, teacher = UnifiedVisionEncoder(backbone).state_dict(), UnifiedVisionEncoder(backbone).state_dict()
    state = {f"encoder.{k}": v for k, v in student.items()} | {f"teacher.encoder.{k}": v for k, v in teacher.items()}
    state["head.mlp.0.weight"] = torch.zeros(3, 3)  # other parts of the model are ignored
    torch.save(state, path)
    return student, teacher


@pytest.mark.parametrize("source", ["student", "teacher"])
def test_encoder_weights_load_exactly(tmp_path, source, caplog):
    student, teacher = _checkpoint(tmp_path / "model.pt")
    expected = student if source == "student" else teacher
    net = UniMedISETRPUP(2, backbone="tiny", decoder_channels=8)
    decoder_before = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("encoder.")}
    with caplog.at_level("INFO"):
        net = load_weights(net, tmp_path / "model.pt", source=source, init="pretrained")
    own = net.encoder.state_dict()
    assert own and all(torch.equal(own[k], expected[k]) for k in own)  # every encoder tensor, exactly
    assert not all(
        torch.equal(own[k], (teacher if source == "student" else student)[k]) for k in own if own[k].is_floating_point()
    )
    report = net.load_report
    assert sorted(report["loaded"]) == sorted(own) and report["missing"] == []
    assert {k.split(".")[0] for k in report["unexpected"]} == {"tokenizer_3d", "mask_token"}
    assert all(torch.equal(v, decoder_before[k]) for k, v in net.state_dict().items() if k in decoder_before)
    assert (
        f"pre-trained {source} encoder from {tmp_path / 'model.pt'}: {len(own)} keys loaded, 0 missing" in caplog.text
    )


def test_real_pretraining_checkpoint_keys_load(tmp_path, text_encoder):
    """The keys of an actual UniMedI state dict (what the pretrain bundle writes) fill the 2D encoder."""
    from unimedi_monai.networks import UniMedI

    model = UniMedI("tiny", text_encoder=text_encoder)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    net = UniMedISETRPUP(2, backbone="tiny", decoder_channels=8)
    report = load_weights(net, tmp_path / "model.pt", source="teacher").load_report
    assert report["missing"] == []
    ref = model.teacher["encoder"].state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in net.encoder.state_dict().items())


def test_encoder_of_another_preset_is_refused(tmp_path):
    _checkpoint(tmp_path / "model.pt", backbone="demo")
    with pytest.raises(CheckpointMismatchError, match="does not fit the network"):
        load_weights(UniMedISETRPUP(2, backbone="tiny"), tmp_path / "model.pt", source="student")
    with pytest.raises(FileNotFoundError, match="--init random"):
        load_weights(UniMedISETRPUP(2, backbone="tiny"), tmp_path / "absent.pt", source="student", init="pretrained")


def test_freeze_encoder_trains_the_decoder_only():
    net = UniMedISETRPUP(2, backbone="tiny", decoder_channels=8, freeze_encoder=True).train()
    assert not net.encoder.training and net.decoder.training
    net(torch.rand(2, 1, 64, 64)).sum().backward()
    assert all(p.grad is None for p in net.encoder.parameters())
    assert all(p.grad is not None for p in net.decoder.parameters())
    groups = segmentation_param_groups(net, 1e-3, 0.1)
    assert len(groups) == 1 and groups[0]["lr"] == 1e-3  # the frozen encoder gets no group
    assert len(segmentation_param_groups(UniMedISETRPUP(2, backbone="tiny"), 1e-3, 0.1)) == 2


# ---------------------------------------------------------------- RSNA
def _dicom(path: Path, rows: int = 48, cols: int = 64) -> None:
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "CR"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = (np.arange(rows * cols) % 251).astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    pydicom.dcmwrite(str(path), ds, enforce_file_format=True)


HEADER = "patientId,x,y,width,height,Target"


@pytest.fixture()
def rsna_dir(tmp_path) -> Path:
    """40 patients in the published layout: every 4th positive with two boxes (rows), the others one empty row."""
    root = tmp_path / "rsna"
    rows = [HEADER]
    for p in range(40):
        pid = f"pid-{p:03d}"
        if p % 4 == 0:
            rows += [f"{pid},4.0,6.0,10.0,8.0,1", f"{pid},30.5,20.0,12.0,20.0,1"]
        else:
            rows.append(f"{pid},,,,,0")
        _dicom(root / "stage_2_train_images" / f"{pid}.dcm")
    (root / "stage_2_train_labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_rsna_boxes_become_masks_at_the_image_resolution(rsna_dir):
    data = load_rsna_segmentation(rsna_dir, val_fraction=0.2, test_fraction=0.25, seed=0)
    patients = {s: {i["patient_id"] for i in items} for s, items in data.items()}
    assert sum(len(p) for p in patients.values()) == 40 and all(patients.values())
    assert not (patients["training"] & patients["test"]) and not (patients["training"] & patients["validation"])
    item = next(i for s in data.values() for i in s if i["patient_id"] == "pid-000")
    assert item["target"] == 1 and item["boxes"] == [[4.0, 6.0, 10.0, 8.0], [30.5, 20.0, 12.0, 20.0]]
    negative = next(i for s in data.values() for i in s if i["patient_id"] == "pid-001")
    assert negative["target"] == 0 and negative["boxes"] == []
    # at the DICOM's own 48 x 64 grid (image_size = its size: the resize changes nothing)
    expected = boxes_to_mask(item["boxes"], (48, 64))
    assert expected.sum() == 10 * 8 + 13 * 20  # x 30.5..42.5 covers the columns 30..42
    assert expected[6:14, 4:14].all() and expected[20:40, 30:43].all() and not expected[:6].any()
    tf = segmentation_pipeline("validate", bundle="rsna_segmentation", image_size=48, num_classes=2)
    out = tf(dict(item))
    assert out["image"].shape == (1, 48, 48) and out["label"].shape == (1, 48, 48)
    assert set(out["label"].unique().tolist()) == {0.0, 1.0}
    assert float(tf(dict(negative))["label"].sum()) == 0.0
    # a batch mixing patients with 0 and 2 boxes collates (the boxes are dropped once filled)
    from monai.data import DataLoader, Dataset

    batch = next(iter(DataLoader(Dataset([item, negative, item, negative], tf), batch_size=4)))
    assert batch["label"].shape == (4, 1, 48, 48) and "boxes" not in batch and batch["target"].tolist() == [1, 0, 1, 0]


@pytest.mark.parametrize(
    "row, message",
    [
        ("pid-000,abc,6,10,8,1", r"stage_2_train_labels.csv, row 2, column 'x': 'abc' is not a number"),
        ("pid-000,4,6,0,8,1", r"stage_2_train_labels.csv, row 2, column 'width': '0' must be a positive number"),
        ("pid-000,4,-1,10,8,1", r"stage_2_train_labels.csv, row 2, column 'y': '-1' must be a non-negative number"),
        ("pid-000,4,6,10,,1", r"stage_2_train_labels.csv, row 2, column 'height': '' is not a number"),
        ("pid-000,,,,,2", r"stage_2_train_labels.csv, row 2, column 'Target': '2' must be 0 or 1"),
    ],
)
def test_rsna_errors_name_file_row_and_column(rsna_dir, row, message):
    (rsna_dir / "stage_2_train_labels.csv").write_text(f"{HEADER}\n{row}\n")
    with pytest.raises(ValueError, match=message):
        load_rsna_segmentation(rsna_dir)


def test_rsna_box_outside_the_image_names_the_file(rsna_dir):
    item = {"image": str(rsna_dir / "stage_2_train_images" / "pid-000.dcm"), "boxes": [[500.0, 500.0, 10.0, 10.0]]}
    with pytest.raises(ValueError, match=r"pid-000.dcm': box 0 .* lies outside the 48 x 64 image"):
        segmentation_pipeline("validate", bundle="rsna_segmentation", image_size=32, num_classes=2)(item)


def test_label_fractions_counts_and_seed(rsna_dir):
    full = load_xray_segmentation_data(rsna_dir, "rsna", val_fraction=0.2, test_fraction=0.25, label_fraction=1.0)
    train = full["training"]
    n_pos = sum(i["target"] for i in train)
    n_neg = len(train) - n_pos
    for fraction in (0.01, 0.1, 0.5):
        sub = load_xray_segmentation_data(
            rsna_dir, "rsna", val_fraction=0.2, test_fraction=0.25, label_fraction=fraction
        )
        pos = sum(i["target"] for i in sub["training"])
        # stratified: each class keeps round(fraction * n), at least one
        assert pos == max(1, round(fraction * n_pos)) and len(sub["training"]) - pos == max(1, round(fraction * n_neg))
        assert sub["validation"] == full["validation"] and sub["test"] == full["test"]  # evaluation splits stay whole
        assert {i["patient_id"] for i in sub["training"]} <= {i["patient_id"] for i in train}
    a = load_xray_segmentation_data(rsna_dir, "rsna", label_fraction=0.5, fraction_seed=1)["training"]
    b = load_xray_segmentation_data(rsna_dir, "rsna", label_fraction=0.5, fraction_seed=1)["training"]
    c = load_xray_segmentation_data(rsna_dir, "rsna", label_fraction=0.5, fraction_seed=2)["training"]
    assert a == b and a != c


# ---------------------------------------------------------------- generic datalist
def _png(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return str(path)


def test_generic_datalist_masks_and_errors(tmp_path):
    image = np.tile(np.arange(80, dtype=np.uint8), (50, 1))
    mask = np.zeros((50, 80), dtype=np.uint8)
    mask[5:20, 10:30] = 255
    rows = [
        {"image": _png(tmp_path / f"img/{i}.png", image), "label": _png(tmp_path / f"msk/{i}.png", mask)}
        for i in range(6)
    ]
    (tmp_path / "datalist.json").write_text(json.dumps({"training": rows}))
    data = load_2d_datalist(tmp_path, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert [len(data[s]) for s in ("training", "validation", "test")] == [4, 1, 1]
    out = segmentation_pipeline("validate", bundle="rsna_segmentation", image_size=80 // 2 * 2, num_classes=2)(
        data["training"][0]
    )
    assert out["label"].shape == (1, 80, 80) and set(out["label"].unique().tolist()) == {0.0, 1.0}  # 255 -> 1
    # a listed file that is missing, and a mask of another size
    (tmp_path / "datalist.json").write_text(
        json.dumps({"training": rows + [{"image": "img/none.png", "label": "msk/0.png"}]})
    )
    with pytest.raises(
        FileNotFoundError, match=r"datalist.json: training entry 6 'image' file .*none.png' does not exist"
    ):
        load_2d_datalist(tmp_path)
    small = _png(tmp_path / "msk/small.png", mask[:40])
    with pytest.raises(ValueError, match=r"mask '.*small.png' is \(40, 80\) but its image '.*0.png' is \(50, 80\)"):
        segmentation_pipeline("validate", bundle="rsna_segmentation", image_size=32, num_classes=2)(
            {"image": rows[0]["image"], "label": small}
        )
    three = _png(tmp_path / "msk/three.png", (mask > 0).astype(np.uint8) * 3)
    with pytest.raises(
        ValueError, match=r"three.png' \(key 'label'\) holds class ids 0..3, but the network predicts classes 0..1"
    ):
        segmentation_pipeline("validate", bundle="rsna_segmentation", image_size=32, num_classes=2)(
            {"image": rows[0]["image"], "label": three}
        )


def test_demo_masks_are_the_generators_lesions(tmp_path):
    from unimedi_monai.data.demo import synth_xray

    path = generate_lesion_demo(tmp_path / "demo", n_train=4, n_val=2, n_test=2, seed=3)
    data = json.loads(path.read_text())
    assert [len(data[s]) for s in ("training", "validation", "test")] == [4, 2, 2]
    first = data["training"][0]
    image, mask = synth_xray(
        first["finding"], first["side"], first["zone"], first["size_mm"], np.random.default_rng([3, 0])
    )
    saved = np.asarray(Image.open(path.parent / first["label"]))
    assert first["finding"] != "normal" and mask.any()
    assert np.array_equal(saved, mask.astype(np.uint8) * 255)  # the generator's own lesion mask
    assert np.array_equal(np.asarray(Image.open(path.parent / first["image"])), image)
    assert not any(
        np.asarray(Image.open(path.parent / i["label"])).any() for i in data["training"] if i["finding"] == "normal"
    )
    assert generate_lesion_demo(tmp_path / "demo", n_train=4, n_val=2, n_test=2, seed=3) == path  # reused
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "user.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="is not empty and holds no demo"):
        generate_lesion_demo(tmp_path / "other")
    assert (tmp_path / "other" / "user.txt").read_text() == "keep"


# ---------------------------------------------------------------- inference output
@pytest.mark.parametrize("kind", ["png", "dicom"])
def test_inference_writes_one_mask_per_input_at_original_size_and_orientation(tmp_path, kind):
    """A prediction of the top-left quarter of the 64 x 64 network input comes back as the top-left
    quarter of each (non-square) original, in a PNG named after it."""
    from monai.data import decollate_batch, list_data_collate

    if kind == "png":
        inputs = [_png(tmp_path / "in" / f"x{i}.png", np.full((50 + 10 * i, 80), 100, np.uint8)) for i in range(2)]
        sizes = [(50, 80), (60, 80)]
    else:
        inputs = []
        for i in range(2):
            _dicom(tmp_path / "in" / f"x{i}.dcm", rows=48 + 8 * i, cols=64)
            inputs.append(str(tmp_path / "in" / f"x{i}.dcm"))
        sizes = [(48, 64), (56, 64)]
    from conftest import REPO_ROOT
    from monai.bundle import ConfigParser

    parser = ConfigParser()  # the bundle's own pre- and post-processing
    parser.read_config(str(REPO_ROOT / "bundles" / "rsna_segmentation" / "configs" / "inference.yaml"))
    parser.update(
        {
            "bundle_root": str(tmp_path),
            "output_dir": str(tmp_path / "out"),
            "output_postfix": "seg",
            "num_classes": 2,
            "image_size": 64,
        }
    )
    pre = parser.get_parsed_content("preprocessing")
    post = parser.get_parsed_content("postprocessing")
    for path, (rows, cols) in zip(inputs, sizes):
        batch = list_data_collate([pre({"image": path})])  # as the evaluator's DataLoader
        logits = torch.zeros(1, 2, 64, 64)
        logits[0, 1, :32, :32] = 5.0
        batch["pred"] = batch["image"].repeat(1, 2, 1, 1) * 0 + logits  # a network output keeps the input's metadata
        for sample in decollate_batch(batch):
            post(sample)
        out = np.asarray(Image.open(tmp_path / "out" / f"{Path(path).stem}_seg.png"))
        assert out.shape == (rows, cols) and out.dtype == np.uint8 and set(np.unique(out)) == {0, 255}
        assert (
            out[: rows // 2 - 1, : cols // 2 - 1].all()
            and not out[rows // 2 + 1 :].any()
            and not out[:, cols // 2 + 1 :].any()
        )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"x{i}_seg.png" for i in range(2)]


def test_inference_config_fits_monai_labels_bundle_task(tmp_path):
    """What MONAI Label's BundleInferTask reads from the bundle: a 2D task (the metadata's
    spatial_shape), input ``image`` / output ``pred``, the pre-processing, and the post-processing
    without its ``SaveImaged`` writer (MONAI Label filters those out); the prediction then has the
    original image's size, so MONAI Label's ``Restored`` leaves it as it is."""
    from conftest import REPO_ROOT
    from monai.bundle import ConfigParser
    from monai.data import decollate_batch, list_data_collate
    from monai.transforms import SaveImaged

    bundle = REPO_ROOT / "bundles" / "rsna_segmentation"
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    (key_in, image), (key_out, pred) = (
        next(iter(metadata["network_data_format"]["inputs"].items())),
        next(iter(metadata["network_data_format"]["outputs"].items())),
    )
    assert (key_in, key_out, len(image["spatial_shape"])) == ("image", "pred", 2)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.yaml"))
    parser["bundle_root"] = str(bundle)
    parser["output_dir"] = str(tmp_path / "unused")
    net = parser.get_parsed_content("network_def").eval()
    assert net.out_channels == pred["num_channels"] == len(pred["channel_def"])
    pre = parser.get_parsed_content("preprocessing")
    post = [t for t in parser.get_parsed_content("postprocessing").transforms if not isinstance(t, SaveImaged)]
    assert len(post) == 3  # softmax, invert, argmax: the writer is dropped
    path = _png(tmp_path / "study.png", np.full((90, 70), 80, np.uint8))
    batch = list_data_collate([pre({"image": path, "image_path": path})])
    with torch.no_grad():
        batch["pred"] = net(batch["image"])
    sample = decollate_batch(batch)[0]
    for t in post:
        sample = t(sample)
    assert tuple(sample["pred"].shape) == (1, 90, 70) and not (tmp_path / "unused").exists()
