"""DCN cross layer: y = x0 * (xl . w) + b + xl (docs/format.md §5 `cross`)."""
from __future__ import annotations

import math

import torch
from torch import nn


class CrossLayer(nn.Module):
    """One cross layer of DCN. ``weight`` and ``bias`` are ``[d]``."""

    def __init__(self, d: int):
        super().__init__()
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise ValueError(f"CrossLayer: d must be an integer >= 1, got {d!r}")
        self.d = d
        self.weight = nn.Parameter(torch.randn(d) / math.sqrt(d))
        self.bias = nn.Parameter(torch.zeros(d))

    def extra_repr(self) -> str:
        return f"d={self.d}"

    def forward(self, x0: torch.Tensor, xl: torch.Tensor) -> torch.Tensor:
        return x0 * (xl @ self.weight).unsqueeze(-1) + self.bias + xl
