"""Sequence-based DPO (paper §2.5, App. D) and the attention it is combined with, in plain paper form.

A behaviour sequence is ``x`` float ``[B, T, n]`` with ``lengths`` int64 ``[B]``: positions
``>= lengths[b]`` are padding, zero on input and zero on output, and never change a result.

- :class:`HomoDPO` (behaviour-behaviour, Eqn. 6-7): ``s = sigma(W1ᵀ mean_valid(X) + b1)``, per-tap
  depthwise kernels ``K_τ = W2_τᵀ s + b2_τ``, ``y_i = Σ_τ K_τ ⊙ x_{i+τ}`` (zero outside the valid
  length, no bias). Generators: ``mlp`` (as written), ``se`` (squeeze-excitation, App. B.5:
  hidden ``max(1, n // ratio)`` units with ReLU, kernels gated by a sigmoid) and ``sep`` (``se``
  over the mean of a separable convolution of X, Table 15; dpn_infer.nn.generators).
- :class:`HeteroDPO` (query-behaviour, Eqn. 8): ``W_g = g(mean_valid(Z))``, ``y = W_gᵀ q`` (+ the
  generated bias of :class:`DyLinear`, which it is); generators ``mlp``, ``se``, ``sep`` as HomoDPO's
  (without the sigmoid gate, dpn_infer.nn.generators).
- :class:`SelfAttention`: masked multi-head self-attention (keys past the length are masked).
- :class:`TargetAttention`: DIN's activation unit over ``[q, k, q-k, q*k]``, weights not normalized
  (no softmax), interest ``Σ_i a_i k_i`` over the valid positions.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .checks import positive_int
from .dylinear import SIGMAS, DyLinear, apply_sigma
from .generators import SeparableConv, se_hidden

HOMO_GENERATORS = ("mlp", "se", "sep")
HETERO_GENERATORS = ("mlp", "se", "sep")
ATT_ACTS = ("sigmoid", "relu", "tanh")


def valid_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """bool [B, T]: position t of row b is valid (t < lengths[b])."""
    return torch.arange(T, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def masked_mean(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """mean over the valid positions of x [B, T, n] -> [B, n]; zeros for an empty row."""
    m = valid_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / lengths.clamp(min=1).unsqueeze(1).to(x.dtype)


def _check_seq(who, x, lengths, n):
    if x.dim() != 3 or x.shape[2] != n:
        raise ValueError(f"{who}: x must be [B, T, {n}], got {list(x.shape)}")
    if lengths.dim() != 1 or lengths.shape[0] != x.shape[0]:
        raise ValueError(f"{who}: lengths must be [{x.shape[0]}], got {list(lengths.shape)}")


class HomoDPO(nn.Module):
    """Dynamic depthwise convolution over a behaviour sequence, kernels generated per row from the
    mean of its valid behaviours. Parameters ``g1`` (Linear(n, l)) and ``g2`` (Linear(l, k·n));
    entry ``τ·n + j`` of ``g2``'s output is tap ``τ - k//2`` of channel ``j``."""

    def __init__(self, dim: int, kernel_size: int = 3, hidden: int = 4, sigma: str = "relu",
                 generator: str = "mlp", ratio: int = 4):
        super().__init__()
        positive_int("HomoDPO", "dim", dim)
        positive_int("HomoDPO", "kernel_size", kernel_size)
        if kernel_size % 2 == 0:
            raise ValueError(f"HomoDPO: kernel_size must be odd, got {kernel_size}")
        if generator not in HOMO_GENERATORS:
            raise ValueError(f"HomoDPO: generator must be one of {HOMO_GENERATORS}, got {generator!r}")
        if generator in ("se", "sep"):
            hidden, sigma = se_hidden(dim, ratio), "relu"
        positive_int("HomoDPO", "hidden", hidden)
        if sigma not in SIGMAS:
            raise ValueError(f"HomoDPO: sigma must be one of {SIGMAS}, got {sigma!r}")
        self.dim, self.kernel_size, self.hidden, self.sigma = dim, kernel_size, hidden, sigma
        self.generator, self.ratio = generator, ratio
        self.gate = "sigmoid" if generator in ("se", "sep") else "identity"
        if generator == "sep":      # the generator's view of each behaviour's neighbourhood
            self.sep = SeparableConv(dim, kernel_size)
        self.g1 = nn.Linear(dim, hidden)
        self.g2 = nn.Linear(hidden, kernel_size * dim)
        with torch.no_grad():   # start near an identity-ish smoothing kernel
            self.g2.weight.normal_(0.0, 0.1 / math.sqrt(hidden))
            self.g2.bias.uniform_(-1.0 / kernel_size, 1.0 / kernel_size)

    def kernels(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B, k, n]: each row's taps."""
        ctx = self.sep(x, lengths) if self.generator == "sep" else x
        h = apply_sigma(self.sigma, self.g1(masked_mean(ctx, lengths)))
        t = self.g2(h)
        if self.gate == "sigmoid":
            t = torch.sigmoid(t)
        return t.view(x.shape[0], self.kernel_size, self.dim)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        _check_seq("HomoDPO", x, lengths, self.dim)
        T = x.shape[1]
        m = valid_mask(lengths, T).unsqueeze(-1).to(x.dtype)
        x = x * m
        K = self.kernels(x, lengths)
        p = self.kernel_size // 2
        xp = nn.functional.pad(x, (0, 0, p, p))
        y = sum(K[:, t].unsqueeze(1) * xp[:, t:t + T] for t in range(self.kernel_size))
        return y * m


class HeteroDPO(nn.Module):
    """Query-behaviour DPO: a :class:`DyLinear` (``dpo``) from the query, its context the mean of
    the valid behaviours (``generator="sep"``: of their separable convolution ``sep``). forward(q
    [B, m], x [B, T, n], lengths) -> [B, c]. ``generator`` "se" / "sep" replace ``hidden`` by the
    SE bottleneck ``max(1, n // ratio)`` (ReLU). ``impl`` is the DyLinear's (``self.dpo.impl``):
    "auto" (default), "kron" or "paper"."""

    def __init__(self, query_dim: int, behaviour_dim: int, out_dim: int, hidden: int = 4,
                 sigma: str = "relu", impl: str = "auto", generator: str = "mlp", ratio: int = 4,
                 kernel_size: int = 3):
        super().__init__()
        if generator not in HETERO_GENERATORS:
            raise ValueError(f"HeteroDPO: generator must be one of {HETERO_GENERATORS}, got {generator!r}")
        if generator in ("se", "sep"):
            hidden, sigma = se_hidden(behaviour_dim, ratio), "relu"
        self.query_dim, self.behaviour_dim, self.out_dim = query_dim, behaviour_dim, out_dim
        self.generator, self.ratio = generator, ratio
        if generator == "sep":
            self.sep = SeparableConv(behaviour_dim, kernel_size)
        self.dpo = DyLinear(query_dim, out_dim, behaviour_dim, hidden=hidden, sigma=sigma, impl=impl)

    def features(self, x, lengths):
        """What the context averages: the behaviours, or their separable convolution ("sep")."""
        return self.sep(x, lengths) if self.generator == "sep" else x

    def forward(self, q, x, lengths):
        _check_seq("HeteroDPO", x, lengths, self.behaviour_dim)
        return self.dpo(q, masked_mean(self.features(x, lengths), lengths))


class SelfAttention(nn.Module):
    """Multi-head self-attention over the valid positions: ``q``, ``k``, ``v``, ``o`` are
    Linear(d, d); head h attends with softmax(Q_h K_hᵀ / sqrt(d/H)) over keys < length; outputs
    past the length are zero."""

    def __init__(self, dim: int, heads: int = 1):
        super().__init__()
        positive_int("SelfAttention", "dim", dim)
        positive_int("SelfAttention", "heads", heads)
        if dim % heads:
            raise ValueError(f"SelfAttention: heads={heads} must divide dim={dim}")
        self.dim, self.heads = dim, heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x, lengths):
        _check_seq("SelfAttention", x, lengths, self.dim)
        B, T, d = x.shape
        H, dh = self.heads, d // self.heads
        mask = valid_mask(lengths, T)

        def split(t):
            return t.view(B, T, H, dh).transpose(1, 2)          # [B, H, T, dh]

        Q, K, V = split(self.q(x)), split(self.k(x)), split(self.v(x))
        s = Q @ K.transpose(-1, -2) / math.sqrt(dh)               # [B, H, T, T]
        s = s.masked_fill(~mask[:, None, None, :], -1e9)          # finite: empty rows stay NaN-free
        a = torch.softmax(s, dim=-1) @ V                          # [B, H, T, dh]
        y = self.o(a.transpose(1, 2).reshape(B, T, d))
        return torch.where(mask.unsqueeze(-1), y, torch.zeros_like(y))


class TargetAttention(nn.Module):
    """DIN target attention: a_i = fc2(act(fc1([q, k_i, q - k_i, q * k_i]))), interest
    Σ_{i < length} a_i k_i (no softmax). ``fc1`` Linear(4d, hidden), ``fc2`` Linear(hidden, 1)."""

    def __init__(self, dim: int, hidden: int = 36, act: str = "sigmoid"):
        super().__init__()
        positive_int("TargetAttention", "dim", dim)
        positive_int("TargetAttention", "hidden", hidden)
        if act not in ATT_ACTS:
            raise ValueError(f"TargetAttention: act must be one of {ATT_ACTS}, got {act!r}")
        self.dim, self.hidden, self.act = dim, hidden, act
        self.fc1 = nn.Linear(4 * dim, hidden)
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, q, x, lengths):
        _check_seq("TargetAttention", x, lengths, self.dim)
        if q.dim() != 2 or q.shape != (x.shape[0], self.dim):
            raise ValueError(f"TargetAttention: q must be [{x.shape[0]}, {self.dim}], got {list(q.shape)}")
        qq = q.unsqueeze(1).expand_as(x)
        f = torch.cat([qq, x, qq - x, qq * x], dim=-1)
        h = getattr(torch, self.act)(self.fc1(f))
        a = self.fc2(h).squeeze(-1) * valid_mask(lengths, x.shape[1]).to(x.dtype)   # [B, T]
        return (a.unsqueeze(-1) * x).sum(1)
