"""ArcFace (additive angular margin) logits, Deng et al. 2019.

For the true class the logit is s·cos(θ + m) instead of s·cos θ; other classes keep s·cos θ.
cos(θ + m) = cos θ·cos m − sin θ·sin m. It is only monotonic in θ while θ + m ≤ π, so past that
point (cos θ ≤ cos(π − m), the "th" threshold) the usual replacement cos θ − m·sin m ("mm") keeps
the penalty growing with θ instead of rewarding a worse angle ("easy margin" off).

Sub-center ArcFace (Deng et al. 2020): each class has ``subcenters`` = k centres and its cosine is
the largest over them, so a class whose photos form several clusters (a product's front and back)
need not pull them onto one centre; with k=1 it is plain ArcFace, weight for weight.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from imgcls_pipeline.core.errors import UserError


class ArcFace(nn.Module):
    def __init__(
        self,
        embedding_dim: int,
        num_classes: int,
        s: float = 64.0,
        m: float = 0.5,
        subcenters: int = 1,
    ):
        super().__init__()
        # Rows c·k … c·k + k − 1 are the k centres of class c.
        self.weight = nn.Parameter(torch.empty(num_classes * subcenters, embedding_dim))
        nn.init.xavier_uniform_(self.weight)
        self.num_classes = num_classes
        self.subcenters = subcenters
        self.s = s
        self.margin = m

    @property
    def margin(self) -> float:
        return self._m

    @margin.setter
    def margin(self, m: float) -> None:
        # The margin changes between training phases; keep the derived constants in step with it.
        self._m = float(m)
        self._cos_m = math.cos(m)
        self._sin_m = math.sin(m)
        self._th = math.cos(math.pi - m)
        self._mm = math.sin(math.pi - m) * m

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Scaled logits (N, num_classes) for cross-entropy; runs in fp32 even under autocast."""
        # In bf16, cos θ near 1 has ~3 significant digits and s=64 amplifies the error, so the
        # margin would drown in rounding: compute the cosine and the margin in fp32.
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            x = embeddings.to(self.weight.dtype)  # the parameter's dtype: fp32 unless .double()
            cosine = F.linear(F.normalize(x), F.normalize(self.weight))
            cosine = cosine.view(-1, self.num_classes, self.subcenters).amax(dim=2)
            cosine = cosine.clamp(-1.0, 1.0)
            sine = torch.sqrt((1.0 - cosine * cosine).clamp(min=0.0))
            phi = cosine * self._cos_m - sine * self._sin_m
            phi = torch.where(cosine > self._th, phi, cosine - self._mm)
            is_target = F.one_hot(labels, num_classes=cosine.shape[1]).bool()
            return self.s * torch.where(is_target, phi, cosine)

    def extra_repr(self) -> str:
        return (
            f"embedding_dim={self.weight.shape[1]}, num_classes={self.num_classes}, "
            f"subcenters={self.subcenters}, s={self.s}, m={self.margin}"
        )


def adacos_scale(num_classes: int) -> float:
    """AdaCos' fixed scale √2·ln(C − 1) (Zhang et al. 2019): suited to the number of classes.

    s=64 was tuned for face identities by the thousand; with ten classes the softmax saturates
    long before the classes separate. The formula needs C ≥ 3 (ln 1 = 0 for C = 2).
    """
    if num_classes < 3:
        raise UserError(
            f"arcface_scale_mode adacos needs at least 3 classes in train.csv (s = √2·ln(C−1)), "
            f"this run has {num_classes}; use arcface_scale_mode fixed with arcface_s."
        )
    return math.sqrt(2.0) * math.log(num_classes - 1)
