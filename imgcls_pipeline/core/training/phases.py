"""The two training phases: warm-up (frozen backbone, small margin), then fine-tuning.

Warm-up trains only the new parts (embedding head, ArcFace class centres) on top of the pretrained
features with ``arcface_m_warmup`` (0 = plain normalised softmax): random class centres and a large
margin at once would send large, noisy gradients into the pretrained backbone. After
``warmup_epochs`` everything trains with the full margin ``arcface_m_finetune``.
"""

from __future__ import annotations

from typing import Literal

from imgcls_pipeline.core.settings import ModelConfig
from imgcls_pipeline.core.training.arcface import ArcFace
from imgcls_pipeline.core.training.model import EmbeddingModel

Phase = Literal["warmup", "finetune"]


def phase_for_epoch(epoch_index: int, warmup_epochs: int) -> Phase:
    """Phase of the 0-based epoch ``epoch_index``; a resumed run derives it the same way."""
    return "warmup" if epoch_index < warmup_epochs else "finetune"


def margin_for_phase(phase: Phase, model_cfg: ModelConfig) -> float:
    return model_cfg.arcface_m_warmup if phase == "warmup" else model_cfg.arcface_m_finetune


def apply_phase(
    model: EmbeddingModel, arcface: ArcFace, phase: Phase, model_cfg: ModelConfig
) -> None:
    """Freeze or unfreeze the backbone and set the margin; call after ``module.train()``."""
    frozen = phase == "warmup"
    model.backbone.requires_grad_(not frozen)
    if frozen:
        # requires_grad=False alone would still update BatchNorm running statistics in train mode.
        model.backbone.eval()
    arcface.margin = margin_for_phase(phase, model_cfg)
