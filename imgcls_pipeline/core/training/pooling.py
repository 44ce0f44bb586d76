"""Generalised-mean (GeM) pooling, Radenović et al. 2018: (mean over H×W of x^p)^(1/p).

p = 1 is average pooling and p → ∞ max pooling; p = 3 (the retrieval recipes' value) lets the
strongest activations of a feature map, the distinctive parts of an object, weigh more than the
background. p is fixed, not learned: as a parameter, AdamW's weight decay would pull it towards
0, and a fixed p keeps the pooling the one the settings name.
"""

from __future__ import annotations

import torch
from torch import nn

from imgcls_pipeline.core.errors import UserError


class GeM(nn.Module):
    def __init__(self, p: float = 3.0, eps: float = 1e-6):
        super().__init__()
        self.p = float(p)
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) feature map -> (N, C)."""
        if features.ndim != 4:
            raise UserError(
                f"pooling gem needs a convolutional backbone (an N×C×H×W feature map), this one "
                f"gives shape {tuple(features.shape)}; use pooling avg with this backbone."
            )
        # Activations can be slightly negative (SiLU): x^p needs x > 0. At least fp32, because
        # x^3 of bf16 values under autocast loses the small activations entirely.
        x = features.to(torch.promote_types(features.dtype, torch.float32))
        x = x.clamp(min=self.eps).pow(self.p)
        return x.mean(dim=(2, 3)).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"
