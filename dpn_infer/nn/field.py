"""The field-based dynamic parameterized operator (paper §2.4, App. B.3) and FieldDPN.

X in R^{t1 x m} (one row per field), context Z in R^{t2 x n}. Per field i the context is aggregated
into c_i, then a generator g_i gives h_i and the generated weights of field i (the layout of
DyLinear, docs/format.md §5 `dylinear` / `field_dylinear`):

    summation:  c_i = mean_j z_j              (exclude_self: mean over j != i; needs t1 == t2)
    self:       c_i = z_i                     (needs t1 == t2)
    attention:  c_i = sum_j a_ij z_j,  a_i = softmax_j(q_i . tanh(W_a z_j + b_a))
    concat:     c_i = [z_1; ...; z_t2]        (g_i reads all context rows)

    h_i = sigma(W1_i c_i + b1_i)  ("mlp")  or  h_i = c_i  ("linear", HyperDense)
    t_i = W2_i h_i + b2_i;  W_i(Z) = t_i[:ws] (block-diagonal with `heads` blocks), b_i = t_i[ws:]
    y_i = W_i(Z)^T x_i + b_i

Generators are per field (g_i, the paper's notation) unless ``shared=True`` (one g for all fields).
The implicit Field-DNN part (App. B.3) adds W_f X W_l (W_f [t1, t1] mixes fields, W_l [m, c]
mixes features); ``dynamic=False, implicit=True`` is the plain Field-DNN layer (with a bias [c]).
``impl`` as in DyLinear: "kron" applies every field's W_i by the Kronecker identity, one batched
GEMM over (field, head) pairs, W_i never built; "paper" materializes W_i per (row, field); "auto"
(default) is "kron" in train mode and "paper" in eval mode.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .checks import positive_int
from .dylinear import GENERATORS, SIGMAS, ImplChoice, apply_sigma, kron_matmul
from .inputs import InputLayer
from .layers import (ACTIVATIONS, CTRModel, LayerSpec, as_layer_spec, build_feature_layers,
                     check_common, check_schema, run_feature_layers, x0_of)
from .schema import Schema

AGGREGATIONS = ("summation", "self", "attention", "concat")
CONTEXTS = ("x0", "prev")
COMBINES = ("stacked", "parallel")


class FieldDyLinear(ImplChoice, nn.Module):
    """Field-based dynamic linear layer: ``forward(x [B, t1, m], z [B, t2, n]) -> [B, t1, c]``.

    Parameters (G = 1 when ``shared`` else t1): ``g1_weight`` [G, l, n_in], ``g1_bias`` [G, l]
    ("mlp" only; n_in = t2*n for concat, else n), ``g2_weight`` [G, P, l], ``g2_bias`` [G, P]
    (P = H*(m/H)*(c/H) + c); attention: ``att`` (``nn.Linear(n, attention_hidden)``) and
    ``att_query`` [t1, attention_hidden]; implicit: ``field_weight`` [t1, t1] (W_f),
    ``feature_weight`` [m, c] (W_l), and ``bias`` [c] when ``dynamic=False``. ``impl``: module
    docstring (not saved with the model).
    """

    def __init__(self, in_fields: int, in_features: int, out_features: int, context_fields: int,
                 context_features: int, aggregation: str = "attention", hidden: int = 4,
                 sigma: str = "relu", generator: str = "mlp", heads: int = 1, shared: bool = False,
                 exclude_self: bool = False, attention_hidden: int = 8, dynamic: bool = True,
                 implicit: bool = False, impl: str = "auto"):
        super().__init__()
        self.impl = impl
        for k, v in (("in_fields", in_fields), ("in_features", in_features),
                     ("out_features", out_features), ("context_fields", context_fields),
                     ("context_features", context_features), ("heads", heads)):
            positive_int("FieldDyLinear", k, v)
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"FieldDyLinear: aggregation must be one of {AGGREGATIONS}, "
                             f"got {aggregation!r}")
        if generator not in GENERATORS:
            raise ValueError(f"FieldDyLinear: generator must be one of {GENERATORS}, got {generator!r}")
        if sigma not in SIGMAS:
            raise ValueError(f"FieldDyLinear: sigma must be one of {SIGMAS}, got {sigma!r}")
        if not dynamic and not implicit:
            raise ValueError("FieldDyLinear: at least one of dynamic and implicit must be true")
        t1, m, c, t2, n = in_fields, in_features, out_features, context_fields, context_features
        if aggregation == "self" and t1 != t2:
            raise ValueError(f"FieldDyLinear: aggregation 'self' needs in_fields == context_fields, "
                             f"got {t1} and {t2}")
        if exclude_self:
            if aggregation != "summation":
                raise ValueError("FieldDyLinear: exclude_self applies to aggregation 'summation' only")
            if t1 != t2 or t2 < 2:
                raise ValueError(f"FieldDyLinear: exclude_self needs in_fields == context_fields >= 2, "
                                 f"got {t1} and {t2}")
        if m % heads or c % heads:
            raise ValueError(f"FieldDyLinear: heads={heads} must divide in_features={m} and "
                             f"out_features={c}")
        n_in = t2 * n if aggregation == "concat" else n
        if generator == "mlp":
            positive_int("FieldDyLinear", "hidden", hidden)
        else:
            hidden, sigma = n_in, "identity"
        if aggregation == "attention":
            positive_int("FieldDyLinear", "attention_hidden", attention_hidden)
        self.in_fields, self.in_features, self.out_features = t1, m, c
        self.context_fields, self.context_features = t2, n
        self.aggregation, self.hidden, self.sigma, self.generator = aggregation, hidden, sigma, generator
        self.heads, self.shared, self.exclude_self = heads, bool(shared), bool(exclude_self)
        self.attention_hidden = attention_hidden if aggregation == "attention" else None
        self.dynamic, self.implicit = bool(dynamic), bool(implicit)
        self.generator_input = n_in
        self.weight_size = heads * (m // heads) * (c // heads)
        self.generated_size = self.weight_size + c
        G = 1 if shared else t1
        self.groups = G
        l, P, ws = hidden, self.generated_size, self.weight_size
        if dynamic:
            if generator == "mlp":
                k1 = 1.0 / math.sqrt(n_in)
                self.g1_weight = nn.Parameter(torch.empty(G, l, n_in).uniform_(-k1, k1))
                self.g1_bias = nn.Parameter(torch.empty(G, l).uniform_(-k1, k1))
            k = 1.0 / math.sqrt(m // heads)
            w2 = torch.empty(G, P, l)
            b2 = torch.zeros(G, P)
            w2[:, :ws].normal_(0.0, 0.5 * k / math.sqrt(l))
            w2[:, ws:].normal_(0.0, 0.01)
            b2[:, :ws].uniform_(-k, k)
            self.g2_weight = nn.Parameter(w2)
            self.g2_bias = nn.Parameter(b2)
            if aggregation == "attention":
                self.att = nn.Linear(n, attention_hidden)
                self.att_query = nn.Parameter(torch.randn(t1, attention_hidden) /
                                              math.sqrt(attention_hidden))
        if implicit:
            self.field_weight = nn.Parameter(torch.eye(t1) + torch.randn(t1, t1) * (0.1 / math.sqrt(t1)))
            self.feature_weight = nn.Parameter(torch.empty(m, c).uniform_(-1 / math.sqrt(m),
                                                                           1 / math.sqrt(m)))
            if not dynamic:
                self.bias = nn.Parameter(torch.zeros(c))

    def extra_repr(self) -> str:
        return (f"fields={self.in_fields}, in={self.in_features}, out={self.out_features}, "
                f"context={self.context_fields}x{self.context_features}, "
                f"aggregation={self.aggregation}, generator={self.generator}, hidden={self.hidden}, "
                f"sigma={self.sigma}, heads={self.heads}, shared={self.shared}, "
                f"dynamic={self.dynamic}, implicit={self.implicit}")

    def config(self) -> dict:
        return {"in_fields": self.in_fields, "in_features": self.in_features,
                "out_features": self.out_features, "context_fields": self.context_fields,
                "context_features": self.context_features, "aggregation": self.aggregation,
                "hidden": self.hidden, "sigma": self.sigma, "generator": self.generator,
                "heads": self.heads, "shared": self.shared, "exclude_self": self.exclude_self,
                "attention_hidden": self.attention_hidden or 8, "dynamic": self.dynamic,
                "implicit": self.implicit}

    # -- pieces ---------------------------------------------------------------------------------
    def attention(self, z: torch.Tensor) -> torch.Tensor:
        """a [B, t1, t2]: per target field i, softmax over context fields j."""
        u = torch.tanh(self.att(z))                                    # [B, t2, d_a]
        return torch.softmax(torch.einsum("bjd,id->bij", u, self.att_query), dim=-1)

    def aggregate(self, z: torch.Tensor) -> torch.Tensor:
        """The generator input of every field, [B, t1, n_in]."""
        B, t1 = z.shape[0], self.in_fields
        if self.aggregation == "summation":
            if self.exclude_self:
                return (z.sum(1, keepdim=True) - z) / (self.context_fields - 1)
            return z.mean(1, keepdim=True).expand(B, t1, z.shape[2])
        if self.aggregation == "self":
            return z
        if self.aggregation == "concat":
            return z.reshape(B, 1, -1).expand(B, t1, self.generator_input)
        return torch.einsum("bij,bjn->bin", self.attention(z), z)

    def _group(self, p: torch.Tensor) -> torch.Tensor:
        return p.expand(self.in_fields, *p.shape[1:]) if self.shared else p

    def hidden_of(self, z: torch.Tensor) -> torch.Tensor:
        """h [B, t1, l]: what every field's g2 reads."""
        ctx = self.aggregate(z)
        if self.generator == "linear":
            return ctx
        pre = torch.einsum("bin,iln->bil", ctx, self._group(self.g1_weight)) + self._group(self.g1_bias)
        return apply_sigma(self.sigma, pre)

    def generate(self, z: torch.Tensor):
        """(weight part [B, t1, ws], dynamic bias [B, t1, c]) of every field's generated vector."""
        h = self.hidden_of(z)
        t = torch.einsum("bil,ipl->bip", h, self._group(self.g2_weight)) + self._group(self.g2_bias)
        return t[..., :self.weight_size], t[..., self.weight_size:]

    def _dynamic_kron(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The dynamic part W_i(Z)^T x_i + b_i by kron_matmul: groups (field, head), rows B; a
        shared generator is one group per head, broadcast over the fields."""
        B, t1, m, c, H, ws = x.shape[0], self.in_fields, self.in_features, self.out_features, \
            self.heads, self.weight_size
        mh, ch, G = m // H, c // H, self.groups
        h = self.hidden_of(z)                                                # [B, t1, l]
        W2, b2 = self.g2_weight, self.g2_bias                                # [G, P, l], [G, P]
        l = W2.shape[2]
        b = torch.einsum("bil,ipl->bip", h, self._group(W2[:, ws:])) + self._group(b2[:, ws:])
        y = kron_matmul(x.reshape(B, t1, H, mh).permute(1, 2, 0, 3),        # [t1, H, B, mh]
                        h.transpose(0, 1).unsqueeze(1),                      # [t1, 1, B, l]
                        W2[:, :ws].reshape(G, H, mh, ch, l), b2[:, :ws].reshape(G, H, mh, ch))
        return y.permute(2, 0, 1, 3).reshape(B, t1, c) + b                  # [t1, H, B, ch] -> [B, t1, c]

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        t1, m, c, H = self.in_fields, self.in_features, self.out_features, self.heads
        if x.dim() != 3 or tuple(x.shape[1:]) != (t1, m):
            raise ValueError(f"FieldDyLinear: x must be [B, {t1}, {m}], got {list(x.shape)}")
        if z.dim() != 3 or tuple(z.shape[1:]) != (self.context_fields, self.context_features) \
                or z.shape[0] != x.shape[0]:
            raise ValueError(f"FieldDyLinear: z must be [{x.shape[0]}, {self.context_fields}, "
                             f"{self.context_features}], got {list(z.shape)}")
        B = x.shape[0]
        y = x.new_zeros(B, t1, c)
        if self.dynamic and self.uses_kron():
            y = self._dynamic_kron(x, z)
        elif self.dynamic:
            wt, b = self.generate(z)
            W = wt.reshape(B, t1, H, m // H, c // H)                   # W_i per (row, field)
            y = torch.einsum("bihk,bihkc->bihc", x.reshape(B, t1, H, m // H), W).reshape(B, t1, c) + b
        if self.implicit:
            y = y + torch.einsum("ik,bkm,mc->bic", self.field_weight, x, self.feature_weight)
            if not self.dynamic:
                y = y + self.bias
        return y


@dataclass
class FieldLayerSpec:
    """One field layer of a FieldDPN: a :class:`FieldDyLinear` from every field's ``in`` features to
    ``out``, context ``"x0"`` (the field embeddings), ``"prev"`` (the layer's own input) or a list of
    field names (those fields' embedding rows, in that order: t2 = len(list))."""
    out: int
    aggregation: str = "attention"
    context: Union[str, List[str]] = "x0"
    hidden: int = 4
    sigma: str = "relu"
    generator: str = "mlp"
    heads: int = 1
    shared: bool = False
    exclude_self: bool = False
    attention_hidden: int = 8
    dynamic: bool = True
    implicit: bool = False

    def __post_init__(self):
        positive_int("FieldLayerSpec", "out", self.out)
        if isinstance(self.context, (list, tuple)):
            ctx = list(self.context)
            if not ctx or not all(isinstance(c, str) for c in ctx) or len(set(ctx)) != len(ctx):
                raise ValueError(f"FieldLayerSpec: context must be 'x0', 'prev' or a list of distinct "
                                 f"field names, got {self.context!r}")
            self.context = ctx
        elif self.context not in CONTEXTS:
            raise ValueError(f"FieldLayerSpec: context must be one of {CONTEXTS} or a list of field "
                             f"names, got {self.context!r}")
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"FieldLayerSpec: aggregation must be one of {AGGREGATIONS}, "
                             f"got {self.aggregation!r}")

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["context"] = d["context"] if isinstance(d["context"], str) else list(d["context"])
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> "FieldLayerSpec":
        return cls(**dict(d))


def _as_field_spec(layer) -> FieldLayerSpec:
    if isinstance(layer, FieldLayerSpec):
        return layer
    if isinstance(layer, int) and not isinstance(layer, bool):
        return FieldLayerSpec(layer)
    if isinstance(layer, Mapping):
        return FieldLayerSpec.from_dict(layer)
    raise TypeError(f"a field layer must be a FieldLayerSpec, an int or a dict, got {type(layer).__name__}")


class FieldDPN(CTRModel):
    """Stacked field-based DPOs over the field embeddings X0 [B, t, d] (every embedded field has dim
    d = ``field_dim``, by default their common dim; a dense field of another width is projected by
    ``projections["f<index>"]``, a bias-free ``nn.Linear(dim, d)``),
    each layer FieldDyLinear (context Z: X0, the layer input, or the rows of named fields) -> norm
    (per field) -> activation (-> + input when ``residual`` and the
    layer keeps the width) -> dropout; then the flattened fields [B, t*c] and, optionally, feature
    layers (Table 14b):

    - ``combine="stacked"``: the field output feeds the feature layers (LayerSpec: Linear or DyLinear
      whose context "x0" is the concatenated embeddings, "prev" the layer input);
    - ``combine="parallel"``: the feature layers read x0 (the embeddings) as a FeatureDPN does, and
      the classifier reads concat[field output, feature output].

    Submodules: ``inputs``, ``field_layers`` / ``field_norms`` / ``field_acts``, ``layers`` /
    ``norms`` / ``acts`` (feature part), ``dropout``, ``classifier``.
    """

    def __init__(self, schema: Schema, field_layers: Sequence[Union[FieldLayerSpec, int]] = (64,),
                 layers: Sequence[Union[LayerSpec, int]] = (), combine: str = "stacked",
                 activation: str = "relu", norm: Optional[str] = None, residual: bool = False,
                 feature_norm: Optional[str] = None, dropout: float = 0.0,
                 field_dim: Optional[int] = None):
        super().__init__()
        check_schema("FieldDPN", schema)
        check_common(activation, feature_norm, dropout)
        if norm not in (None, "layernorm"):
            raise ValueError(f"FieldDPN: norm must be None or 'layernorm', got {norm!r}")
        if combine not in COMBINES:
            raise ValueError(f"FieldDPN: combine must be one of {COMBINES}, got {combine!r}")
        if field_dim is None:
            emb_dims = {f.dim for f in schema.fields if f.kind != "dense"}
            dims = emb_dims or {f.dim for f in schema.fields}
            if len(dims) != 1:
                raise ValueError(f"FieldDPN: every field needs the same dim (one row of X per field); "
                                 f"got {[(f.name, f.dim) for f in schema.fields]}")
            field_dim = next(iter(dims))
        positive_int("FieldDPN", "field_dim", field_dim)
        # Dense fields of another width get a row of X through a bias-free Linear(dim, d) (a numeric
        # field's embedding, as in AutoInt: x * e for dim 1). Embedded fields must already be d wide.
        self.projections = nn.ModuleDict()
        for i, f in enumerate(schema.fields):
            if f.dim != field_dim:
                if f.kind != "dense":
                    raise ValueError(f"FieldDPN: field {f.name!r} has dim {f.dim}, the field rows have "
                                     f"{field_dim} (only dense fields are projected)")
                self.projections[f"f{i}"] = nn.Linear(f.dim, field_dim, bias=False)
        dims = {field_dim}
        self.schema = schema
        self.field_specs: List[FieldLayerSpec] = [_as_field_spec(layer) for layer in field_layers]
        self.specs: List[LayerSpec] = [as_layer_spec(layer) for layer in layers]
        self.combine, self.activation, self.norm = combine, activation, norm
        self.residual, self.feature_norm, self.dropout_p = bool(residual), feature_norm, float(dropout)
        self.inputs = InputLayer(schema)
        t, d = len(schema.fields), dims.pop()
        self.num_fields, self.field_dim = t, d
        self.field_out = build_field_layers(self, self.field_specs, schema.names, d, norm, activation)
        m = self.field_out
        x0_width = schema.width()          # the feature part reads the raw values, as FeatureDPN
        width = t * m if combine == "stacked" else x0_width
        width = build_feature_layers(self, self.specs, width, x0_width, feature_norm, activation, schema)
        if combine == "parallel":
            width += t * m
        self.dropout = nn.Dropout(self.dropout_p)
        self.classifier = nn.Linear(width, 1)

    def config(self) -> dict:
        return {"schema": self.schema.to_json(),
                "field_layers": [s.to_dict() for s in self.field_specs],
                "layers": [s.to_dict() for s in self.specs], "combine": self.combine,
                "activation": self.activation, "norm": self.norm, "residual": self.residual,
                "feature_norm": self.feature_norm, "dropout": self.dropout_p,
                "field_dim": self.field_dim}

    def field_rows(self, values) -> torch.Tensor:
        """X0 [B, t, d]: one row per field (dense fields of another width projected)."""
        rows = []
        for i, f in enumerate(self.schema.fields):
            v = values[f.name]
            key = f"f{i}"
            rows.append(self.projections[key](v) if key in self.projections else v)
        return torch.stack(rows, dim=1)

    def field_forward(self, X0: torch.Tensor) -> torch.Tensor:
        return run_field_layers(self, X0)

    def forward(self, batch: Mapping) -> torch.Tensor:
        values = self.inputs(batch)
        x0 = x0_of(values, self.schema)
        f = self.field_forward(self.field_rows(values))
        x = run_feature_layers(self, f if self.combine == "stacked" else x0, x0, values)
        if self.combine == "parallel":
            x = torch.cat([f, x], dim=1)
        return self.classifier(x).squeeze(-1)


def build_field_layers(owner: nn.Module, specs: Sequence[FieldLayerSpec], names: Sequence[str], d: int,
                       norm: Optional[str], activation: str) -> int:
    """Set ``owner.field_layers`` / ``field_norms`` / ``field_acts`` / ``context_index`` for
    ``specs`` over the field rows ``names`` (each d wide); returns the output width per field."""
    owner.field_layers, owner.field_norms, owner.field_acts = nn.ModuleList(), nn.ModuleList(), \
        nn.ModuleList()
    t, m = len(names), d
    owner.context_index = []     # per field layer: row indices of a named context, else None
    for s in specs:
        idx = None
        if isinstance(s.context, list):
            for name in s.context:
                if name not in names:
                    raise ValueError(f"field layer context field {name!r} is not in the schema "
                                     f"(fields: {list(names)})")
            idx = [list(names).index(name) for name in s.context]
        owner.context_index.append(idx)
        n = m if s.context == "prev" else d
        t2 = len(idx) if idx is not None else t
        owner.field_layers.append(FieldDyLinear(
            t, m, s.out, t2, n, aggregation=s.aggregation, hidden=s.hidden, sigma=s.sigma,
            generator=s.generator, heads=s.heads, shared=s.shared, exclude_self=s.exclude_self,
            attention_hidden=s.attention_hidden, dynamic=s.dynamic, implicit=s.implicit))
        owner.field_norms.append(nn.LayerNorm(s.out) if norm == "layernorm" else nn.Identity())
        owner.field_acts.append(ACTIVATIONS[activation]())
        m = s.out
    return m


def run_field_layers(owner: nn.Module, X0: torch.Tensor) -> torch.Tensor:
    """``owner``'s field layers (built by :func:`build_field_layers`; ``owner.residual`` and
    ``owner.dropout`` as FieldDPN's) on the field rows X0 [B, t, d] -> flattened [B, t * c]."""
    x = X0
    for spec, idx, layer, norm, act in zip(owner.field_specs, owner.context_index, owner.field_layers,
                                           owner.field_norms, owner.field_acts):
        z = X0 if spec.context == "x0" else x if spec.context == "prev" else X0[:, idx]
        y = act(norm(layer(x, z)))
        if owner.residual and y.shape == x.shape:
            y = y + x
        x = owner.dropout(y)
    return x.reshape(x.shape[0], -1)


def fm_operator(fields: int, dim: int) -> FieldDyLinear:
    """FM (App. C) as a field operator: self-excluded summation with an identity generator, so
    y_i = <v_i, mean_{j != i} v_j> and FM(v) = sum_{i<j} <v_i, v_j> = (t - 1) / 2 * sum_i y_i."""
    op = FieldDyLinear(fields, dim, 1, fields, dim, aggregation="summation", generator="linear",
                       shared=True, exclude_self=True)
    with torch.no_grad():
        op.g2_weight.zero_()
        op.g2_bias.zero_()
        op.g2_weight[0, :dim, :dim] = torch.eye(dim)    # W_i[k, 0] = h_ik: the identity g
    return op
