# SPDX-License-Identifier: Apache-2.0
"""The UniMedI pre-training engine: an ignite trainer built on ``monai.engines.Trainer``."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from monai.engines import Trainer
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from unimedi_monai.engines.schedules import cosine_schedule

__all__ = ["UniMedITrainer", "unwrap_model", "training_scalars"]

logger = logging.getLogger(__name__)

#: the model's loss terms, reported beside the total
LOSS_TERMS = ("loss_vl", "loss_icl", "loss_pcl", "loss_slice")

SCALAR_KEYS = (
    "loss",
    *LOSS_TERMS,
    "temperature",
    "mask_ratio",
    "lr",
    "weight_decay",
    "teacher_momentum",
    "teacher_temperature",
    "grad_norm",
)


def unwrap_model(network: nn.Module) -> nn.Module:
    """The model inside a DDP / DataParallel wrapper (or the model itself)."""
    return network.module if isinstance(network, (DistributedDataParallel, nn.DataParallel)) else network


def training_scalars(output: dict[str, Any]) -> dict[str, float]:
    """The scalar entries of a trainer output (for StatsHandler / TensorBoardStatsHandler ``output_transform``):
    the :data:`SCALAR_KEYS` present, then the model's ``diagnostics`` (see ``UniMedI._diagnostics``)."""
    scalars = {k: float(output[k]) for k in SCALAR_KEYS if k in output}
    scalars.update({k: float(v) for k, v in (output.get("diagnostics") or {}).items()})
    return scalars


def _to_device(group: dict[str, Any] | None, device: torch.device, non_blocking: bool) -> dict[str, Any] | None:
    if group is None:
        return None
    return {k: v.to(device, non_blocking=non_blocking) if isinstance(v, torch.Tensor) else v for k, v in group.items()}


class UniMedITrainer(Trainer):
    """Runs the UniMedI step under ignite: AMP, gradient clipping, scheduled AdamW, EMA teacher.

    Per iteration ``i`` (0-based, over ``max_epochs * epoch_length`` steps), the precomputed
    schedules set each parameter group's LR (``lr[i] * group["lr_scale"]``; linear warm-up then
    cosine to ``min_lr``) and weight decay (cosine ``weight_decay -> weight_decay_end`` on groups
    with ``apply_weight_decay``); after the optimiser step the teacher is updated with momentum
    ``teacher_momentum[i]`` (cosine ``teacher_momentum -> teacher_momentum_end``).

    A non-finite loss stops the run with ``FloatingPointError`` naming the iteration; nothing is
    stepped, so the last checkpoint on disk stays the last good state.

    Bad samples: the samples a dataset with ``on_bad_sample="skip"`` left out of a batch (listed under
    the batch's ``"skipped"`` key by :func:`unimedi_monai.data.collate_mixed`) are logged one by one
    (datalist entry, file, reason) and counted; at the end of each epoch the count is logged. A batch
    left empty is passed over without an optimiser step (the schedules still advance).

    Long reports: reports with more tokens than the report encoder's ``max_length`` are truncated by
    the encoder (as in the paper); the first of each epoch is logged and the count at the end of it.

    Example::

        trainer = UniMedITrainer(device="cpu", max_epochs=10, train_data_loader=loader, network=model,
                                 optimizer=opt, lr=5e-4, train_handlers=[CheckpointHandler("models", {...})])
        trainer.run()

    Args:
        device: torch device.
        max_epochs: epochs to run.
        train_data_loader: yields collated mixed batches ``{"xray": {...} | None, "ct": {...} | None}``.
        network: ``UniMedI`` (or DDP-wrapped).
        optimizer: built on :func:`unimedi_monai.engines.param_groups` groups.
        epoch_length: iterations per epoch (default ``len(train_data_loader)``).
        lr: peak learning rate (after warm-up).
        min_lr: final learning rate.
        warmup_iterations: linear warm-up steps.
        weight_decay: starting weight decay.
        weight_decay_end: final weight decay.
        teacher_momentum: starting EMA momentum (0.996).
        teacher_momentum_end: final EMA momentum (1.0, DINO's choice for runs of 100+ epochs). The
            teacher averages over about ``1 / (1 - m)`` steps; on a short run a cosine to 1.0 freezes
            the teacher for the last part of the run (it stops following the student), so short
            runs should end below 1 (e.g. 0.996).
        teacher_temperature_warmup_iterations: the distillation teacher temperature rises linearly
            from ``warmup_teacher_temperature`` to the network's teacher temperature over these first
            steps (DINO's ``warmup_teacher_temp``: 0.04 -> 0.07); 0: constant.
        warmup_teacher_temperature: start of that warm-up (None: no warm-up).
        grad_clip: max gradient norm (0 or None: no clipping).
        mask_warmup_iterations: the student's mask ratio rises linearly from 0 to the network's
            ``mask_ratio`` over these first steps (0: masked at full ratio from the start). Early on the
            teacher's attention is still random, so masking hides the very patches the reports
            describe; ramping it in (as iBOT delays its masked prediction) lets the contrastive
            signal form first.
        amp: mixed precision (bf16 or fp16 autocast on GPU; bf16 on CPU).
        amp_dtype: ``"bfloat16"`` or ``"float16"`` (fp16 uses a GradScaler).
        non_blocking: non-blocking host-to-device copies.
        train_handlers: ignite / MONAI handlers to attach.
    """

    def __init__(
        self,
        device: torch.device | str,
        max_epochs: int,
        train_data_loader: Iterable,
        network: nn.Module,
        optimizer: torch.optim.Optimizer,
        epoch_length: int | None = None,
        lr: float = 5e-4,
        min_lr: float = 1e-6,
        warmup_iterations: int = 0,
        weight_decay: float = 0.04,
        weight_decay_end: float = 0.4,
        teacher_momentum: float = 0.996,
        teacher_momentum_end: float = 1.0,
        teacher_temperature_warmup_iterations: int = 0,
        warmup_teacher_temperature: float | None = None,
        grad_clip: float | None = 3.0,
        mask_warmup_iterations: int = 0,
        amp: bool = False,
        amp_dtype: str = "bfloat16",
        non_blocking: bool = True,
        train_handlers: Sequence | None = None,
    ) -> None:
        if amp_dtype not in ("bfloat16", "float16"):
            raise ValueError(f"amp_dtype must be 'bfloat16' or 'float16', got {amp_dtype!r}.")
        if epoch_length is None:
            epoch_length = len(train_data_loader)  # type: ignore[arg-type]
        if epoch_length < 1:
            raise ValueError(
                "the training data loader is empty: check the datalist's 'training' section and batch size."
            )
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            handlers=train_handlers,
            amp=amp,
            decollate=False,
        )
        self.network = network
        self.optimizer = optimizer
        self.grad_clip = grad_clip
        self.amp_dtype = getattr(torch, amp_dtype)
        total = max_epochs * epoch_length
        self.lr_schedule = cosine_schedule(lr, min_lr, total, warmup_iterations)
        self.wd_schedule = cosine_schedule(weight_decay, weight_decay_end, total)
        self.momentum_schedule = cosine_schedule(teacher_momentum, teacher_momentum_end, total)
        self.teacher_temperature_schedule = None
        losses = [getattr(unwrap_model(network), name, None) for name in ("icl_loss", "pcl_loss")]
        losses = [loss for loss in losses if loss is not None and hasattr(loss, "teacher_temperature")]
        if warmup_teacher_temperature is not None and teacher_temperature_warmup_iterations > 0 and losses:
            if warmup_teacher_temperature <= 0:
                raise ValueError(f"warmup_teacher_temperature must be positive, got {warmup_teacher_temperature}.")
            final = float(losses[0].teacher_temperature)
            ramp = np.clip(np.arange(total, dtype=np.float64) / int(teacher_temperature_warmup_iterations), 0.0, 1.0)
            self.teacher_temperature_schedule = warmup_teacher_temperature + ramp * (final - warmup_teacher_temperature)
        self._distillation_losses = losses
        target_ratio = float(getattr(unwrap_model(network), "mask_ratio", 0.0))
        ramp = np.clip(np.arange(total, dtype=np.float64) / max(int(mask_warmup_iterations), 1), 0.0, 1.0)
        self.mask_ratio_schedule = target_ratio * (ramp if mask_warmup_iterations > 0 else np.ones(total))
        use_scaler = amp and self.amp_dtype == torch.float16 and self.state.device.type == "cuda"
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        self.add_event_handler(Events.COMPLETED, self._sync_buffers)
        self.skipped_samples = 0  # this epoch
        self.truncated_reports = 0  # this epoch
        self.add_event_handler(Events.EPOCH_STARTED, self._reset_counts)
        self.add_event_handler(Events.EPOCH_COMPLETED, self._log_counts)
        batch_sampler = getattr(train_data_loader, "batch_sampler", None)
        if hasattr(batch_sampler, "set_epoch"):
            # shuffles depend on the (0-based) epoch; a restored epoch keeps the sampler's resume position
            self.add_event_handler(Events.EPOCH_STARTED, lambda engine: batch_sampler.set_epoch(engine.state.epoch - 1))

    def _reset_counts(self, engine: Any) -> None:
        self.skipped_samples = 0
        self.truncated_reports = 0

    def _log_counts(self, engine: Any) -> None:
        if self.skipped_samples:
            logger.warning(
                "epoch %d: %d bad samples were skipped (on_bad_sample=skip); each is logged above. Fix or remove them.",
                engine.state.epoch,
                self.skipped_samples,
            )
        if self.truncated_reports:
            logger.warning(
                "epoch %d: %d reports were longer than the report encoder's limit and were truncated "
                "(text_max_length).",
                engine.state.epoch,
                self.truncated_reports,
            )

    def _count_long_reports(self, model: nn.Module, groups: Sequence[dict[str, Any] | None]) -> None:
        encoder = getattr(model, "text_encoder", None)
        tokenizer, limit = getattr(encoder, "tokenizer", None), getattr(encoder, "max_length", None)
        if tokenizer is None or limit is None:
            return
        for group in groups:
            if group is None:
                continue
            lengths = [
                len(ids) for ids in tokenizer(list(group["report"]), truncation=False, verbose=False)["input_ids"]
            ]
            for pos, n in enumerate(lengths):
                if n > limit:
                    if self.truncated_reports == 0:
                        logger.warning(
                            "a report of sample %s has %d tokens, more than the report encoder's max_length %d: it is "
                            "truncated (raise text_max_length to keep more; the count is logged at the end of the "
                            "epoch).",
                            int(group["index"][pos]) if "index" in group else pos,
                            n,
                            limit,
                        )
                    self.truncated_reports += 1

    def _sync_buffers(self, engine: Any) -> None:
        """End every rank with rank 0's buffers (BatchNorm statistics, loss centres).

        DDP already treats rank 0's buffers as authoritative (it broadcasts them before each forward);
        one last broadcast after the final step makes every rank's final state bit-identical.
        """
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            for buffer in unwrap_model(self.network).buffers():
                dist.broadcast(buffer, src=0)

    def run(self) -> None:  # type: ignore[override]
        """Train (continuing from a restored state if a resume handler loaded one)."""
        super(Trainer, self).run()

    def _iteration(self, engine: Any, batchdata: dict[str, Any]) -> dict[str, Any]:
        step = min(engine.state.iteration - 1, len(self.lr_schedule) - 1)
        device = engine.state.device
        lr, wd, momentum = (
            float(self.lr_schedule[step]),
            float(self.wd_schedule[step]),
            float(self.momentum_schedule[step]),
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
            if group.get("apply_weight_decay", True):
                group["weight_decay"] = wd
        model = unwrap_model(self.network)
        if hasattr(model, "mask_ratio"):
            model.mask_ratio = float(self.mask_ratio_schedule[step])
        teacher_temperature = None
        if self.teacher_temperature_schedule is not None:
            teacher_temperature = float(self.teacher_temperature_schedule[step])
            for loss_module in self._distillation_losses:
                loss_module.teacher_temperature = teacher_temperature
        for message in batchdata.get("skipped", ()):
            logger.warning("iteration %d: skipped a bad sample: %s", engine.state.iteration, message)
            self.skipped_samples += 1
        if batchdata.get("xray") is None and batchdata.get("ct") is None:
            logger.warning(
                "iteration %d: every sample of the batch was skipped; no optimiser step.", engine.state.iteration
            )
            nan = float("nan")
            return {
                "loss": nan,
                **dict.fromkeys(LOSS_TERMS, nan),
                "lr": lr,
                "weight_decay": wd,
                "teacher_momentum": momentum,
            }
        self._count_long_reports(model, (batchdata.get("xray"), batchdata.get("ct")))
        xray = _to_device(batchdata.get("xray"), device, self.non_blocking)
        ct = _to_device(batchdata.get("ct"), device, self.non_blocking)
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=self.amp_dtype, enabled=self.amp):
            out = self.network(
                xray=None if xray is None else xray["image"],
                xray_reports=None if xray is None else xray["report"],
                ct=None if ct is None else ct["image"],
                ct_reports=None if ct is None else ct["report"],
            )
        loss = out["loss"]
        if not torch.isfinite(loss.detach()):
            parts = {k: float(out[k]) for k in LOSS_TERMS}
            raise FloatingPointError(
                f"non-finite loss at iteration {engine.state.iteration} (epoch {engine.state.epoch}): {parts}; "
                "the run stopped before the optimiser step, so the last checkpoint is the last good state. "
                "Lower the learning rate or disable fp16 AMP (use bfloat16) and resume."
            )
        self.grad_scaler.scale(loss).backward()
        grad_norm = float("nan")
        if self.grad_clip:
            self.grad_scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        model.update_teacher(momentum)
        result = {k: v for k, v in out.items() if k in (*LOSS_TERMS, "temperature", "mask_ratio")}
        result = {k: float(v) for k, v in result.items()}
        result.update(loss=float(loss.detach()), lr=lr, weight_decay=wd, teacher_momentum=momentum)
        if not math.isnan(grad_norm):
            result["grad_norm"] = grad_norm
        if teacher_temperature is not None:
            result["teacher_temperature"] = teacher_temperature
        if out.get("diagnostics"):
            result["diagnostics"] = {k: float(v) for k, v in out["diagnostics"].items()}
        if out.get("selected_slices") is not None:
            result["selected_slices"] = out["selected_slices"].detach().cpu()
        return result
