"""Weight-generating functions and static convolutions of the paper's production model (App. B.5,
G.3, Table 15), for HomoDPO / HeteroDPO (their ``generator=`` option) and the DyJoint encoder.

- SE-layer generator (Hu et al., 2018; App. B.5): ``t = g2(relu(g1(z)))`` with a bottleneck of
  ``max(1, n // ratio)`` units (the paper's down ratio 0.125 / 0.25 / 0.5 is ``ratio`` 8 / 4 / 2), the
  generated HomoDPO kernels gated by a sigmoid. Parameters: ``n*h + h + h*P + P`` for P outputs.
  HeteroDPO's SE generator is the same bottleneck without the output gate: its outputs are the
  weights of a linear map, and staying linear in h keeps the Kronecker training form (DyLinear).
- Separable-convolution generator (Table 15 "Sep + SE"): the context is not the plain mean of the
  behaviours but the mean of a depthwise-separable convolution over them (:class:`SeparableConv`:
  a per-channel ``k``-tap convolution, then a pointwise Linear), so the generator also sees each
  behaviour's neighbourhood (App. G.3); an SE bottleneck follows.
- :class:`Conv1DEncoder`: the static convolution of Table 15's "Conv1D" rows (kernel 3 or 5), the
  encoder counterpart of a HomoDPO whose kernels do not depend on the row.

Sequences are ``x`` [B, T, n] with ``lengths`` [B] (positions >= length are padding): zero outside
the valid positions on input to every convolution and zero on output.
"""
from __future__ import annotations

import torch
from torch import nn

from .checks import positive_int


def _mask(x, lengths):
    return (torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.unsqueeze(1)) \
        .unsqueeze(-1).to(x.dtype)


def _check_conv(who, dim, kernel_size):
    positive_int(who, "dim", dim)
    positive_int(who, "kernel_size", kernel_size)
    if kernel_size % 2 == 0:        # 'same' padding needs a centre tap
        raise ValueError(f"{who}: kernel_size must be odd, got {kernel_size}")


def se_hidden(n: int, ratio: int) -> int:
    """The SE bottleneck width for an n-wide input and down ratio 1/ratio."""
    positive_int("SE generator", "ratio", ratio)
    return max(1, n // ratio)


class SEGenerator(nn.Module):
    """``sigmoid(g2(relu(g1(z))))`` (``gate=True``) or ``g2(relu(g1(z)))``: z [B, n] -> [B, out]."""

    def __init__(self, in_dim: int, out_dim: int, ratio: int = 4, gate: bool = True):
        super().__init__()
        positive_int("SEGenerator", "in_dim", in_dim)
        positive_int("SEGenerator", "out_dim", out_dim)
        self.in_dim, self.out_dim, self.ratio, self.gate = in_dim, out_dim, ratio, bool(gate)
        self.hidden = se_hidden(in_dim, ratio)
        self.g1 = nn.Linear(in_dim, self.hidden)
        self.g2 = nn.Linear(self.hidden, out_dim)

    def forward(self, z):
        t = self.g2(torch.relu(self.g1(z)))
        return torch.sigmoid(t) if self.gate else t


class SeparableConv(nn.Module):
    """Depthwise (``depthwise`` [n, k], per-channel taps, ``bias`` [n]) then pointwise
    (``pointwise`` Linear(n, n)) convolution over the valid positions, 'same' padding with zeros
    past the length; output zero past the length."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        _check_conv("SeparableConv", dim, kernel_size)
        self.dim, self.kernel_size = dim, kernel_size
        self.depthwise = nn.Parameter(torch.randn(dim, kernel_size) / kernel_size)
        self.bias = nn.Parameter(torch.zeros(dim))
        self.pointwise = nn.Linear(dim, dim)

    def forward(self, x, lengths):
        T, k = x.shape[1], self.kernel_size
        m = _mask(x, lengths)
        xp = nn.functional.pad(x * m, (0, 0, k // 2, k // 2))
        y = sum(self.depthwise[:, t] * xp[:, t:t + T] for t in range(k)) + self.bias
        return self.pointwise(y) * m


class Conv1DEncoder(nn.Module):
    """Static ``nn.Conv1d(dim, dim, k, padding=k // 2)`` (``conv``) over the valid positions of
    x [B, T, dim]; output zero past the length (Table 15, "Conv1D")."""

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        _check_conv("Conv1DEncoder", dim, kernel_size)
        self.dim, self.kernel_size = dim, kernel_size
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2)

    def forward(self, x, lengths):
        m = _mask(x, lengths)
        return self.conv((x * m).transpose(1, 2)).transpose(1, 2) * m
