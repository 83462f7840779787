"""One YAML spelling per concept across the bundles (inference keys, rank-0 handlers, checks), and the
BCV / AMOS bundles kept self-contained yet differing only in their data and organ keys."""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT
from monai.bundle import ConfigParser

BUNDLES = REPO_ROOT / "bundles"
INFERENCE = sorted(p for p in BUNDLES.glob("*/configs/inference.yaml"))
MULTI_GPU = sorted(p for p in BUNDLES.glob("*/configs/multi_gpu_train.yaml"))


def _config(path):
    return ConfigParser.load_config_file(str(path))


def _flatten(config, prefix=""):
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            out.update(_flatten(value, f"{prefix}{key}#"))
        return out
    if isinstance(config, list):
        out = {}
        for i, value in enumerate(config):
            out.update(_flatten(value, f"{prefix}{i}#"))
        return out
    return {prefix[:-1]: config}


@pytest.mark.parametrize("path", INFERENCE, ids=lambda p: p.parts[-3])
def test_inference_keys_follow_the_model_zoo(path):
    """Inputs in ``datalist`` / ``dataset_dir``, results in ``output_dir`` (default ``bundle_root/eval``)."""
    config = _config(path)
    assert {"datalist", "dataset_dir", "output_dir"} <= set(config), path
    assert config["datalist"] is None and config["dataset_dir"] is None
    assert config["output_dir"] == "$@bundle_root + '/eval'"
    assert not {"input", "input_files", "input_dir", "image", "output_path"} & set(config)
    guard = [s for s in config["initialize"] if "guard_outputs(" in s]
    assert len(guard) == 1 and "inputs={'datalist':" in guard[0] and "files=" in guard[0]


@pytest.mark.parametrize("path", MULTI_GPU, ids=lambda p: p.parts[-3])
def test_multi_gpu_configs_check_and_pick_rank0_handlers_by_type(path):
    config = _config(path)
    steps = config["initialize"]
    checks = [i for i, s in enumerate(steps) if "check_overrides()" in s]
    assert checks and any("guard_outputs(" in s and "'dataset_dir': @dataset_dir" in s for s in steps)
    assert any("check_values(" in s for s in steps)
    handler_lists = {k: v for k, v in config.items() if k.endswith("_handlers")}
    assert handler_lists and all("rank_handlers(" in v and "handlers[" not in v for v in handler_lists.values())


def test_rank_handlers(monkeypatch, tmp_path):
    from monai.handlers import StatsHandler, TensorBoardStatsHandler

    from unimedi_monai.engines import ProgressBarHandler, ResumableTensorBoardStatsHandler, handlers, rank_handlers

    stats, board, bar = StatsHandler(), ResumableTensorBoardStatsHandler(log_dir=str(tmp_path)), ProgressBarHandler()
    listed = [bar, stats, board]
    assert rank_handlers(listed, ["StatsHandler", "TensorBoardStatsHandler"]) == listed  # rank 0 / one process
    monkeypatch.setattr(handlers, "is_rank0", lambda: False)
    assert rank_handlers(listed, ["StatsHandler", "TensorBoardStatsHandler"]) == [bar]  # a subclass matches its base
    assert rank_handlers(listed, ["ProgressBarHandler"]) == [stats, board]
    with pytest.raises(ValueError, match=r"rank0_only names \['BestModelSaver'\], which match no handler"):
        rank_handlers(listed, ["StatsHandler", "BestModelSaver"])
    assert isinstance(board, TensorBoardStatsHandler)


#: the keys BCV and AMOS may differ in: where they are, the data layout and the organ table
BCV_AMOS_DIFFERENCES = {
    "train.yaml": {"bundle_root", "dataset", "max_ct_id", "data"},
    "inference.yaml": {"bundle_root", "organs"},
    "evaluate.yaml": set(),
}


@pytest.mark.parametrize("name", sorted(BCV_AMOS_DIFFERENCES))
def test_bcv_and_amos_differ_only_in_data_and_organ_keys(name):
    """The two 3D segmentation bundles stay self-contained zips; this keeps their copies in step."""
    bcv = _flatten(_config(BUNDLES / "bcv_segmentation" / "configs" / name))
    amos = _flatten(_config(BUNDLES / "amos_segmentation" / "configs" / name))
    differing = {k for k in bcv.keys() | amos.keys() if bcv.get(k, "<absent>") != amos.get(k, "<absent>")}
    assert differing == BCV_AMOS_DIFFERENCES[name], sorted(differing)


@pytest.mark.parametrize("path", INFERENCE, ids=lambda p: p.parts[-3])
def test_inference_backbone_comes_from_the_weights(path):
    assert str(_config(path)["backbone"]).startswith("$unimedi_monai.engines.trained_backbone(@model_path, default=")


def test_trained_backbone(tmp_path):
    import torch

    from unimedi_monai.engines import trained_backbone
    from unimedi_monai.networks import UniMedISETRPUP, UniMedIUNETR

    seg3d = UniMedIUNETR(out_channels=3, backbone="tiny", img_size=[32, 32, 8], patch_size=[16, 16, 4], feature_size=8)
    torch.save(seg3d.state_dict(), tmp_path / "unetr.pt")
    torch.save(
        {
            "network": UniMedISETRPUP(
                out_channels=2, backbone="demo", img_size=32, patch_size=16, decoder_channels=8
            ).state_dict()
        },
        tmp_path / "ckpt.pt",
    )
    assert trained_backbone(tmp_path / "unetr.pt", default="base") == "tiny"
    assert trained_backbone(tmp_path / "ckpt.pt", default="base") == "demo"  # a training checkpoint's network entry
    assert trained_backbone(tmp_path / "absent.pt", default="base") == "base"  # no weights yet
    # weights trained with the option `pooling: cls_max` hold its max_norm: the preset is returned with it
    pooled = UniMedISETRPUP(
        out_channels=2,
        backbone={"preset": "demo", "pooling": "cls_max"},
        img_size=32,
        patch_size=16,
        decoder_channels=8,
    )
    torch.save(pooled.state_dict(), tmp_path / "cls_max.pt")
    found = trained_backbone(tmp_path / "cls_max.pt", default="base")
    assert found == {"preset": "demo", "pooling": "cls_max"}
    rebuilt = UniMedISETRPUP(out_channels=2, backbone=found, img_size=32, patch_size=16, decoder_channels=8)
    rebuilt.load_state_dict(torch.load(tmp_path / "cls_max.pt", weights_only=True))  # strict: the keys match
    state = seg3d.state_dict()
    state = {k: v for k, v in state.items() if "blocks.1." not in k}  # one block: no preset has that
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=r"odd.pt' match no backbone preset; pass --backbone"):
        trained_backbone(tmp_path / "odd.pt", default="base")


@pytest.mark.parametrize("head_batch_norm", [False, True])
@pytest.mark.parametrize("center_per_group", [False, True])
def test_trained_head_option(tmp_path, text_encoder, head_batch_norm, center_per_group):
    """Slice selection and zero-shot build the whole pre-training network: its head options come from the weights."""
    import torch

    from unimedi_monai.engines import trained_head_option
    from unimedi_monai.networks import UniMedI

    kwargs = dict(head_batch_norm=head_batch_norm, center_per_group=center_per_group)
    net = UniMedI(backbone="tiny", text_encoder=text_encoder, **kwargs)
    torch.save(net.state_dict(), tmp_path / "model.pt")
    torch.save({"network": net.state_dict(), "optimizer": {}}, tmp_path / "ckpt.pt")
    for path in (tmp_path / "model.pt", tmp_path / "ckpt.pt"):
        read = {k: trained_head_option(path, k, default=not v) for k, v in kwargs.items()}
        assert read == kwargs
        rebuilt = UniMedI(backbone="tiny", text_encoder=text_encoder, **read)
        rebuilt.load_state_dict(net.state_dict())  # strict: the options read back fit the weights
    assert trained_head_option(tmp_path / "absent.pt", "head_batch_norm", default=True) is True  # no weights yet
    encoder_only = {k: v for k, v in net.state_dict().items() if k.startswith("encoder.")}
    torch.save(encoder_only, tmp_path / "encoder.pt")
    assert trained_head_option(tmp_path / "encoder.pt", "center_per_group", default=True) is True  # no head: default
    with pytest.raises(ValueError, match="option must be one of"):
        trained_head_option(tmp_path / "model.pt", "mask_ratio", default=True)
