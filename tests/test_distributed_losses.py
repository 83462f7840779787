"""Losses over 2 processes (gloo) equal the single-process losses on the concatenated batch."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from unimedi_monai.losses import ClsDistillationLoss, ContrastiveLoss

pytestmark = pytest.mark.distributed


def _worker(
    rank: int,
    world: int,
    init_file: str,
    img: torch.Tensor,
    txt: torch.Tensor,
    s: torch.Tensor,
    t: torch.Tensor,
    out: dict,
) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        sl = slice(3 * rank, 3 * rank + 3)
        local_img = img[sl].clone().requires_grad_(True)
        loss = ContrastiveLoss()(local_img, txt[sl])
        loss.backward()
        icl = ClsDistillationLoss(4)
        icl(s[sl], t[sl])
        # DDP averages gradients over ranks: divide by the world size as it does
        out[rank] = (float(loss.detach()), local_img.grad / world, icl.center.clone())
    finally:
        dist.destroy_process_group()


def test_contrastive_and_centre_over_two_ranks():
    torch.manual_seed(0)
    img, txt = F.normalize(torch.randn(6, 8), dim=-1), F.normalize(torch.randn(6, 8), dim=-1)
    s, t = torch.randn(6, 4), torch.randn(6, 4)
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        manager = mp.Manager()
        out = manager.dict()
        mp.start_processes(_worker, args=(2, init_file, img, txt, s, t, out), nprocs=2, start_method="spawn")
        results = dict(out)
    # the mean of the rank losses (what DDP optimises) is the loss on the concatenated batch
    ref_img = img.clone().requires_grad_(True)
    ref = ContrastiveLoss()(ref_img, txt)
    ref.backward()
    assert (results[0][0] + results[1][0]) / 2 == pytest.approx(float(ref.detach()), rel=1e-5)
    # and the gathered-with-gradient features give the same gradients as one process
    torch.testing.assert_close(torch.cat([results[0][1], results[1][1]]), ref_img.grad, atol=1e-6, rtol=1e-4)
    # both ranks end with the same centre: the all-rank mean of the teacher logits
    torch.testing.assert_close(results[0][2], results[1][2])
    torch.testing.assert_close(results[0][2], 0.1 * t.mean(0, keepdim=True))
