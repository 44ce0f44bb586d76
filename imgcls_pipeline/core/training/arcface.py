"""ArcFace (additive angular margin) logits, Deng et al. 2019.

For the true class the logit is s·cos(θ + m) instead of s·cos θ; other classes keep s·cos θ.
cos(θ + m) = cos θ·cos m − sin θ·sin m. It is only monotonic in θ while θ + m ≤ π, so past that
point (cos θ ≤ cos(π − m), the "th" threshold) the usual replacement cos θ − m·sin m ("mm") keeps
the penalty growing with θ instead of rewarding a worse angle ("easy margin" off).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ArcFace(nn.Module):
    def __init__(self, embedding_dim: int, num_classes: int, s: float = 64.0, m: float = 0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)
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
            cosine = cosine.clamp(-1.0, 1.0)
            sine = torch.sqrt((1.0 - cosine * cosine).clamp(min=0.0))
            phi = cosine * self._cos_m - sine * self._sin_m
            phi = torch.where(cosine > self._th, phi, cosine - self._mm)
            is_target = F.one_hot(labels, num_classes=cosine.shape[1]).bool()
            return self.s * torch.where(is_target, phi, cosine)

    def extra_repr(self) -> str:
        n, d = self.weight.shape
        return f"embedding_dim={d}, num_classes={n}, s={self.s}, m={self.margin}"
