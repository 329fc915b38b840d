"""sDPN (paper §2.5, Tables 4-5): user-behaviour models over sequence fields.

    X   = the sequence fields' embeddings side by side per position      [B, T, d]
    E   = X (+ X when residual) + SelfAttention(X) + HomoDPO(X) + Conv1D(X)  (encoder: any subset)
    q   = the candidate fields' values concatenated                      [B, dq]
    I   = [TargetAttention(q, E), HeteroDPO(q, E)]                        (decoder: any subset;
          mean_valid(E) when empty)
    logit = head([I, q, profile values])    head: Linear / DyLinear layers as in FeatureDPN

HomoDPO's and HeteroDPO's generators (``homo_generator`` / ``hetero_generator``): ``mlp``, ``se``
(App. B.5, bottleneck ``max(1, d // se_ratio)``) or ``sep`` (Table 15's "Sep + SE": the context is
the mean of a separable convolution of kernel ``kernel_size``); Conv1D is Table 15's static encoder
(:class:`~dpn_infer.nn.generators.Conv1DEncoder`, kernel ``kernel_size``). All of them are served.

``DINHeter`` is the paper's "DIN + Heter" (Table 5): no encoder, target attention and HeteroDPO.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .generators import Conv1DEncoder
from .inputs import InputLayer
from .layers import (CTRModel, LayerSpec, as_layer_spec, build_feature_layers, check_common,
                     check_schema, run_feature_layers)
from .schema import Schema, SequenceField, TimestampField
from .sequence import HeteroDPO, HomoDPO, SelfAttention, TargetAttention, masked_mean, valid_mask

ENCODERS = ("self_attention", "homo_dpo", "conv1d")
DECODERS = ("target_attention", "hetero_dpo")


def _names(who, v, schema, want_seq):
    v = [v] if isinstance(v, str) else list(v)
    for n in v:
        if n not in schema:
            raise ValueError(f"SeqDPN: {who} field {n!r} is not in the schema (fields: {schema.names})")
        if isinstance(schema[n], SequenceField) != want_seq:
            raise ValueError(f"SeqDPN: {who} field {n!r} must {'' if want_seq else 'not '}be a "
                             f"sequence field")
    if len(set(v)) != len(v):
        raise ValueError(f"SeqDPN: {who} lists a field twice: {v!r}")
    return v


class SeqDPN(CTRModel):
    """Submodules: ``inputs``, ``self_attention`` / ``homo_dpo`` / ``conv1d`` (encoder), ``target_attention`` /
    ``hetero_dpo`` (decoder; absent ones are None), ``layers`` / ``norms`` / ``acts`` / ``dropout``
    / ``classifier`` (the head, LayerSpec context "x0" = the head's input, or "prev").

    ``sequence``: sequence fields (same max_len; the first one's length is the row's length);
    ``candidate``: non-sequence fields forming the query q; ``profile``: the other non-sequence
    fields given to the head (default: every field not in sequence or candidate)."""

    def __init__(self, schema: Schema, sequence: Sequence[str], candidate: Sequence[str],
                 profile: Optional[Sequence[str]] = None,
                 encoder: Sequence[str] = ("self_attention", "homo_dpo"),
                 decoder: Sequence[str] = ("target_attention", "hetero_dpo"),
                 residual: bool = True, heads: int = 1, kernel_size: int = 3,
                 homo_hidden: int = 4, homo_sigma: str = "relu", homo_generator: str = "mlp",
                 se_ratio: int = 4, att_hidden: int = 36, att_act: str = "sigmoid",
                 hetero_out: Optional[int] = None, hetero_hidden: int = 4, hetero_sigma: str = "relu",
                 hetero_generator: str = "mlp", layers: Sequence[Union[LayerSpec, int]] = (200, 80), activation: str = "relu",
                 norm: Optional[str] = None, dropout: float = 0.0):
        super().__init__()
        check_schema("SeqDPN", schema)
        check_common(activation, norm, dropout)
        self.schema = schema
        self.sequence = _names("sequence", sequence, schema, True)
        self.candidate = _names("candidate", candidate, schema, False)
        if not self.sequence or not self.candidate:
            raise ValueError("SeqDPN: needs at least one sequence and one candidate field")
        if profile is None:
            profile = [f.name for f in schema if f.name not in self.sequence + self.candidate
                       and not isinstance(f, (SequenceField, TimestampField))]
        self.profile = _names("profile", profile, schema, False)
        if set(self.profile) & set(self.candidate):
            raise ValueError("SeqDPN: a field is both candidate and profile")
        T = {schema[n].max_len for n in self.sequence}
        if len(T) != 1:
            raise ValueError(f"SeqDPN: the sequence fields must share one max_len, got {sorted(T)}")
        self.max_len = T.pop()
        self.encoder, self.decoder = list(encoder), list(decoder)
        for e in self.encoder:
            if e not in ENCODERS:
                raise ValueError(f"SeqDPN: encoder parts must be in {ENCODERS}, got {e!r}")
        for e in self.decoder:
            if e not in DECODERS:
                raise ValueError(f"SeqDPN: decoder parts must be in {DECODERS}, got {e!r}")
        self.residual = bool(residual)
        d = schema.width(self.sequence)
        dq = schema.width(self.candidate)
        self.seq_dim, self.query_dim = d, dq
        self.opts = dict(heads=heads, kernel_size=kernel_size, homo_hidden=homo_hidden,
                         homo_sigma=homo_sigma, homo_generator=homo_generator, se_ratio=se_ratio,
                         att_hidden=att_hidden, att_act=att_act, hetero_out=hetero_out,
                         hetero_hidden=hetero_hidden, hetero_sigma=hetero_sigma)
        if hetero_generator != "mlp":   # a later option: earlier checkpoints' configs stay as written
            self.opts["hetero_generator"] = hetero_generator
        self.inputs = InputLayer(schema)
        self.self_attention = SelfAttention(d, heads) if "self_attention" in self.encoder else None
        self.homo_dpo = (HomoDPO(d, kernel_size, homo_hidden, homo_sigma, homo_generator, se_ratio)
                         if "homo_dpo" in self.encoder else None)
        self.conv1d = Conv1DEncoder(d, kernel_size) if "conv1d" in self.encoder else None
        if "target_attention" in self.decoder and dq != d:
            raise ValueError(f"SeqDPN: target attention needs the candidate width ({dq}) to equal the "
                             f"behaviour width ({d})")
        self.target_attention = (TargetAttention(d, att_hidden, att_act)
                                 if "target_attention" in self.decoder else None)
        hout = hetero_out or d
        self.hetero_dpo = (HeteroDPO(dq, d, hout, hetero_hidden, hetero_sigma,
                                     generator=hetero_generator, ratio=se_ratio,
                                     kernel_size=kernel_size)
                           if "hetero_dpo" in self.decoder else None)
        interest = (d if self.target_attention is not None else 0) + \
                   (hout if self.hetero_dpo is not None else 0)
        interest = interest or d
        self.head_in = interest + dq + schema.width(self.profile)
        self.specs: List[LayerSpec] = [as_layer_spec(layer) for layer in layers]
        for i, s in enumerate(self.specs):
            if s.dynamic and s.context not in ("x0", "prev"):
                raise ValueError(f"SeqDPN: head layer {i}: context must be 'x0' (the head input) or "
                                 f"'prev', got {s.context!r}")
        self.activation, self.norm, self.dropout_p = activation, norm, float(dropout)
        width = build_feature_layers(self, self.specs, self.head_in, self.head_in, norm, activation)
        self.dropout = nn.Dropout(self.dropout_p)
        self.classifier = nn.Linear(width, 1)

    def config(self) -> dict:
        return {"schema": self.schema.to_json(), "sequence": list(self.sequence),
                "candidate": list(self.candidate), "profile": list(self.profile),
                "encoder": list(self.encoder), "decoder": list(self.decoder),
                "residual": self.residual, **self.opts, "layers": [s.to_dict() for s in self.specs],
                "activation": self.activation, "norm": self.norm, "dropout": self.dropout_p}

    # -- forward --------------------------------------------------------------------------------
    def behaviours(self, values):
        """(X [B, T, d], lengths [B]) from the input layer's values."""
        lengths = values[self.sequence[0]][1]
        x = torch.cat([values[n][0] for n in self.sequence], dim=-1)
        if len(self.sequence) > 1:   # the first field's length is the row's
            x = x * valid_mask(lengths, x.shape[1]).unsqueeze(-1).to(x.dtype)
        return x, lengths

    def encode(self, x, lengths):
        parts = [x] if self.residual or not self.encoder else []
        if self.self_attention is not None:
            parts.append(self.self_attention(x, lengths))
        if self.homo_dpo is not None:
            parts.append(self.homo_dpo(x, lengths))
        if self.conv1d is not None:
            parts.append(self.conv1d(x, lengths))
        return sum(parts[1:], parts[0])

    def head_input(self, batch: Mapping) -> torch.Tensor:
        values = self.inputs(batch)
        x, lengths = self.behaviours(values)
        e = self.encode(x, lengths)
        q = torch.cat([values[n] for n in self.candidate], dim=1)
        interest = []
        if self.target_attention is not None:
            interest.append(self.target_attention(q, e, lengths))
        if self.hetero_dpo is not None:
            interest.append(self.hetero_dpo(q, e, lengths))
        if not interest:
            interest.append(masked_mean(e, lengths))
        return torch.cat(interest + [q] + [values[n] for n in self.profile], dim=1)

    def forward(self, batch: Mapping) -> torch.Tensor:
        x0 = self.head_input(batch)
        return self.classifier(run_feature_layers(self, x0, x0)).squeeze(-1)


class DINHeter(SeqDPN):
    """DIN + Heter (paper Table 5): raw behaviours (no encoder), target attention and HeteroDPO."""

    def __init__(self, schema: Schema, sequence, candidate, profile=None, **kw):
        kw.pop("encoder", None)
        kw.pop("decoder", None)
        super().__init__(schema, sequence, candidate, profile, encoder=(),
                         decoder=("target_attention", "hetero_dpo"), **kw)

    def config(self) -> dict:
        c = super().config()
        c.pop("encoder")
        c.pop("decoder")
        return c

