"""DyJoint, the paper's production model (§3.3, Tables 6-7, 15; App. B.5, G), in plain form.

    sessions  = segment(behaviour ids, timestamps)         [B, S, L] (dpn_infer.nn.sessions)
    K_s       = the sequence fields' embeddings per session [B, S, L, d]
    encoder   (DyTrans, Eqn. 15, per session, masked):
              E_s = MultiHead(K_s) + HomoDPO(K_s, k = 3)   (any subset of self_attention, homo_dpo,
                    and conv1d: Table 15's static "Conv1D" rows; + K_s when encoder_residual)
    decoder   (DyTrans, Eqn. 16, over every kept behaviour of every session):
              v_q = KFAtt(q, E) W_O + HeteroDPO(q, g(E))   (any subset of kfatt, hetero_dpo;
                    KFAtt-freq caps each session's total weight, one sensor per session)
    DyMLP     (App. G.1): field-based DPO layers over the candidate and profile fields' embeddings
              (FieldDPN's field layers) then the feature layers (Linear / DyLinear, as FeatureDPN);
              v_q and the dense fields (the paper's 150-d visual vector) are concatenated to the
              output of the first feature layer (App. B.5):
              h_1 = layer_1(field_out);  logit = classifier(layers_2..n([h_1, v_q, dense]))

The generators are SE layers by default (App. B.5: every weight-generating function is an SE layer;
``se_ratio`` r gives the bottleneck n // r: the paper's down ratios 0.125 / 0.25 / 0.5 are r = 8 / 4 /
2), or separable convolutions + SE ("sep", Table 15's best row).

Inputs: the schema's :class:`~dpn_infer.nn.schema.TimestampField` for ``sequence[0]`` sets the gap
and the S x L caps. A batch gives each sequence field as ids [B, T] with the timestamps field
[B, T], or pre-segmented [B, S', L'] (timestamps may then be left out). The other sequence fields
are aligned with the first (same positions) and are laid out like it. A sequence field's ``max_len``
and ``truncate`` are not used here: the session caps bound what is kept.
"""
from __future__ import annotations

from typing import List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .field import FieldLayerSpec, _as_field_spec, build_field_layers, run_field_layers
from .generators import Conv1DEncoder
from .inputs import InputLayer, apply_policy
from .kfatt import MODES, KFAtt
from .layers import (CTRModel, LayerSpec, as_layer_spec, build_feature_layers, check_common,
                     check_schema, run_feature_layers)
from .schema import DenseField, Schema, SequenceField, TimestampField
from .seqdpn import _names
from .sequence import HETERO_GENERATORS, HOMO_GENERATORS, HeteroDPO, HomoDPO, SelfAttention
from .sessions import Sessions, field_sessions, session_mask

ENCODER_PARTS = ("self_attention", "homo_dpo", "conv1d")
DECODER_PARTS = ("kfatt", "hetero_dpo")


def _parts(who, v, allowed):
    v = list(v)
    for p in v:
        if p not in allowed:
            raise ValueError(f"{who}: parts must be in {allowed}, got {p!r}")
    if len(set(v)) != len(v):
        raise ValueError(f"{who}: a part is listed twice: {v!r}")
    return v


class SessionEncoder(nn.Module):
    """Eqn. 15 within each session: the sum of the chosen parts over x [B, S, L, d] with lengths
    [B, S] (each session attends / convolves over its own behaviours only) -> [B, S, L, d], zero
    past each session's length. Submodules ``self_attention``, ``homo_dpo``, ``conv1d`` (None when
    not chosen)."""

    def __init__(self, dim: int, parts: Sequence[str] = ("self_attention", "homo_dpo"), heads: int = 1,
                 kernel_size: int = 3, homo_generator: str = "se", ratio: int = 4, homo_hidden: int = 4,
                 residual: bool = False):
        super().__init__()
        self.parts = _parts("SessionEncoder", parts, ENCODER_PARTS)
        if not self.parts and not residual:
            raise ValueError("SessionEncoder: needs a part or residual=True")
        self.dim, self.residual = dim, bool(residual)
        self.self_attention = SelfAttention(dim, heads) if "self_attention" in self.parts else None
        self.homo_dpo = (HomoDPO(dim, kernel_size, homo_hidden, generator=homo_generator, ratio=ratio)
                         if "homo_dpo" in self.parts else None)
        self.conv1d = Conv1DEncoder(dim, kernel_size) if "conv1d" in self.parts else None

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, S, L, d = x.shape
        xf, lf = x.reshape(B * S, L, d), lengths.reshape(B * S)
        m = session_mask(lf, L).unsqueeze(-1).to(x.dtype)
        out = [xf * m] if self.residual else []
        for mod in (self.self_attention, self.homo_dpo, self.conv1d):
            if mod is not None:
                out.append(mod(xf, lf))
        return sum(out[1:], out[0]).view(B, S, L, d)


class InterestDecoder(nn.Module):
    """Eqn. 16: v_q = KFAtt(q, E) (its ``o`` is W_O) + HeteroDPO(q, g(E)), over every behaviour of
    every session (E [B, S, L, d], lengths [B, S]) -> [B, out]. KFAtt-freq's groups are the
    sessions; HeteroDPO's context is the mean over all kept behaviours (of their per-session
    separable convolution for generator "sep"). Submodules ``kfatt``, ``hetero_dpo``."""

    def __init__(self, query_dim: int, dim: int, out_dim: int,
                 parts: Sequence[str] = ("kfatt", "hetero_dpo"), heads: int = 1, mode: str = "freq",
                 hetero_generator: str = "se", ratio: int = 4, kernel_size: int = 3,
                 hetero_hidden: int = 4):
        super().__init__()
        self.parts = _parts("InterestDecoder", parts, DECODER_PARTS)
        if not self.parts:
            raise ValueError("InterestDecoder: needs kfatt, hetero_dpo or both")
        self.query_dim, self.dim, self.out_dim = query_dim, dim, out_dim
        self.kfatt = (KFAtt(query_dim, dim, dim, out_dim, heads=heads, mode=mode)
                      if "kfatt" in self.parts else None)
        self.hetero_dpo = (HeteroDPO(query_dim, dim, out_dim, hetero_hidden, generator=hetero_generator,
                                     ratio=ratio, kernel_size=kernel_size)
                           if "hetero_dpo" in self.parts else None)

    def forward(self, q: torch.Tensor, e: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        B, S, L, d = e.shape
        mask = session_mask(lengths, L).reshape(B, S * L)
        out = []
        if self.kfatt is not None:
            groups = torch.arange(S, device=e.device).repeat_interleave(L).unsqueeze(0).expand(B, -1)
            out.append(self.kfatt(q, e.reshape(B, S * L, d), mask, groups, num_groups=S))
        if self.hetero_dpo is not None:
            f = self.hetero_dpo.features(e.reshape(B * S, L, d), lengths.reshape(B * S)).view(B, S * L, d)
            m = mask.unsqueeze(-1).to(e.dtype)
            ctx = (f * m).sum(1) / m.sum(1).clamp(min=1)
            out.append(self.hetero_dpo.dpo(q, ctx))
        return sum(out[1:], out[0])


class _FeatureStack(nn.Module):
    """A run of feature layers (``specs`` / ``layers`` / ``norms`` / ``acts`` / ``dropout``, the
    names dpn_infer.nn.layers builds and runs)."""

    def __init__(self, specs, width, x0_width, norm, activation, dropout):
        super().__init__()
        self.specs = specs
        self.dropout = nn.Dropout(dropout)
        self.out = build_feature_layers(self, specs, width, x0_width, norm, activation)

    def forward(self, x, x0):
        return run_feature_layers(self, x, x0)


class DyJoint(CTRModel):
    """The production model (module docstring). ``sequence``: behaviour fields (the first has the
    schema's timestamps field); ``candidate``: the query fields (q, also DyMLP inputs);
    ``profile``: the other DyMLP fields (default: every field not listed elsewhere, not a
    sequence, timestamps or dense field); ``dense``: dense fields concatenated after the first
    feature layer (default: every dense field not in candidate / profile). ``layers``: at least
    one feature layer (LayerSpec context "x0" = the DyMLP fields' values concatenated, or "prev").

    Submodules: ``inputs``, ``encoder`` (SessionEncoder), ``decoder`` (InterestDecoder),
    ``field_layers`` / ``field_norms`` / ``field_acts`` (DyMLP's field part), ``first`` and
    ``rest`` (feature layers before and after the interest joins), ``dropout``, ``classifier``."""

    served = True       # converts ("mlp" and "se" generators; "sep" is refused by the exporter)

    def __init__(self, schema: Schema, sequence: Sequence[str], candidate: Sequence[str],
                 profile: Optional[Sequence[str]] = None, dense: Optional[Sequence[str]] = None,
                 field_layers: Sequence[Union[FieldLayerSpec, int]] = (),
                 layers: Sequence[Union[LayerSpec, int]] = (64, 32),
                 encoder: Sequence[str] = ("self_attention", "homo_dpo"),
                 decoder: Sequence[str] = ("kfatt", "hetero_dpo"), encoder_residual: bool = False,
                 heads: int = 1, kernel_size: int = 3, homo_generator: str = "se",
                 hetero_generator: str = "se", se_ratio: int = 4, homo_hidden: int = 4,
                 hetero_hidden: int = 4, kfatt_mode: str = "freq", interest_dim: Optional[int] = None,
                 activation: str = "relu", norm: Optional[str] = None, field_norm: Optional[str] = None,
                 residual: bool = False, dropout: float = 0.0):
        super().__init__()
        check_schema("DyJoint", schema)
        check_common(activation, norm, dropout)
        if field_norm not in (None, "layernorm"):
            raise ValueError(f"DyJoint: field_norm must be None or 'layernorm', got {field_norm!r}")
        if homo_generator not in HOMO_GENERATORS or hetero_generator not in HETERO_GENERATORS:
            raise ValueError(f"DyJoint: homo_generator / hetero_generator must be in {HOMO_GENERATORS}")
        if kfatt_mode not in MODES:
            raise ValueError(f"DyJoint: kfatt_mode must be one of {MODES}, got {kfatt_mode!r}")
        self.schema = schema
        self.sequence = _names("sequence", sequence, schema, True)
        self.candidate = _names("candidate", candidate, schema, False)
        if not self.sequence or not self.candidate:
            raise ValueError("DyJoint: needs at least one sequence and one candidate field")
        ts = [f for f in schema if isinstance(f, TimestampField) and f.sequence == self.sequence[0]]
        if not ts:
            raise ValueError(f"DyJoint: the schema needs a timestamps field for {self.sequence[0]!r} "
                             f"(it sets the session gap and caps)")
        self.timestamps = ts[0]
        listed = set(self.sequence + self.candidate)
        if dense is None:
            dense = [f.name for f in schema if isinstance(f, DenseField) and f.name not in listed
                     and (profile is None or f.name not in profile)]
        self.dense = _names("dense", dense, schema, False)
        if profile is None:
            profile = [f.name for f in schema if f.name not in listed | set(self.dense)
                       and not isinstance(f, (SequenceField, TimestampField))]
        self.profile = _names("profile", profile, schema, False)
        if set(self.profile) & set(self.candidate) or set(self.dense) & (set(self.profile) | listed):
            raise ValueError("DyJoint: candidate, profile and dense fields must not overlap")
        for n in self.dense:
            if not isinstance(schema[n], DenseField):
                raise ValueError(f"DyJoint: dense field {n!r} must be a dense field")
        self.mlp_fields = [n for n in schema.names if n in set(self.candidate + self.profile)]
        d, dq = schema.width(self.sequence), schema.width(self.candidate)
        self.seq_dim, self.query_dim = d, dq
        self.interest_dim = interest_dim or d
        self.encoder_parts, self.decoder_parts = list(encoder), list(decoder)
        self.opts = dict(encoder_residual=bool(encoder_residual), heads=heads, kernel_size=kernel_size,
                         homo_generator=homo_generator, hetero_generator=hetero_generator,
                         se_ratio=se_ratio, homo_hidden=homo_hidden, hetero_hidden=hetero_hidden,
                         kfatt_mode=kfatt_mode, interest_dim=interest_dim)
        self.inputs = InputLayer(schema)
        self.encoder = SessionEncoder(d, encoder, heads, kernel_size, homo_generator, se_ratio,
                                      homo_hidden, encoder_residual)
        self.decoder = InterestDecoder(dq, d, self.interest_dim, decoder, heads, kfatt_mode,
                                       hetero_generator, se_ratio, kernel_size, hetero_hidden)
        # DyMLP: the field part (FieldDPN's layers) over the candidate and profile fields
        self.field_specs: List[FieldLayerSpec] = [_as_field_spec(f) for f in field_layers]
        self.field_norm, self.residual = field_norm, bool(residual)
        x0_width = schema.width(self.mlp_fields)
        width = x0_width
        if self.field_specs:
            dims = {schema[n].dim for n in self.mlp_fields}
            if len(dims) != 1:
                raise ValueError(f"DyJoint: field layers need the candidate and profile fields to share "
                                 f"one dim, got {[(n, schema[n].dim) for n in self.mlp_fields]}")
            fd = dims.pop()
            width = len(self.mlp_fields) * build_field_layers(self, self.field_specs, self.mlp_fields,
                                                              fd, field_norm, activation)
        self.specs: List[LayerSpec] = [as_layer_spec(layer) for layer in layers]
        if not self.specs:
            raise ValueError("DyJoint: needs at least one feature layer (the interest joins its output)")
        for i, s in enumerate(self.specs):
            if s.dynamic and s.context not in ("x0", "prev"):
                raise ValueError(f"DyJoint: layer {i}: context must be 'x0' or 'prev'")
        self.activation, self.norm, self.dropout_p = activation, norm, float(dropout)
        self.first = _FeatureStack(self.specs[:1], width, x0_width, norm, activation, self.dropout_p)
        joined = self.first.out + self.interest_dim + schema.width(self.dense)
        self.rest = _FeatureStack(self.specs[1:], joined, x0_width, norm, activation, self.dropout_p)
        self.dropout = nn.Dropout(self.dropout_p)
        self.classifier = nn.Linear(self.rest.out if self.specs[1:] else joined, 1)

    def config(self) -> dict:
        return {"schema": self.schema.to_json(), "sequence": list(self.sequence),
                "candidate": list(self.candidate), "profile": list(self.profile),
                "dense": list(self.dense), "field_layers": [s.to_dict() for s in self.field_specs],
                "layers": [s.to_dict() for s in self.specs], "encoder": list(self.encoder_parts),
                "decoder": list(self.decoder_parts), **self.opts, "activation": self.activation,
                "norm": self.norm, "field_norm": self.field_norm, "residual": self.residual,
                "dropout": self.dropout_p}

    # -- forward --------------------------------------------------------------------------------
    def sessions(self, batch: Mapping) -> Sessions:
        """The first sequence field's sessions (ids [B, T] + timestamps, or pre-segmented)."""
        ids = self._ids(self.sequence[0], batch)
        ts = self.timestamps.name
        times = self._ids(ts, batch) if ts in batch else None
        if ids.dim() == 2 and times is None:
            raise ValueError(f"field '{ts}': missing from the batch (the timestamps of "
                             f"'{self.sequence[0]}', which is given as [B, T])")
        return field_sessions(self.timestamps, ids, times)

    def _ids(self, name, batch):
        if name not in batch:
            raise ValueError(f"field '{name}': missing from the batch")
        v = batch[name]
        t = v if isinstance(v, torch.Tensor) else torch.as_tensor(v)
        if t.dtype.is_floating_point or t.dtype == torch.bool:
            raise ValueError(f"field '{name}': expected int64 ids, got {t.dtype}")
        return t.to(torch.int64)

    def behaviours(self, batch: Mapping):
        """(K [B, S, L, d] zero where no behaviour, session lengths [B, S])."""
        s = self.sessions(batch)
        parts = []
        for i, n in enumerate(self.sequence):
            f = self.schema[n]
            ids = s.ids if i == 0 else s.take(self._ids(n, batch))
            valid = s.ids != -1
            rows = apply_policy(f, torch.where(valid & (ids != -1), ids, torch.zeros_like(ids)))
            emb = self.inputs.embedding(n)
            parts.append(emb(rows) * (valid & (ids != -1)).unsqueeze(-1).to(emb.weight.dtype))
        return torch.cat(parts, -1), s.lengths

    def interest(self, batch: Mapping, q: torch.Tensor) -> torch.Tensor:
        """v_q [B, interest_dim] (Eqn. 15-16)."""
        k, lengths = self.behaviours(batch)
        return self.decoder(q, self.encoder(k, lengths), lengths)

    def forward(self, batch: Mapping) -> torch.Tensor:
        values = {}
        for n in self.mlp_fields + self.dense:
            if n not in batch:
                raise ValueError(f"field '{n}': missing from the batch")
            values[n] = self.inputs._field_value(self.schema[n], batch[n])
        q = torch.cat([values[n] for n in self.candidate], dim=1)
        x0 = torch.cat([values[n] for n in self.mlp_fields], dim=1)
        if self.field_specs:
            x = run_field_layers(self, torch.stack([values[n] for n in self.mlp_fields], dim=1))
        else:
            x = x0
        h = torch.cat([self.first(x, x0), self.interest(batch, q)] + [values[n] for n in self.dense], 1)
        return self.classifier(self.rest(h, x0)).squeeze(-1)
