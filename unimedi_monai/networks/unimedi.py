# SPDX-License-Identifier: Apache-2.0
"""UniMedI: unified 2D/3D vision-language pre-training in one module.

One call on a mixed batch (X-rays and CT volumes, each with its report) runs:

1. **EMA teacher, all tokens.** X-ray: teacher on the 196 X-ray tokens. CT: a first teacher pass
   on the 512 volume tokens gives the [CLS] attention, the inter-slice average scores each of the
   32 slices and the top-k slices are cut from the volume (attentive slice selection); a second
   teacher pass on ``[volume tokens | tokens of the k slices]`` (512 + 64k tokens, one sequence)
   gives the distillation targets and the attention that drives masking. Two teacher passes are
   the price of "the teacher sees all tokens" including the slices it selected itself; the first
   is a no-grad forward on 513 tokens, about a sixth of the student's forward+backward on 769.
2. **Student, second view, masked tokens.** The student sees a second view of each image (an
   independent photometric augmentation: contrast, brightness, gamma, noise; see
   :meth:`UniMedI.student_view`), and the ``mask_ratio`` lowest-attention tokens of each token group
   (X-ray tokens; a CT's volume tokens; a CT's slice tokens, each group ranked on its own) are
   replaced by the learnt mask token.
3. **Losses.** ``L_vl``: symmetric InfoNCE between the student's projected [CLS] (masked input,
   as in Attentive-Mask CLIP: the kept patches carry the report's content) and the report
   embedding, over all X-rays and CTs of the batch together. ``L_icl``: DINO loss between student
   and teacher [CLS] through the distillation heads. ``L_pcl``: iBOT loss on the patch tokens at
   the masked positions. ``L_slice`` (``slice_report_weight`` > 0): each CT's report against the
   best-matching of ``slice_report_slices`` of its slices, drawn at random one per depth bin and
   encoded alone through the 2D path (:class:`SliceReportLoss`), so CT slices of every position meet
   their report as text-guided slice selection scores them.
   ``loss = L_vl + icl_weight * L_icl + pcl_weight * L_pcl + slice_report_weight * L_slice``.

X-ray and CT sequences have different lengths (197 vs 769 tokens by default); rather than padding
X-rays to the CT length, the shared backbone runs once per modality group in the same step, so no
compute is spent on padding and every loss is computed over the whole batch.

The teacher is an EMA of the student's vision encoder and distillation head
(:meth:`UniMedI.update_teacher`, called by the trainer after each optimiser step); it never
receives gradients and runs in eval mode, except that during training the BatchNorm layers of a
conv stem normalise with the statistics of the batch, as the student's do (see :meth:`UniMedI.train`).

Why these choices (DINO / iBOT / A-CLIP practice):

- *Two views.* A teacher and a student fed the identical tensor differ only by the mask; the
  [CLS] target is then reached by copying, the KL to the teacher falls to ~0 and L_icl carries no
  signal. DINO, iBOT and A-CLIP all distil across two augmented views. UniMedI's L_pcl compares
  tokens at the same positions (iBOT's masked-patch loss is a same-view loss), so the second view
  here is photometric only: the geometry, the attention mask and the selected slices stay valid for
  both views while the [CLS] must become invariant to intensity changes. The cost is one cheap
  tensor operation (no extra forward pass).
- *Centring per modality / token kind* (:class:`ClsDistillationLoss`, ``num_groups``): one centre for
  a fixed X-ray:CT mix leaves the modality offset in the targets, and sharpening turns it into one
  fixed target per modality.
- *Mask ratio per token group*: ranking 2D and 3D tokens of a CT sequence together lets one group
  be masked completely and the other not at all (their attention scales differ); each group is
  masked at ``mask_ratio`` on its own.
- *Same normalisation in teacher and student*: a conv stem's BatchNorm serves X-rays and CT
  slices; running statistics mix the two, so a teacher in eval mode normalised differently from the
  student (cosine 0.92 between their [CLS] at step 1 with identical weights). As DINO's teacher
  with a BatchNorm backbone, the teacher uses batch statistics during training. The stem keeps its
  running statistics per source (X-rays, CT slices;
  :class:`~unimedi_monai.networks.source_batch_norm.SourceBatchNorm`), so eval mode
  normalises each kind as training did.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from unimedi_monai.losses.cls_distillation import ClsDistillationLoss
from unimedi_monai.losses.contrastive import ContrastiveLoss
from unimedi_monai.losses.patch_distillation import PatchDistillationLoss
from unimedi_monai.losses.slice_report import SliceReportLoss
from unimedi_monai.networks.attention_selection import (
    attention_guided_mask,
    attention_statistics,
    mean_pairwise_cosine,
    sample_slices,
    slice_scores,
    top_k_slices,
)
from unimedi_monai.networks.heads import DistillationHead, ProjectionHead
from unimedi_monai.networks.presets import BackboneConfig
from unimedi_monai.networks.slice_score_centre import SliceScoreCentre
from unimedi_monai.networks.text_encoder import ReportEncoder
from unimedi_monai.networks.vision_encoder import UnifiedVisionEncoder

__all__ = ["UniMedI", "ICL_GROUPS", "PCL_GROUPS"]

#: centring groups of L_icl ([CLS] per modality) and L_pcl (patch tokens per tokenizer and modality)
ICL_GROUPS = ("xray", "ct")
PCL_GROUPS = ("xray", "ct3d", "ct2d")


def _by_group(head: nn.Module, x: torch.Tensor, group: torch.Tensor) -> torch.Tensor:
    """``head`` applied to the rows of each group separately (a head with BatchNorm then normalises
    each modality / token kind with its own batch statistics); one call when there is one group."""
    groups = torch.unique(group)
    if groups.numel() <= 1:
        return _single_safe(head, x)
    parts = [(group == g).nonzero(as_tuple=True)[0] for g in groups.tolist()]
    outs = [_single_safe(head, x[idx]) for idx in parts]
    out = outs[0].new_empty((x.shape[0], outs[0].shape[-1]))
    for idx, o in zip(parts, outs):
        out[idx] = o
    return out


def _binned_slices(offset: torch.Tensor, depth: int) -> torch.Tensor:
    """``(B, n)`` slice indices, slice ``j`` at fraction ``offset[:, j]`` (in [0, 1)) of the ``j``-th of ``n``
    equal depth bins (0.5: the bin centres)."""
    n = offset.shape[1]
    idx = ((torch.arange(n, device=offset.device) + offset) * depth / n).long()
    return idx.clamp_(0, depth - 1)


def _single_safe(head: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``head(x)``; a single row cannot give batch statistics, so its BatchNorm layers then use
    their running statistics for that call."""
    norms = [m for m in head.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if x.shape[0] > 1 or not norms:
        return head(x)
    for m in norms:
        m.eval()
    try:
        return head(x)
    finally:
        for m in norms:
            m.train()


class UniMedI(nn.Module):
    """The UniMedI pre-training model: vision encoder, report encoder, heads, teacher and losses.

    Args:
        backbone: preset name (``"base"`` = ViT-B/16, ``"small"``, ``"demo"``, ``"tiny"``), a dict of
            overrides (``{"preset": "small", "drop_path_rate": 0.0}``) or a :class:`BackboneConfig`.
        text_encoder: a :class:`ReportEncoder`, a dict of its arguments, or None for the offline default.
        xray_size: X-ray input size (224).
        ct_size: CT input size, (H, W, D) (128, 128, 32).
        patch_size_2d: 2D patch (16).
        patch_size_3d: 3D patch, (H, W, D) (16, 16, 4).
        slice_top_k: slices selected per CT (4: 256 slice tokens, 769 tokens per CT sequence).
        mask_ratio: fraction of the student's tokens masked (0.5).
        attention_layers: ``"last"`` or ``"all"``: which teacher blocks' [CLS] attention is used.
        icl_weight: weight of L_icl.
        pcl_weight: weight of L_pcl.
        init_temperature: contrastive temperature at start (0.07).
        min_temperature: contrastive temperature clamp (0.01).
        learn_temperature: learn the contrastive temperature.
        teacher_temperature: distillation teacher temperature (0.04).
        student_temperature: distillation student temperature (0.1).
        center_momentum: distillation centre momentum (0.9).
        projection_hidden_dim: None for linear projections, or a hidden width for 2-layer MLPs.
        student_view: ``"photometric"`` (default): the student gets an independently augmented
            view (:meth:`student_view`); ``"same"``: the teacher's tensor (the single-view variant).
        center_per_group: centre the distillation targets per modality ([CLS]: X-ray, CT) and per
            token kind (patches: X-ray, CT volume, CT slice) (default) or with one centre (DINO).
        head_batch_norm: BatchNorm in the distillation head (DINO's ``use_bn_in_head``), applied to
            one modality / token kind at a time (see :class:`DistillationHead`).
        slice_selection: ``"attention"`` (UniMedI's attentive slice selection by the teacher) or
            ``"uniform"`` (``slice_top_k`` evenly spaced slices, the ablation without selection;
            :meth:`select_slices` still ranks slices by attention for evaluation), or ``"sampled"``: in
            training, ``slice_top_k`` slices drawn without replacement with probability proportional to
            the teacher's attention mass per slice (Gumbel top-k on the raw, uncentred scores; the top-k
            in eval mode, as ``"attention"``). Why: with a content-blind [CLS] attention the top-k locks
            onto one depth for every CT, so the 2D path, and its CT-slice statistics, see CT slices of that
            depth only, while text-guided selection scores slices of every depth; sampling keeps the
            attention's preference and still shows every depth in proportion to its attention.
        position_scale: amplitude of the tokenizers' sine-cosine position init (1.0, MAE's; e.g.
            ``POSITION_RMS_CONV_STEM * 2 ** 0.5`` ~0.028 for ViT's learnt-position RMS 0.02, the smaller
            conv-stem init of the issue-13 study; see :class:`PatchTokenizer`).
        slice_centring: select CT slices on the teacher's slice scores minus their running mean over the
            training CTs (:class:`SliceScoreCentre`), so a slice preference shared by every CT does not
            decide the selection; the centre is saved with the model and used by :meth:`select_slices`.
        slice_report_weight: weight of ``L_slice`` (0: off, no extra pass). Why: in pre-training CT slices
            otherwise reach the 2D path only inside their volume's sequence and at the few positions the
            teacher selects, so scoring a slice alone against a report (text-guided slice selection) rests
            on what the X-rays taught; the term trains exactly that score, on slices of every position.
        slice_report_slices: slices per CT for ``L_slice``, one drawn uniformly in each of this many equal
            depth bins (training; the bin centres in eval mode); the CT's depth (32) takes every slice, so
            the bag always holds the slices of the lesion (a 6 mm nodule lies in 1-2 of 32 slices, so 4
            drawn slices miss it in most CTs and the term then pulls lesion-free slices to the report).
            Cost: this many 2D sequences per CT (64 tokens + [CLS] each at 128x128), a forward and backward
            of the student (with ``slice_report_top`` 0).
        slice_report_top: 0 (default): the gradient of ``L_slice`` goes through every drawn slice. ``m`` > 0:
            the drawn slices are first scored without gradient against the CT's own report, and only the
            ``m`` best are encoded again with gradient; the bag of each CT is then those ``m`` slices. The
            gradient of a bag's maximum reaches its best slice only, so this computes nearly the same loss
            at a fraction of the cost (a forward of every slice, a forward and backward of ``m``).

    Example::

        model = UniMedI("tiny")
        out = model(xray=torch.rand(4, 1, 224, 224), xray_reports=["..."] * 4,
                    ct=torch.rand(2, 1, 128, 128, 32), ct_reports=["..."] * 2)
        out["loss"].backward(); model.update_teacher(0.996)
    """

    def __init__(
        self,
        backbone: str | Mapping[str, Any] | BackboneConfig = "base",
        text_encoder: ReportEncoder | Mapping[str, Any] | None = None,
        xray_size: int | Sequence[int] = 224,
        ct_size: Sequence[int] = (128, 128, 32),
        patch_size_2d: int | Sequence[int] = 16,
        patch_size_3d: Sequence[int] = (16, 16, 4),
        slice_top_k: int = 4,
        mask_ratio: float = 0.5,
        attention_layers: Literal["last", "all"] = "last",
        icl_weight: float = 1.0,
        pcl_weight: float = 1.0,
        init_temperature: float = 0.07,
        min_temperature: float = 0.01,
        learn_temperature: bool = True,
        teacher_temperature: float = 0.04,
        student_temperature: float = 0.1,
        center_momentum: float = 0.9,
        projection_hidden_dim: int | None = None,
        student_view: Literal["photometric", "same"] = "photometric",
        center_per_group: bool = True,
        head_batch_norm: bool = True,
        slice_selection: Literal["attention", "uniform", "sampled"] = "attention",
        position_scale: float = 1.0,
        slice_centring: bool = False,
        slice_report_weight: float = 0.0,
        slice_report_slices: int = 4,
        slice_report_top: int = 0,
    ) -> None:
        super().__init__()
        if attention_layers not in ("last", "all"):
            raise ValueError(f"attention_layers must be 'last' or 'all', got {attention_layers!r}.")
        if slice_selection not in ("attention", "uniform", "sampled"):
            raise ValueError(f"slice_selection must be 'attention', 'uniform' or 'sampled', got {slice_selection!r}.")
        if student_view not in ("photometric", "same"):
            raise ValueError(f"student_view must be 'photometric' or 'same', got {student_view!r}.")
        if not 0.0 <= mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {mask_ratio}.")
        self.encoder = UnifiedVisionEncoder(backbone, xray_size, ct_size, patch_size_2d, patch_size_3d, position_scale)
        cfg = self.encoder.backbone.config
        self.config = cfg
        if text_encoder is None or isinstance(text_encoder, Mapping):
            text_encoder = ReportEncoder(**dict(text_encoder or {}))
        self.text_encoder = text_encoder
        self.image_projection = ProjectionHead(cfg.hidden_size, cfg.embed_dim, projection_hidden_dim)
        self.text_projection = ProjectionHead(text_encoder.hidden_size, cfg.embed_dim, projection_hidden_dim)
        self.head = DistillationHead(
            cfg.hidden_size, cfg.head_out_dim, cfg.head_hidden_dim, cfg.head_bottleneck_dim, use_bn=head_batch_norm
        )
        self.teacher = nn.ModuleDict({"encoder": copy.deepcopy(self.encoder), "head": copy.deepcopy(self.head)})
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.contrastive_loss = ContrastiveLoss(init_temperature, min_temperature, learnable=learn_temperature)
        self.icl_loss = ClsDistillationLoss(
            cfg.head_out_dim,
            student_temperature,
            teacher_temperature,
            center_momentum,
            len(ICL_GROUPS) if center_per_group else 1,
        )
        self.pcl_loss = PatchDistillationLoss(
            cfg.head_out_dim,
            student_temperature,
            teacher_temperature,
            center_momentum,
            len(PCL_GROUPS) if center_per_group else 1,
        )
        self.center_per_group = bool(center_per_group)
        self.slice_selection = slice_selection
        self.student_view_mode = student_view
        n_slices = int(self.encoder.tokenizer_3d.img_size[-1])
        if not 1 <= slice_top_k <= n_slices:
            raise ValueError(f"slice_top_k must be in [1, {n_slices}], got {slice_top_k}.")
        self.slice_top_k = int(slice_top_k)
        self.slice_centring = bool(slice_centring)
        if slice_report_weight < 0:
            raise ValueError(f"slice_report_weight must be >= 0, got {slice_report_weight}.")
        if not 1 <= slice_report_slices <= n_slices:
            raise ValueError(f"slice_report_slices must be in [1, {n_slices}], got {slice_report_slices}.")
        self.slice_report_weight = float(slice_report_weight)
        self.slice_report_slices = int(slice_report_slices)
        if not 0 <= slice_report_top <= slice_report_slices:
            raise ValueError(
                f"slice_report_top must be in [0, slice_report_slices={slice_report_slices}], got {slice_report_top}."
            )
        self.slice_report_top = int(slice_report_top)
        self.slice_report_loss = SliceReportLoss()
        self.slice_centre = SliceScoreCentre(n_slices, center_momentum)
        self.mask_ratio = float(mask_ratio)
        self.attention_layers = attention_layers
        self.icl_weight = float(icl_weight)
        self.pcl_weight = float(pcl_weight)

    # ------------------------------------------------------------------ teacher
    def train(self, mode: bool = True) -> UniMedI:
        """Train / eval mode; the teacher stays in eval mode, but in training its BatchNorm layers
        normalise with batch statistics (without updating its running statistics, which
        :meth:`update_teacher` copies from the student), so teacher and student normalise alike."""
        super().train(mode)
        self.teacher.eval()
        if mode:
            for m in self.teacher.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.train()
                    m.momentum = 0.0  # batch statistics, running statistics left as they are
        return self

    def student_teacher_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Matching lists of student and teacher parameters (encoder, then head)."""
        student = list(self.encoder.parameters()) + list(self.head.parameters())
        teacher = list(self.teacher["encoder"].parameters()) + list(self.teacher["head"].parameters())
        return student, teacher

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """EMA step: ``teacher <- momentum * teacher + (1 - momentum) * student`` over the parameters.

        Buffers (the running statistics of a conv stem's BatchNorm) are copied from the student, so
        the teacher, which always runs in eval mode, normalises with the statistics of the data.
        """
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"teacher momentum must be in [0, 1], got {momentum}.")
        student, teacher = self.student_teacher_pairs()
        teacher_f = [t for t in teacher if t.dtype.is_floating_point]
        student_f = [s.detach() for s, t in zip(student, teacher) if t.dtype.is_floating_point]
        # one pass per tensor (t += (1 - m) * (s - t)), about twice as fast on CPU as a multiply then an add
        torch._foreach_lerp_(teacher_f, student_f, 1.0 - momentum)
        student_buffers = list(self.encoder.buffers()) + list(self.head.buffers())
        teacher_buffers = list(self.teacher["encoder"].buffers()) + list(self.teacher["head"].buffers())
        for s, t in zip(student_buffers, teacher_buffers):
            t.copy_(s)

    # ------------------------------------------------------------------ pieces
    def _teacher_select(
        self,
        volumes: torch.Tensor,
        k: int,
        volume_tokens: torch.Tensor | None = None,
        update_centre: bool = False,
        sample: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.teacher["encoder"]
        if volume_tokens is None:
            volume_tokens = enc.embed_volume(volumes)
        out = enc(volume_tokens, cls_attention=self.attention_layers)
        grid = enc.tokenizer_3d.grid_for(volumes.shape[2:])
        raw = slice_scores(out["cls_attention"], grid, volumes.shape[-1])
        scores = self.slice_centre(raw)  # raw scores until a centre was fitted (slice_centring)
        if update_centre and self.slice_centring:
            self.slice_centre.update(raw)
        if sample:  # k slices without replacement, probability proportional to the raw attention mass
            return sample_slices(raw, k), scores
        return top_k_slices(scores, k), scores

    @torch.no_grad()
    def select_slices(self, volume: torch.Tensor, k: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Attentive slice selection with the teacher.

        Args:
            volume: ``(B, 1, H, W, D)`` CT (128x128x32 by default).
            k: number of slices (default ``slice_top_k``).

        Returns:
            ``(indices, scores)``: ``(B, k)`` selected slice indices (ascending) and ``(B, D)`` per-slice scores
            (minus the training CTs' mean scores for a model trained with ``slice_centring``).
        """
        return self._teacher_select(volume, k or self.slice_top_k)

    def uniform_slices(self, volumes: torch.Tensor) -> torch.Tensor:
        """``(B, slice_top_k)`` evenly spaced slice indices (the centres of ``slice_top_k`` equal bins)."""
        offset = torch.full((volumes.shape[0], self.slice_top_k), 0.5, device=volumes.device)
        return _binned_slices(offset, volumes.shape[-1])

    def random_slices(self, volumes: torch.Tensor, n: int) -> torch.Tensor:
        """``(B, n)`` slice indices, one per equal depth bin: uniform within the bin in training
        (global torch RNG, so a resumed run draws the same), the bin centre in eval mode."""
        b = volumes.shape[0]
        offset = (
            torch.rand(b, n, device=volumes.device) if self.training else torch.full((b, n), 0.5, device=volumes.device)
        )
        return _binned_slices(offset, volumes.shape[-1])

    @torch.no_grad()
    def student_view(self, images: torch.Tensor) -> torch.Tensor:
        """The student's view: an independent photometric augmentation of each image (or volume).

        Per sample: contrast ``x' = m + a (x - m)`` around the image mean ``m`` with ``a ~ U(0.7, 1.3)``,
        brightness ``+ b`` with ``b ~ U(-0.1, 0.1)`` times the image's intensity range, a gamma
        ``~ exp(U(-0.3, 0.3))`` on the min-max normalised image, and Gaussian noise (std 2% of the
        range). Geometry is untouched, so patch positions, the teacher's attention mask and the
        selected slices hold for both views (needed by L_pcl). Draws from the global torch RNG
        (saved in training checkpoints, so a resumed run draws the same views).
        ``student_view="same"`` returns ``images`` unchanged.
        """
        if self.student_view_mode == "same":
            return images
        x = images.float()
        b = x.shape[0]
        shape = (b,) + (1,) * (x.ndim - 1)
        dims = tuple(range(1, x.ndim))
        lo, hi = x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True)
        span = (hi - lo).clamp_min(1e-6)
        u = (x - lo) / span
        gamma = torch.empty(shape, device=x.device).uniform_(-0.3, 0.3).exp()
        u = u.clamp_min(0).pow(gamma)
        mean = u.mean(dim=dims, keepdim=True)
        contrast = torch.empty(shape, device=x.device).uniform_(0.7, 1.3)
        shift = torch.empty(shape, device=x.device).uniform_(-0.1, 0.1)
        u = mean + contrast * (u - mean) + shift + 0.02 * torch.randn_like(u)
        return (lo + u * span).to(images.dtype)

    def _group_mask(self, attention: torch.Tensor, n3d: int | None) -> torch.Tensor:
        """Attention-guided mask with ``mask_ratio`` applied to each token group on its own
        (X-ray: all tokens; CT: the ``n3d`` volume tokens, then the slice tokens)."""
        if n3d is None or n3d >= attention.shape[1]:
            return attention_guided_mask(attention, self.mask_ratio)
        return torch.cat(
            [
                attention_guided_mask(attention[:, :n3d], self.mask_ratio),
                attention_guided_mask(attention[:, n3d:], self.mask_ratio),
            ],
            dim=1,
        )

    def _group(self, images: torch.Tensor, is_ct: bool) -> dict[str, Any]:
        """Teacher (unmasked view) and student (second view, masked) passes for one modality group."""
        teacher_enc = self.teacher["encoder"]
        n3d = None
        with torch.no_grad():
            selected = None
            if is_ct:
                volume_tokens = teacher_enc.embed_volume(images)  # tokenised once, used by both teacher passes
                n3d = volume_tokens.shape[1]
                if self.slice_selection == "uniform":
                    selected = self.uniform_slices(images)
                else:
                    selected, _ = self._teacher_select(
                        images,
                        self.slice_top_k,
                        volume_tokens,
                        update_centre=self.training,
                        sample=self.training and self.slice_selection == "sampled",
                    )
                t_tokens = teacher_enc.embed_ct(images, selected, volume_tokens=volume_tokens)
            else:
                t_tokens = teacher_enc.embed_xray(images)
            t_out = teacher_enc(t_tokens, cls_attention=self.attention_layers)
            mask = self._group_mask(t_out["cls_attention"], n3d)
            view = self.student_view(images) if self.training else images
        s_tokens = self.encoder.embed_ct(view, selected, mask) if is_ct else self.encoder.embed_xray(view, mask)
        s_out = self.encoder(s_tokens)
        out = {"teacher": t_out, "student": s_out, "mask": mask, "selected": selected, "n3d": n3d, "is_ct": is_ct}
        if is_ct and self.slice_report_weight > 0:
            # L_slice: slices drawn over the whole depth, each encoded alone (unmasked) by the student
            idx = self.random_slices(images, self.slice_report_slices)
            out.update(report_slices=idx, report_view=view)
            if not self.slice_report_top:
                out["report_slice_cls"] = self.slice_features(view, idx)
        return out

    def slice_features(self, volumes: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The student's global feature ``(B, k, hidden)`` of the slices ``idx`` ``(B, k)`` of ``(B, 1, H, W, D)``
        volumes, each slice encoded alone through the 2D path (its tokenizer with the CT-slice statistics)."""
        tokens = self.encoder.embed_slices(volumes, idx)
        b, n = idx.shape
        return self.encoder(tokens.reshape(b * n, -1, tokens.shape[-1]))["pooled"].reshape(b, n, -1)

    def _best_report_slices(self, g: dict[str, Any], own_text: torch.Tensor) -> None:
        """``slice_report_top``: keep the ``m`` drawn slices of each CT closest to its own report ``(Bc, D)``
        (scored without gradient), then encode those with gradient (``report_slices`` / ``report_slice_cls``)."""
        with torch.no_grad():
            emb = self.image_projection(self.slice_features(g["report_view"], g["report_slices"]))
            sims = (emb * own_text.detach().unsqueeze(1)).sum(-1)  # (Bc, n)
            top = sims.topk(self.slice_report_top, dim=1).indices
        g["report_slices"] = g["report_slices"].gather(1, top)
        g["report_slice_cls"] = self.slice_features(g["report_view"], g["report_slices"])

    # ------------------------------------------------------------------ training step
    def forward(
        self,
        xray: torch.Tensor | None = None,
        xray_reports: Sequence[str] | None = None,
        ct: torch.Tensor | None = None,
        ct_reports: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Compute every loss on a mixed batch.

        Args:
            xray: ``(Bx, 1, 224, 224)`` X-rays or None.
            xray_reports: their ``Bx`` reports.
            ct: ``(Bc, 1, 128, 128, 32)`` CT volumes or None.
            ct_reports: their ``Bc`` reports.

        Returns:
            dict: ``loss`` (total, with graph), ``loss_vl``, ``loss_icl``, ``loss_pcl``, ``loss_slice``
            (detached; 0 without CTs or with ``slice_report_weight`` 0),
            ``temperature`` (float), ``mask_ratio`` (fraction of tokens masked), ``selected_slices``
            (``(Bc, k)`` or None), ``image_embedding`` / ``text_embedding`` (detached, X-rays first),
            ``diagnostics`` (dict of floats, see :meth:`_diagnostics`; per-group mask ratios too).
        """
        groups: list[tuple[dict[str, Any], Sequence[str]]] = []
        for images, reports, is_ct, name in ((xray, xray_reports, False, "xray"), (ct, ct_reports, True, "ct")):
            if images is None or images.shape[0] == 0:
                continue
            if reports is None or len(reports) != images.shape[0]:
                raise ValueError(
                    f"{name}: {images.shape[0]} images but {0 if reports is None else len(reports)} reports."
                )
            groups.append((self._group(images, is_ct), reports))
        if not groups:
            raise ValueError("UniMedI.forward needs X-rays or CT volumes (both were empty).")

        student_cls = torch.cat([g["student"]["pooled"] for g, _ in groups])
        teacher_cls = torch.cat([g["teacher"]["pooled"] for g, _ in groups])
        reports_all = [r for _, reps in groups for r in reps]
        image_emb = self.image_projection(student_cls)
        text_emb = self.text_projection(self.text_encoder(reports_all))
        loss_vl = self.contrastive_loss(image_emb, text_emb)
        loss_slice = text_emb.new_zeros(())
        slice_diagnostics: dict[str, float] = {}
        first_row = 0
        for g, reps in groups:
            if "report_slices" in g:
                targets = torch.arange(len(reps), device=text_emb.device) + first_row
                if "report_slice_cls" not in g:
                    self._best_report_slices(g, text_emb[targets])
                loss_slice, best = self.slice_report_loss(
                    self.image_projection(g["report_slice_cls"]),
                    text_emb,
                    targets,
                    self.contrastive_loss.logit_scale_value(),
                )
                pos = g["report_slices"].gather(1, best.unsqueeze(1)).float()
                slice_diagnostics["slice_pos_text_mean"] = float(pos.mean())
                slice_diagnostics["slice_pos_text_spread"] = float(pos.std(unbiased=False)) if len(pos) > 1 else 0.0
            first_row += len(reps)

        device = student_cls.device
        icl_group = torch.cat(
            [
                torch.full(
                    (g["student"]["cls"].shape[0],),
                    int(g["is_ct"]) if self.center_per_group else 0,
                    dtype=torch.long,
                    device=device,
                )
                for g, _ in groups
            ]
        )
        loss_icl = self.icl_loss(
            _by_group(self.head, student_cls, icl_group),
            _by_group(self.teacher["head"], teacher_cls, icl_group).detach(),
            icl_group,
            ICL_GROUPS if self.center_per_group else ("all",),
        )

        s_masked, t_masked, sample_idx, token_group = [], [], [], []
        offset = 0
        masked_tokens = total_tokens = 0
        mask_ratios: dict[str, float] = {}
        for g, _ in groups:
            mask = g["mask"]
            s_masked.append(g["student"]["patches"][mask])
            t_masked.append(g["teacher"]["patches"][mask])
            rows = torch.arange(mask.shape[0], device=mask.device).unsqueeze(1).expand_as(mask)[mask]
            sample_idx.append(rows + offset)
            kinds = torch.zeros(mask.shape[1], dtype=torch.long, device=mask.device)
            if g["is_ct"]:
                kinds[: g["n3d"]] = PCL_GROUPS.index("ct3d")
                kinds[g["n3d"] :] = PCL_GROUPS.index("ct2d")
                mask_ratios["mask_ratio_ct3d"] = float(mask[:, : g["n3d"]].float().mean())
                if mask.shape[1] > g["n3d"]:
                    mask_ratios["mask_ratio_ct2d"] = float(mask[:, g["n3d"] :].float().mean())
            else:
                mask_ratios["mask_ratio_xray"] = float(mask.float().mean())
            token_group.append(
                kinds.unsqueeze(0).expand_as(mask)[mask] if self.center_per_group else torch.zeros_like(rows)
            )
            offset += mask.shape[0]
            masked_tokens += int(mask.sum())
            total_tokens += mask.numel()
        token_group_all = torch.cat(token_group)
        with torch.no_grad():
            teacher_patch_logits = _by_group(self.teacher["head"], torch.cat(t_masked), token_group_all)
        loss_pcl = self.pcl_loss(
            _by_group(self.head, torch.cat(s_masked), token_group_all),
            teacher_patch_logits,
            torch.cat(sample_idx),
            offset,
            token_group_all,
            PCL_GROUPS if self.center_per_group else ("all",),
        )

        loss = loss_vl + self.icl_weight * loss_icl + self.pcl_weight * loss_pcl + self.slice_report_weight * loss_slice
        ct_group = next((g for g, _ in groups if g["selected"] is not None), None)
        diagnostics = self._diagnostics(groups, ct_group)
        diagnostics.update(mask_ratios)
        diagnostics.update(slice_diagnostics)
        return {
            "loss": loss,
            "loss_vl": loss_vl.detach(),
            "loss_icl": loss_icl.detach(),
            "loss_pcl": loss_pcl.detach(),
            "loss_slice": loss_slice.detach(),
            "temperature": self.contrastive_loss.temperature,
            "mask_ratio": masked_tokens / max(total_tokens, 1),
            "selected_slices": None if ct_group is None else ct_group["selected"],
            "image_embedding": image_emb.detach(),
            "text_embedding": text_emb.detach(),
            "diagnostics": diagnostics,
        }

    @torch.no_grad()
    def _diagnostics(
        self, groups: Sequence[tuple[dict[str, Any], Sequence[str]]], ct_group: dict[str, Any] | None
    ) -> dict[str, float]:
        """Detached health figures of the step, from tensors the step computed anyway.

        ``icl_*`` / ``pcl_*``: the distillation losses' :attr:`~ClsDistillationLoss.last_diagnostics`
        (teacher target entropy overall and per group against ``*_log_k``, student-teacher KL,
        distinct teacher top prototypes per group in the batch); ``teacher_cls_cos_<modality>``:
        mean cosine between the teacher's global feature (the backbone's ``pooled``: its [CLS], plus the
        token max with ``cls_max`` pooling) of different images of the batch (1: the teacher does
        not tell images apart); ``slice_pos_mean`` / ``slice_pos_spread``: mean selected slice index
        and the standard deviation over the batch's CTs of each CT's mean selected index (a spread
        near 0 means slices are picked by position, not content). :meth:`forward` adds
        ``slice_pos_text_mean`` / ``slice_pos_text_spread`` with ``L_slice`` on: the mean and spread over
        the batch's CTs of the index of each CT's ``L_slice`` slice that best matches its own report.
        ``teacher_attn_entropy_<modality>``: entropy of the teacher's [CLS] attention over the patch tokens
        (renormalised over them; for CT the volume's tokens only), divided by its maximum log N (1: uniform
        attention, the [CLS] is a plain average in which a small lesion is diluted by 1 / N);
        ``teacher_attn_cos_<modality>``: mean cosine between the attention maps of different images (1: the
        attention depends on position only, not on the image).
        """
        out: dict[str, float] = {}
        for prefix, loss in (("icl", self.icl_loss), ("pcl", self.pcl_loss)):
            for key, value in loss.last_diagnostics.items():
                out[f"{prefix}_{key}"] = float(value)
        for g, _ in groups:
            modality = "ct" if g["is_ct"] else "xray"
            n = g["teacher"]["cls"].shape[0]
            if n > 1:
                out[f"teacher_cls_cos_{modality}"] = mean_pairwise_cosine(g["teacher"]["pooled"])
            attention = g["teacher"]["cls_attention"]
            if attention is not None:
                entropy, cosine = attention_statistics(attention[:, : g["n3d"]] if g["is_ct"] else attention)
                out[f"teacher_attn_entropy_{modality}"] = entropy
                if n > 1:
                    out[f"teacher_attn_cos_{modality}"] = cosine
        if ct_group is not None:
            pos = ct_group["selected"].float()
            out["slice_pos_mean"] = float(pos.mean())
            out["slice_pos_spread"] = float(pos.mean(dim=1).std(unbiased=False)) if pos.shape[0] > 1 else 0.0
        return out

    # ------------------------------------------------------------------ downstream API
    def encode_image(
        self,
        images: torch.Tensor,
        with_slices: bool = True,
        normalize: bool = True,
        slice_indices: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed X-rays ``(B, 1, 224, 224)`` or CT volumes ``(B, 1, 128, 128, 32)`` with the student.

        Args:
            images: a batch of one modality (4D: X-rays / 2D images, 5D: CT volumes).
            with_slices: for CT, add the teacher-selected slices as in pre-training (default) or
                encode the 512 volume tokens alone.
            normalize: L2-normalise the embedding.
            slice_indices: ``(B, k)`` CT slices already chosen (e.g. by :meth:`select_slices`), so the
                teacher's selection pass is not run again.

        Returns:
            ``(embedding, patches)``: the projected global feature (the backbone's ``pooled``: the [CLS],
            plus the token max with ``cls_max`` pooling) ``(B, embed_dim)`` and the patch tokens
            ``(B, N, hidden)`` (for CT with slices: the volume tokens, then the slices' tokens).
        """
        out = self.image_features(images, with_slices, slice_indices)
        return self.image_projection(out["pooled"], normalize=normalize), out["patches"]

    def image_features(
        self, images: torch.Tensor, with_slices: bool = True, slice_indices: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The student backbone's output for X-rays or CTs (:meth:`SharedBackbone.forward`): ``pooled``
        ``(B, hidden)`` (the global feature before the projection, what a linear probe reads), ``cls`` and
        ``patches``; arguments as :meth:`encode_image`."""
        if images.ndim == 4:
            tokens = self.encoder.embed_xray(images)
        elif images.ndim == 5:
            selected = None
            if with_slices and slice_indices is not None:
                selected = slice_indices
            elif with_slices:
                selected = (
                    self.uniform_slices(images)
                    if self.slice_selection == "uniform"
                    else self._teacher_select(images, self.slice_top_k)[0]
                )
            tokens = self.encoder.embed_ct(images, selected)
        else:
            raise ValueError(f"encode_image expects (B,1,H,W) or (B,1,H,W,D), got shape {tuple(images.shape)}.")
        return self.encoder(tokens)

    def encode_text(self, reports: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """Embed reports ``(B, embed_dim)`` in the image embedding space."""
        return self.text_projection(self.text_encoder(reports), normalize=normalize)
