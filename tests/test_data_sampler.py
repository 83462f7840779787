# Copyright (c) unimedi-monai contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#     http://www.apache.org/licenses/LICENSE-2.0
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Tests for unimedi_monai.data.sampler, unimedi_monai.data.dataset and unimedi_monai.data.collate."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from unimedi_monai.data.collate import collate_mixed, move_batch_to_device
from unimedi_monai.data.dataset import MixedModalityDataset, build_pretrain_dataset
from unimedi_monai.data.sampler import MixedBatchSampler

# ----------------------------------------------------------------------------------------------- sampler


def test_ratio_per_batch_and_length():
    s = MixedBatchSampler(num_xray=100, num_ct=10, batch_size=8, ct_fraction=0.25)
    assert (s.n_xray, s.n_ct) == (6, 2)
    batches = list(s)
    assert len(batches) == len(s) == math.floor(100 / 6)  # X-rays are the larger-by-steps pool
    for b in batches:
        assert len(b) == 8
        assert all(0 <= i < 100 for i in b[:6]) and all(100 <= i < 110 for i in b[6:])
    xray = [i for b in batches for i in b[:6]]
    assert len(set(xray)) == len(xray)  # drop_last: no X-ray repeats within the epoch
    ct_counts = Counter(i for b in batches for i in b[6:])
    assert set(ct_counts) == set(range(100, 110))  # the smaller pool is cycled, evenly
    assert max(ct_counts.values()) - min(ct_counts.values()) <= 1

    full = MixedBatchSampler(num_xray=100, num_ct=10, batch_size=8, drop_last=False)
    assert len(full) == math.ceil(100 / 6)
    assert {i for b in full for i in b[:6]} == set(range(100))  # every X-ray seen

    # CTs are the larger-by-steps pool here: 40 CTs at 2/batch = 20 steps > 10 X-rays at 6/batch
    s = MixedBatchSampler(num_xray=10, num_ct=40, batch_size=8, ct_fraction=0.25)
    assert len(s) == 20
    assert sorted(i for b in s for i in b[6:]) == list(range(10, 50))


def test_single_modality_and_fraction_limits():
    only_xray = MixedBatchSampler(num_xray=20, num_ct=0, batch_size=4, ct_fraction=0.5)
    assert (only_xray.n_xray, only_xray.n_ct, len(only_xray)) == (4, 0, 5)
    assert sorted(i for b in only_xray for i in b) == list(range(20))
    only_ct = MixedBatchSampler(num_xray=0, num_ct=6, batch_size=3)
    assert all(len(b) == 3 for b in only_ct) and sorted(i for b in only_ct for i in b) == list(range(6))
    # both present: at least one of each, whatever ct_fraction says
    assert MixedBatchSampler(10, 10, batch_size=4, ct_fraction=0.0).n_ct == 1
    assert MixedBatchSampler(10, 10, batch_size=4, ct_fraction=1.0).n_ct == 3
    assert MixedBatchSampler(10, 10, batch_size=10, ct_fraction=0.33).n_ct == 3


def test_determinism_and_epochs():
    def run(seed, epoch):
        s = MixedBatchSampler(50, 12, batch_size=6, ct_fraction=0.34, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert run(0, 0) == run(0, 0)
    assert run(0, 1) == run(0, 1)
    assert run(0, 0) != run(0, 1)
    assert run(0, 0) != run(1, 0)
    s = MixedBatchSampler(50, 12, batch_size=6, seed=0)
    assert list(s) == list(s) == run(0, 0)  # a completed pass resets the position: same epoch replays
    assert s.batch(3) == run(0, 0)[3]


def test_disjoint_coverage_across_replicas():
    kwargs = dict(num_xray=90, num_ct=30, batch_size=8, ct_fraction=0.25, seed=7, num_replicas=2)
    r0 = list(MixedBatchSampler(rank=0, **kwargs))
    r1 = list(MixedBatchSampler(rank=1, **kwargs))
    assert len(r0) == len(r1) == len(MixedBatchSampler(rank=0, **kwargs)) == math.floor(90 / 6 / 2)
    x0 = [i for b in r0 for i in b[:6]]
    x1 = [i for b in r1 for i in b[:6]]
    assert not set(x0) & set(x1)  # disjoint slices of the same global stream
    assert len(set(x0)) == len(x0) and len(set(x1)) == len(x1)
    assert all(0 <= i < 90 for i in x0 + x1)
    assert all(90 <= i < 120 for b in r0 + r1 for i in b[6:])
    # the two ranks together are the single-replica stream, dealt round-robin
    single = list(MixedBatchSampler(num_xray=90, num_ct=30, batch_size=8, ct_fraction=0.25, seed=7))
    assert [b for pair in zip(r0, r1) for b in pair] == single[: 2 * len(r0)]
    # without drop_last the ranks together cover every X-ray
    f0 = MixedBatchSampler(rank=0, drop_last=False, **kwargs)
    f1 = MixedBatchSampler(rank=1, drop_last=False, **kwargs)
    assert len(f0) == len(f1) == math.ceil(90 / 6 / 2)
    assert {i for s in (f0, f1) for b in s for i in b[:6]} == set(range(90))


def test_resume_mid_epoch():
    s = MixedBatchSampler(40, 10, batch_size=5, ct_fraction=0.2, seed=3)
    s.set_epoch(2)
    expected = list(s)
    it = iter(s)
    seen = [next(it) for _ in range(3)]
    assert seen == expected[:3]
    state = s.state_dict()
    assert state == {"epoch": 2, "position": 3}

    resumed = MixedBatchSampler(40, 10, batch_size=5, ct_fraction=0.2, seed=3)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # an epoch-start handler re-announcing the same epoch keeps the position
    rest = list(resumed)
    assert rest == expected[3:]
    assert resumed.state_dict() == {"epoch": 2, "position": 0}  # the epoch completed
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # a new epoch starts from its first batch
    assert len(list(resumed)) == len(resumed)
    with pytest.raises(ValueError, match="position"):
        resumed.load_state_dict({"epoch": 0, "position": len(resumed) + 1})
    with pytest.raises(ValueError, match="missing keys"):
        resumed.load_state_dict({"epoch": 0})


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match="ct_fraction"):
        MixedBatchSampler(10, 10, batch_size=4, ct_fraction=1.5)
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        MixedBatchSampler(10, 10, batch_size=1)
    with pytest.raises(ValueError, match="no samples"):
        MixedBatchSampler(0, 0, batch_size=4)
    with pytest.raises(ValueError, match="rank"):
        MixedBatchSampler(10, 10, batch_size=4, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_xray"):
        MixedBatchSampler(-1, 10, batch_size=4)
    with pytest.raises(
        ValueError,
        match=r"the 3 X-rays and 1 CTs from datalist d.json fill no full batch .*--train#sampler#drop_last false",
    ):
        MixedBatchSampler(3, 1, batch_size=8, drop_last=True, source="datalist d.json")
    assert len(MixedBatchSampler(3, 1, batch_size=8, drop_last=False)) == 1


# ----------------------------------------------------------------------------------------------- dataset


def _fake_xray(d):
    return {**d, "image": MetaTensor(torch.full((1, 8, 8), float(d["value"])))}


def _fake_ct(d):
    return {**d, "image": torch.full((1, 8, 8, 4), float(d["value"]))}


def _items():
    return [
        {"image": "ct0.nii.gz", "report": "ct zero", "modality": "ct", "value": 10, "lesion_slices": [1, 2]},
        {"image": "x0.png", "report": "x zero", "modality": "xray", "value": 0},
        {"image": "x1.png", "report": "x one", "modality": "xray", "value": 1},
        {
            "image": "ct1.nii.gz",
            "report": "ct one",
            "modality": "ct",
            "value": 11,
            "lesion_slices": [],
            "num_slices": 9,
        },
    ]


def test_mixed_dataset_indexing():
    ds = build_pretrain_dataset(_items(), _fake_xray, _fake_ct, cache="none")
    assert (len(ds), ds.num_xray, ds.num_ct) == (4, 2, 2)
    assert ds.xray_indices == range(0, 2) and ds.ct_indices == range(2, 4)
    assert ds.source_indices == [1, 2, 0, 3]
    assert [ds[i]["value"] for i in range(4)] == [0, 1, 10, 11]  # X-rays first, then CTs, each in datalist order
    s = ds[3]
    assert s["index"] == 3 and s["lesion_slices"] == [] and s["num_slices"] == 9 and s["report"] == "ct one"
    assert ds[-1]["index"] == 3
    with pytest.raises(IndexError):
        ds[4]
    mem = build_pretrain_dataset(_items(), _fake_xray, _fake_ct, cache="memory", progress=False)
    assert torch.equal(mem[2]["image"], ds[2]["image"])


def test_mixed_dataset_errors(tmp_path):
    bad = _items() + [{"image": "y.png", "report": "", "modality": "mri"}]
    with pytest.raises(ValueError, match=r"entry 4 .*'mri'"):
        build_pretrain_dataset(bad, _fake_xray, _fake_ct, cache="none")
    with pytest.raises(ValueError, match="entry 0 has no 'image'"):
        build_pretrain_dataset([{"modality": "ct"}], _fake_xray, _fake_ct, cache="none")
    with pytest.raises(ValueError, match="cache_dir"):
        build_pretrain_dataset(_items(), _fake_xray, _fake_ct, cache="disk")
    with pytest.raises(ValueError, match="cache must be one of"):
        build_pretrain_dataset(_items(), _fake_xray, _fake_ct, cache="ram")
    with pytest.raises(ValueError, match="source_indices has 1 entries for 0 samples"):
        MixedModalityDataset(None, None, source_indices=[0])

    def failing(d):
        raise FileNotFoundError(f"image file not found: '{d['image']}'")

    ds = build_pretrain_dataset(_items(), _fake_xray, failing, cache="none")
    with pytest.raises(FileNotFoundError, match=r"sample 3 \(ct, datalist entry 3\): .*ct1.nii.gz"):
        ds[3]
    # a plain monai Compose wraps the error in RuntimeError("applying transform ..."): the dataset unwraps it
    ds = build_pretrain_dataset(_items(), Compose([failing]), _fake_ct, cache="none")
    with pytest.raises(FileNotFoundError, match=r"sample 1 \(xray, datalist entry 2\): .*x1.png"):
        ds[1]


# ----------------------------------------------------------------------------------------------- collate


def test_collate_mixed_shapes_and_passthrough():
    ds = build_pretrain_dataset(_items(), _fake_xray, _fake_ct, cache="none")
    batch = collate_mixed([ds[2], ds[0], ds[3], ds[1]])
    x, c = batch["xray"], batch["ct"]
    assert type(x["image"]) is torch.Tensor and x["image"].shape == (2, 1, 8, 8) and x["image"].dtype == torch.float32
    assert c["image"].shape == (2, 1, 8, 8, 4) and type(c["image"]) is torch.Tensor
    assert x["index"].dtype == torch.long and x["index"].tolist() == [0, 1]
    assert c["index"].tolist() == [2, 3]
    assert x["report"] == ["x zero", "x one"] and c["report"] == ["ct zero", "ct one"]
    assert c["lesion_slices"] == [[1, 2], []] and c["num_slices"] == [None, 9]
    assert "modality" not in c and "lesion_slices" not in x
    assert c["image"][:, 0, 0, 0, 0].tolist() == [10.0, 11.0]

    only_ct = collate_mixed([ds[2]])
    assert only_ct["xray"] is None and only_ct["ct"]["image"].shape == (1, 1, 8, 8, 4)

    moved = move_batch_to_device(batch, "cpu")
    assert moved["ct"]["lesion_slices"] == [[1, 2], []] and torch.equal(moved["xray"]["image"], x["image"])
    assert move_batch_to_device(only_ct, torch.device("cpu"))["xray"] is None

    plain = collate_mixed([{k: v for k, v in ds[1].items() if k != "index"}])  # e.g. from a plain monai Dataset
    assert plain["xray"]["index"].tolist() == [-1] and plain["ct"] is None

    with pytest.raises(ValueError, match="share a shape"):
        collate_mixed([ds[0], {**ds[1], "image": torch.zeros(1, 4, 4)}])
    with pytest.raises(ValueError, match="unknown modality"):
        collate_mixed([{**ds[0], "modality": "pet"}])
    with pytest.raises(ValueError, match="empty"):
        collate_mixed([])


def test_dataloader_end_to_end():
    items = [{"image": f"x{i}.png", "report": f"r{i}", "modality": "xray", "value": i} for i in range(12)]
    items += [{"image": f"c{i}.nii.gz", "report": f"c{i}", "modality": "ct", "value": 100 + i} for i in range(3)]
    ds = build_pretrain_dataset(items, _fake_xray, _fake_ct, cache="none")
    sampler = MixedBatchSampler(ds.num_xray, ds.num_ct, batch_size=4, ct_fraction=0.25, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate_mixed)
    batches = list(loader)
    assert len(batches) == len(sampler) == 4
    for b in batches:
        assert b["xray"]["image"].shape == (3, 1, 8, 8) and b["ct"]["image"].shape == (1, 1, 8, 8, 4)
        assert all(i < 12 for i in b["xray"]["index"].tolist()) and all(i >= 12 for i in b["ct"]["index"].tolist())
        # the image content belongs to the indexed sample
        assert b["xray"]["image"][:, 0, 0, 0].tolist() == [float(i) for i in b["xray"]["index"].tolist()]
