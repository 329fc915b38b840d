"""The feature-layer stack every model ends in: per layer (Linear | DyLinear) -> norm -> activation
-> dropout. FeatureDPN is this stack over x0, FieldDPN's feature part reads the field output or x0,
SeqDPN's head reads its interest vector, CrossNet's deep tower is its static form.

The stack lives on the model itself as ``layers`` / ``norms`` / ``acts`` (nn.ModuleList) beside its
``specs`` (LayerSpec list) and ``dropout``: those names key the state_dict of saved checkpoints and
the tensors in model.bin, so :func:`build_feature_layers` sets exactly them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .checks import positive_int
from .dylinear import FORMS, GENERATORS, SIGMAS, DyLinear
from .schema import Schema, SequenceField

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "identity": nn.Identity}
NORMS = (None, "layernorm", "batchnorm")


@dataclass
class LayerSpec:
    """One hidden layer of a FeatureDPN.

    ``dynamic=False``: a plain ``nn.Linear``. ``dynamic=True``: a :class:`DyLinear` whose context is
    ``"x0"`` (all field values concatenated in schema order), ``"prev"`` (the layer's own input) or a
    list of field names (their values concatenated in the listed order, e.g. the paper's "genre").
    """
    out: int
    dynamic: bool = False
    context: Union[str, List[str]] = "x0"
    hidden: int = 4
    sigma: str = "relu"
    generator: str = "mlp"
    form: str = "full"
    heads: int = 1
    rank: Optional[int] = None
    w0: bool = False

    def __post_init__(self):
        positive_int("LayerSpec", "out", self.out)
        if isinstance(self.context, str):
            if self.context not in ("x0", "prev"):
                raise ValueError(f"LayerSpec: context must be 'x0', 'prev' or a list of field names, "
                                 f"got {self.context!r} (write [{self.context!r}] for one field)")
        elif isinstance(self.context, (list, tuple)):
            ctx = list(self.context)
            if not ctx or not all(isinstance(n, str) for n in ctx):
                raise ValueError(f"LayerSpec: a field-list context must be a non-empty list of field "
                                 f"names, got {self.context!r}")
            if len(set(ctx)) != len(ctx):
                raise ValueError(f"LayerSpec: context lists a field twice: {ctx!r}")
            self.context = ctx
        else:
            raise ValueError(f"LayerSpec: context must be 'x0', 'prev' or a list of field names, "
                             f"got {self.context!r}")
        if self.dynamic:
            if self.sigma not in SIGMAS:
                raise ValueError(f"LayerSpec: sigma must be one of {SIGMAS}, got {self.sigma!r}")
            if self.generator not in GENERATORS:
                raise ValueError(f"LayerSpec: generator must be one of {GENERATORS}, "
                                 f"got {self.generator!r}")
            if self.form not in FORMS:
                raise ValueError(f"LayerSpec: form must be one of {FORMS}, got {self.form!r}")

    def to_dict(self) -> dict:
        return {"out": self.out, "dynamic": self.dynamic,
                "context": self.context if isinstance(self.context, str) else list(self.context),
                "hidden": self.hidden, "sigma": self.sigma, "generator": self.generator,
                "form": self.form, "heads": self.heads, "rank": self.rank, "w0": self.w0}

    @classmethod
    def from_dict(cls, d: Mapping) -> "LayerSpec":
        return cls(**dict(d))


def as_layer_spec(layer) -> LayerSpec:
    """A LayerSpec from a LayerSpec, an int (a static Linear of that width) or a to_dict() dict."""
    if isinstance(layer, LayerSpec):
        return layer
    if isinstance(layer, int) and not isinstance(layer, bool):
        return LayerSpec(layer)
    if isinstance(layer, Mapping):
        return LayerSpec.from_dict(layer)
    raise TypeError(f"a layer must be a LayerSpec or an int (static Linear), got {type(layer).__name__}")


def check_common(activation, norm, dropout) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


def check_schema(who: str, schema) -> None:
    if not isinstance(schema, Schema):
        raise TypeError(f"{who}: schema must be a Schema, got {type(schema).__name__}")


def no_sequences(who: str, schema: Schema) -> None:
    for f in schema:
        if isinstance(f, SequenceField):
            raise ValueError(f"{who}: field {f.name!r} is a sequence field; sequence fields are read by "
                             f"SeqDPN / DINHeter (dpn_infer.nn.seqdpn)")


def make_norm(norm, width) -> nn.Module:
    if norm == "layernorm":
        return nn.LayerNorm(width)
    if norm == "batchnorm":
        return nn.BatchNorm1d(width)
    return nn.Identity()


def build_feature_layers(owner: nn.Module, specs: Sequence[LayerSpec], width: int, x0_width: int,
                         norm: Optional[str], activation: str,
                         schema: Optional[Schema] = None) -> int:
    """Set ``owner.layers`` / ``owner.norms`` / ``owner.acts`` for ``specs`` over an input of
    ``width``; returns the output width. A dynamic layer's context "x0" is ``x0_width`` wide,
    "prev" the layer's input; a field-list context needs ``schema`` (its fields' widths)."""
    owner.layers, owner.norms, owner.acts = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
    for i, s in enumerate(specs):
        if s.dynamic:
            if s.context == "x0":
                n = x0_width
            elif s.context == "prev":
                n = width
            else:
                for name in s.context:
                    if schema is None or name not in schema:
                        raise ValueError(f"layer {i}: context field {name!r} is not in the schema "
                                         f"(fields: {schema.names if schema is not None else []})")
                n = schema.width(s.context)
            layer = DyLinear(width, s.out, n, hidden=s.hidden, sigma=s.sigma, generator=s.generator,
                             form=s.form, heads=s.heads, rank=s.rank, w0=s.w0)
        else:
            layer = nn.Linear(width, s.out)
        owner.layers.append(layer)
        owner.norms.append(make_norm(norm, s.out))
        owner.acts.append(ACTIVATIONS[activation]())
        width = s.out
    return width


def run_feature_layers(owner: nn.Module, x: torch.Tensor, x0: torch.Tensor,
                       values: Optional[Mapping] = None) -> torch.Tensor:
    """``owner``'s stack (built by :func:`build_feature_layers`) on ``x``; ``x0`` is what a context
    "x0" reads, ``values`` (field name -> value) what a field-list context concatenates."""
    for spec, layer, norm, act in zip(owner.specs, owner.layers, owner.norms, owner.acts):
        if spec.dynamic:
            if spec.context == "x0":
                z = x0
            elif spec.context == "prev":
                z = x
            else:
                z = torch.cat([values[n] for n in spec.context], dim=1)
            y = layer(x, z)
        else:
            y = layer(x)
        x = owner.dropout(act(norm(y)))
    return x


def x0_of(values: Mapping, schema: Schema) -> torch.Tensor:
    """Every field's value concatenated in schema order."""
    return torch.cat([values[n] for n in schema.names], dim=1)


class CTRModel(nn.Module):
    """What every model shares: ``forward(batch)`` -> logits [B], ``predict_proba``, and
    ``from_config(config())`` rebuilding the architecture (the constructors take LayerSpec dicts)."""

    def predict_proba(self, batch: Mapping) -> torch.Tensor:
        return torch.sigmoid(self(batch))

    @classmethod
    def from_config(cls, config: Mapping):
        c = dict(config)
        return cls(Schema.from_json(c.pop("schema")), **c)
