"""DIEN (Zhou et al., AAAI 2019) and DIEN + Heter (DPN paper Table 5), in plain form.

    X     = the sequence fields' embeddings side by side, oldest behaviour first       [B, T, d]
    H     = GRU(X)                    interest extractor (torch.nn.GRU's equations)      [B, T, d]
    a_t   = softmax_t(h_tᵀ W q)       over the valid positions (DIEN's attention)
    h'_T  = AUGRU(H, a)               interest evolution: u'_t = a_t u_t,
                                      h'_t = (1 - u'_t) ⊙ h'_{t-1} + u'_t ⊙ h̃_t
    I     = [h'_T] (DIEN)  or  [h'_T, HeteroDPO(q, H)] (DIENHeter)
    logit = head([I, q, profile values])  (Linear / DyLinear layers as in SeqDPN)

The auxiliary loss (DIEN §4.2): h_t should predict the next behaviour e_{t+1} against a negative
e'_{t+1} drawn from the batch's other behaviours, ``-mean(log σ(h_t·e_{t+1}) + log(1 - σ(h_t·e'_{t+1})))``
over the pairs where t + 1 is valid; :meth:`DIEN.aux_loss`, added to the click loss by
``dpn_infer.train.train`` through :meth:`DIEN.extra_loss` (weight ``aux_weight``).

The recurrences loop over the T positions (a shape, not the data); the input projections of all
steps are one GEMM and a row's state stops changing past its length (masks, not per-row loops).
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .checks import positive_int
from .inputs import InputLayer
from .layers import (CTRModel, LayerSpec, as_layer_spec, build_feature_layers, check_common,
                     check_schema, run_feature_layers)
from .schema import Schema, SequenceField, TimestampField
from .seqdpn import _names
from .sequence import HeteroDPO, valid_mask

ORDERS = ("oldest_first", "newest_first")


class _GRUParams(nn.Module):
    """torch.nn.GRU's parameter layout for one layer: ``weight_ih`` [3h, d], ``weight_hh`` [3h, h],
    ``bias_ih`` / ``bias_hh`` [3h], gates in the order (reset, update, new)."""

    def __init__(self, input_dim: int, hidden: int):
        super().__init__()
        positive_int(type(self).__name__, "input_dim", input_dim)
        positive_int(type(self).__name__, "hidden", hidden)
        self.input_dim, self.hidden = input_dim, hidden
        k = hidden ** -0.5
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden, input_dim).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden, hidden).uniform_(-k, k))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden).uniform_(-k, k))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden).uniform_(-k, k))

    def gates(self, gi_t, h):
        """(r, u, h̃) at one step from the step's input projection gi_t [B, 3h] and state h [B, h]."""
        gh = nn.functional.linear(h, self.weight_hh, self.bias_hh)
        ir, iu, in_ = gi_t.chunk(3, dim=-1)
        hr, hu, hn = gh.chunk(3, dim=-1)
        r = torch.sigmoid(ir + hr)
        u = torch.sigmoid(iu + hu)
        return r, u, torch.tanh(in_ + r * hn)


class GRU(_GRUParams):
    """Interest extractor: torch.nn.GRU (one layer, batch_first) over the valid positions.
    forward(x [B, T, d], lengths [B]) -> (states [B, T, h] zero past the length, last state [B, h])."""

    def forward(self, x, lengths):
        B, T, _ = x.shape
        gi = nn.functional.linear(x, self.weight_ih, self.bias_ih)      # every step in one GEMM
        valid = valid_mask(lengths, T).unsqueeze(-1)
        h = x.new_zeros(B, self.hidden)
        out = []
        for t in range(T):
            r, z, n = self.gates(gi[:, t], h)
            h = torch.where(valid[:, t], (1 - z) * n + z * h, h)          # torch.nn.GRU's update
            out.append(h)
        states = torch.stack(out, 1) if out else x.new_zeros(B, 0, self.hidden)
        return states * valid.to(x.dtype), h


class AUGRU(_GRUParams):
    """GRU with attentional update gate (DIEN Eqn. for AUGRU): the update gate u_t (the "update"
    chunk) scaled by the attention score a_t, ``h_t = (1 - a_t u_t) h_{t-1} + a_t u_t h̃_t``.
    forward(x [B, T, d], att [B, T], lengths [B]) -> the last state [B, h] (zero for an empty row)."""

    def forward(self, x, att, lengths):
        B, T, _ = x.shape
        gi = nn.functional.linear(x, self.weight_ih, self.bias_ih)
        valid = valid_mask(lengths, T).unsqueeze(-1)
        h = x.new_zeros(B, self.hidden)
        for t in range(T):
            _, u, n = self.gates(gi[:, t], h)
            u = att[:, t].unsqueeze(-1) * u
            h = torch.where(valid[:, t], (1 - u) * h + u * n, h)
        return h


def reverse_valid(x, lengths):
    """x [B, T, ...] with each row's valid prefix reversed (padding stays after it)."""
    T = x.shape[1]
    pos = torch.arange(T, device=x.device).unsqueeze(0)
    idx = torch.where(pos < lengths.unsqueeze(1), lengths.unsqueeze(1) - 1 - pos, pos)
    idx = idx.view(*idx.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, idx)


class DIEN(CTRModel):
    """DIEN over ``sequence`` fields (same max_len; the first one's length is the row's) with the
    ``candidate`` fields as the query (their width must equal the behaviours' for DIEN's bilinear
    attention ``att``: Linear(d, dq, bias=False)); ``profile`` as in SeqDPN. ``order``: the order of
    a row's valid ids in the batch ("newest_first" for MovieLens' hist_movie); the GRUs run oldest
    first either way. Submodules: ``inputs``, ``extractor`` (GRU), ``att``, ``evolution`` (AUGRU),
    ``hetero_dpo`` (DIENHeter only, else None), ``layers`` / ``norms`` / ``acts`` / ``dropout`` /
    ``classifier``."""

    heter = False
    served = True       # converters/torch_export.py: gru, dien_attention, augru (opset 5)

    def __init__(self, schema: Schema, sequence: Sequence[str], candidate: Sequence[str],
                 profile: Optional[Sequence[str]] = None, order: str = "oldest_first",
                 aux_weight: float = 1.0, hetero_out: Optional[int] = None, hetero_hidden: int = 4,
                 hetero_sigma: str = "relu", layers: Sequence[Union[LayerSpec, int]] = (200, 80),
                 activation: str = "relu", norm: Optional[str] = None, dropout: float = 0.0):
        super().__init__()
        who = type(self).__name__
        check_schema(who, schema)
        check_common(activation, norm, dropout)
        if order not in ORDERS:
            raise ValueError(f"{who}: order must be one of {ORDERS}, got {order!r}")
        if not isinstance(aux_weight, (int, float)) or aux_weight < 0:
            raise ValueError(f"{who}: aux_weight must be a number >= 0, got {aux_weight!r}")
        self.schema = schema
        self.sequence = _names("sequence", sequence, schema, True)
        self.candidate = _names("candidate", candidate, schema, False)
        if not self.sequence or not self.candidate:
            raise ValueError(f"{who}: needs at least one sequence and one candidate field")
        if profile is None:
            profile = [f.name for f in schema if f.name not in self.sequence + self.candidate
                       and not isinstance(f, (SequenceField, TimestampField))]
        self.profile = _names("profile", profile, schema, False)
        if len({schema[n].max_len for n in self.sequence}) != 1:
            raise ValueError(f"{who}: the sequence fields must share one max_len")
        d, dq = schema.width(self.sequence), schema.width(self.candidate)
        self.seq_dim, self.query_dim = d, dq
        self.order, self.aux_weight = order, float(aux_weight)
        self.opts = dict(hetero_out=hetero_out, hetero_hidden=hetero_hidden, hetero_sigma=hetero_sigma)
        self.inputs = InputLayer(schema)
        self.extractor = GRU(d, d)
        self.att = nn.Linear(d, dq, bias=False)
        self.evolution = AUGRU(d, d)
        hout = hetero_out or d
        self.hetero_dpo = HeteroDPO(dq, d, hout, hetero_hidden, hetero_sigma) if self.heter else None
        self.head_in = d + (hout if self.heter else 0) + dq + schema.width(self.profile)
        self.specs: List[LayerSpec] = [as_layer_spec(layer) for layer in layers]
        for i, s in enumerate(self.specs):
            if s.dynamic and s.context not in ("x0", "prev"):
                raise ValueError(f"{who}: head layer {i}: context must be 'x0' or 'prev'")
        self.activation, self.norm, self.dropout_p = activation, norm, float(dropout)
        width = build_feature_layers(self, self.specs, self.head_in, self.head_in, norm, activation)
        self.dropout = nn.Dropout(self.dropout_p)
        self.classifier = nn.Linear(width, 1)

    def config(self) -> dict:
        c = {"schema": self.schema.to_json(), "sequence": list(self.sequence),
             "candidate": list(self.candidate), "profile": list(self.profile), "order": self.order,
             "aux_weight": self.aux_weight, "layers": [s.to_dict() for s in self.specs],
             "activation": self.activation, "norm": self.norm, "dropout": self.dropout_p}
        if self.heter:
            c.update(self.opts)
        return c

    def behaviours(self, values):
        """(X [B, T, d] oldest first, lengths [B])."""
        lengths = values[self.sequence[0]][1]
        x = torch.cat([values[n][0] for n in self.sequence], dim=-1)
        x = x * valid_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
        if self.order == "newest_first":
            x = reverse_valid(x, lengths)
        return x, lengths

    def attention(self, states, q, lengths):
        """a [B, T]: softmax over the valid positions of h_tᵀ W q (zero past the length)."""
        s = (self.att(states) * q.unsqueeze(1)).sum(-1)
        mask = valid_mask(lengths, states.shape[1])
        a = torch.softmax(s.masked_fill(~mask, -1e9), dim=1)
        return a * mask.to(a.dtype)

    def head_input(self, batch: Mapping) -> torch.Tensor:
        values = self.inputs(batch)
        x, lengths = self.behaviours(values)
        states, _ = self.extractor(x, lengths)
        q = torch.cat([values[n] for n in self.candidate], dim=1)
        interest = [self.evolution(states, self.attention(states, q, lengths), lengths)]
        if self.hetero_dpo is not None:
            interest.append(self.hetero_dpo(q, states, lengths))
        return torch.cat(interest + [q] + [values[n] for n in self.profile], dim=1)

    def forward(self, batch: Mapping) -> torch.Tensor:
        x0 = self.head_input(batch)
        return self.classifier(run_feature_layers(self, x0, x0)).squeeze(-1)

    def aux_loss(self, batch: Mapping, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """DIEN's auxiliary loss (module docstring); negatives: the batch's valid behaviours in a
        random permutation (``generator``), a pair dropped where the drawn one is padding."""
        values = self.inputs(batch)
        x, lengths = self.behaviours(values)
        states, _ = self.extractor(x, lengths)
        B, T, d = x.shape
        if T < 2:
            return states.sum() * 0.0
        valid = valid_mask(lengths, T)
        perm = torch.randperm(B * T, generator=generator, device=x.device)
        neg = x.reshape(B * T, d)[perm].view(B, T, d)
        neg_ok = valid.reshape(-1)[perm].view(B, T)
        h, nxt = states[:, :-1], x[:, 1:]
        pair = valid[:, 1:]                                  # t + 1 valid (so t is too)
        pos = (h * nxt).sum(-1)
        ng = (h * neg[:, 1:]).sum(-1)
        f = nn.functional.logsigmoid
        lp = (f(pos) * pair).sum()
        ln = (f(-ng) * (pair & neg_ok[:, 1:])).sum()
        n = pair.sum().clamp(min=1)
        return -(lp + ln) / n

    def extra_loss(self, batch: Mapping) -> torch.Tensor:
        """What :func:`dpn_infer.train.train` adds to the click loss: ``aux_weight * aux_loss``."""
        return self.aux_weight * self.aux_loss(batch)


class DIENHeter(DIEN):
    """DIEN + Heter (DPN paper Table 5): DIEN's evolved interest beside a HeteroDPO (``hetero_dpo``)
    from the query, its context the mean of the extractor's states."""

    heter = True
