"""Kalman Filtering Attention (KFAtt; Liu et al., NeurIPS 2020, arXiv 2010.00985), the decoder of the
paper's production model (DPN paper §3.3, App. G.2 Eqn. 16), in plain form.

KFAtt reads attention as MAP estimation of a query's hidden interest ``v_q`` (per head h, width
``dh``): a learned global prior ``v_q ~ N(mu_q, sigma_q^2 I)`` (``mu_q = prior_mean(q)``,
``1/sigma_q^2 = exp(prior_logprec(q))``, functions of the query shared by every user) and each
behaviour t a sensor ``v_t ~ N(v_q, sigma_t^2 I)`` whose precision is the attention score,
``1/sigma_t^2 = exp(q_h . k_t / sqrt(dh))`` (per behaviour). KFAtt-base, the posterior mean:

    v_q = (mu_q / sigma_q^2 + sum_t v_t / sigma_t^2) / (1 / sigma_q^2 + sum_t 1 / sigma_t^2)

With 1/sigma_q^2 -> 0 (no prior) this is softmax attention; with no behaviours it is mu_q.

KFAtt-freq caps the total weight of behaviours under one deduplicated query (here: one group, e.g.
one session of DyJoint): group m is one sensor ``v_m ~ N(v_q, sigma_m^2 I)`` observed through its
behaviours ``v_{m,t} ~ N(v_m, sigma_{m,t}^2 I)``; with ``P_m = sum_t 1/sigma_{m,t}^2`` and
``vbar_m = sum_t v_{m,t} / sigma_{m,t}^2 / P_m`` the group reads as one measurement vbar_m of
variance ``sigma_m^2 + 1/P_m``, so

    v_q = (mu_q / sigma_q^2 + sum_m pi_m vbar_m) / (1 / sigma_q^2 + sum_m pi_m),
    pi_m = 1 / (sigma_m^2 + 1 / P_m) < 1 / sigma_m^2     (however many behaviours m has)

``1/sigma_m^2 = exp(group_logprec(mean of group m's behaviours))`` per head. Everything is computed
in log space (a softmax over [log prior precision, log behaviour / group precisions]), so large
scores neither overflow nor change the result.

Shapes: ``forward(q [B, dq], x [B, T, d], mask [B, T] bool, groups [B, T] int64 or None)`` ->
``[B, out]`` (the heads concatenated, then ``o``: Eqn. 16's W_O). ``q``/``k``/``v`` project the
query and the behaviours to ``dim`` (``heads`` x ``dim / heads``).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from .checks import positive_int

MODES = ("base", "freq")
NEG = -1e30     # log of a zero precision (finite: an empty row stays NaN-free)


class KFAtt(nn.Module):
    """Multi-head KFAtt (module docstring). Parameters: ``q`` Linear(dq, dim), ``k`` / ``v``
    Linear(d, dim), ``o`` Linear(dim, out), ``prior_mean`` Linear(dq, dim), ``prior_logprec``
    Linear(dq, heads), and for ``mode="freq"`` ``group_logprec`` Linear(d, heads)."""

    def __init__(self, query_dim: int, behaviour_dim: int, dim: int, out_dim: Optional[int] = None,
                 heads: int = 1, mode: str = "base"):
        super().__init__()
        for k, v in (("query_dim", query_dim), ("behaviour_dim", behaviour_dim), ("dim", dim),
                     ("heads", heads)):
            positive_int("KFAtt", k, v)
        if dim % heads:
            raise ValueError(f"KFAtt: heads={heads} must divide dim={dim}")
        if mode not in MODES:
            raise ValueError(f"KFAtt: mode must be one of {MODES}, got {mode!r}")
        out_dim = dim if out_dim is None else out_dim
        positive_int("KFAtt", "out_dim", out_dim)
        self.query_dim, self.behaviour_dim, self.dim, self.out_dim = query_dim, behaviour_dim, dim, out_dim
        self.heads, self.mode = heads, mode
        self.q = nn.Linear(query_dim, dim)
        self.k = nn.Linear(behaviour_dim, dim)
        self.v = nn.Linear(behaviour_dim, dim)
        self.o = nn.Linear(dim, out_dim)
        self.prior_mean = nn.Linear(query_dim, dim)
        self.prior_logprec = nn.Linear(query_dim, heads)
        if mode == "freq":
            self.group_logprec = nn.Linear(behaviour_dim, heads)

    def config(self) -> dict:
        return {"query_dim": self.query_dim, "behaviour_dim": self.behaviour_dim, "dim": self.dim,
                "out_dim": self.out_dim, "heads": self.heads, "mode": self.mode}

    def _split(self, t):                       # [..., dim] -> [..., H, dh]
        return t.view(*t.shape[:-1], self.heads, self.dim // self.heads)

    def scores(self, q, x):
        """log behaviour precisions [B, T, H]: q_h . k_t / sqrt(dh)."""
        Q, K = self._split(self.q(q)), self._split(self.k(x))
        return torch.einsum("bhe,bthe->bth", Q, K) / math.sqrt(self.dim // self.heads)

    def forward(self, q: torch.Tensor, x: torch.Tensor, mask: torch.Tensor,
                groups: Optional[torch.Tensor] = None, num_groups: Optional[int] = None) -> torch.Tensor:
        """``groups``: any int64 ids (mode "freq"); with ``num_groups`` G they must lie in [0, G)
        (e.g. session slots), which spares finding each group's slot (G instead of T slots)."""
        B, T, d = x.shape
        if d != self.behaviour_dim or q.shape != (B, self.query_dim) or mask.shape != (B, T):
            raise ValueError(f"KFAtt: expected q [B, {self.query_dim}], x [B, T, {self.behaviour_dim}], "
                             f"mask [B, T]; got {list(q.shape)}, {list(x.shape)}, {list(mask.shape)}")
        s = self.scores(q, x).masked_fill(~mask.unsqueeze(-1), NEG)          # [B, T, H]
        V = self._split(self.v(x))                                           # [B, T, H, dh]
        mu = self._split(self.prior_mean(q))                                 # [B, H, dh]
        lp0 = self.prior_logprec(q)                                          # [B, H]
        if self.mode == "base":
            w = torch.softmax(torch.cat([lp0.unsqueeze(1), s], dim=1), dim=1)   # [B, 1 + T, H]
            vq = w[:, 0].unsqueeze(-1) * mu + torch.einsum("bth,bthe->bhe", w[:, 1:], V)
        else:
            if groups is None or groups.shape != (B, T):
                raise ValueError("KFAtt: mode 'freq' needs groups [B, T] (one group id per behaviour)")
            vq = self._freq(s, V, mu, lp0, x, mask, groups, num_groups)
        return self.o(vq.reshape(B, self.dim))

    def _freq(self, s, V, mu, lp0, x, mask, groups, num_groups=None):
        B, T, H = s.shape
        if num_groups is None:
            # a group's slot: the position of its first valid behaviour (any int64 ids; G = T slots)
            same = (groups.unsqueeze(2) == groups.unsqueeze(1)) & mask.unsqueeze(1) & mask.unsqueeze(2)
            groups, num_groups = same.to(torch.int64).argmax(2), T
        onehot = (groups.unsqueeze(-1) == torch.arange(num_groups, device=s.device)) & mask.unsqueeze(-1)
        oh = onehot.to(s.dtype)
        # log P_m = logsumexp over the group's behaviours of s; vbar_m their softmax-weighted values
        sm = s.unsqueeze(2).masked_fill(~onehot.unsqueeze(-1), NEG)          # [B, T, G, H]
        logP = torch.logsumexp(sm, dim=1)                                    # [B, G, H]
        a = torch.softmax(sm, dim=1)                                         # within each group
        vbar = torch.einsum("btgh,bthe->bghe", a, V)                         # [B, G, H, dh]
        count = oh.sum(1)                                                    # [B, G]
        xbar = torch.einsum("btg,btd->bgd", oh, x) / count.clamp(min=1).unsqueeze(-1)
        lpm = self.group_logprec(xbar)                                       # log 1/sigma_m^2
        # log pi_m = -log(sigma_m^2 + 1/P_m) = logP - log(1 + P_m sigma_m^2)
        logpi = logP - nn.functional.softplus(logP - lpm)
        logpi = logpi.masked_fill((count == 0).unsqueeze(-1), NEG)
        w = torch.softmax(torch.cat([lp0.unsqueeze(1), logpi], dim=1), dim=1)   # [B, 1 + G, H]
        return w[:, 0].unsqueeze(-1) * mu + torch.einsum("bgh,bghe->bhe", w[:, 1:], vbar)
