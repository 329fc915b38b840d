"""Whole CTR models in paper form: FeatureDPN, DNN (static layers only) and CrossNet (DCN).

Every model reads a batch (mapping field name -> array) and returns logits ``[B]`` (float32).
``config()`` returns a JSON-able dict and ``Cls.from_config(config)`` rebuilds the architecture;
``save_checkpoint`` / ``load_checkpoint`` carry config + weights in one torch file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .crossnet import CrossLayer
from .dylinear import FORMS, GENERATORS, SIGMAS, DyLinear
from .inputs import InputLayer
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
        if isinstance(self.out, bool) or not isinstance(self.out, int) or self.out < 1:
            raise ValueError(f"LayerSpec: out must be an integer >= 1, got {self.out!r}")
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


def _as_spec(layer) -> LayerSpec:
    if isinstance(layer, LayerSpec):
        return layer
    if isinstance(layer, int) and not isinstance(layer, bool):
        return LayerSpec(layer)
    if isinstance(layer, Mapping):
        return LayerSpec.from_dict(layer)
    raise TypeError(f"a layer must be a LayerSpec or an int (static Linear), got {type(layer).__name__}")


def _check_common(activation, norm, dropout):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")


def _no_sequences(who, schema):
    for f in schema:
        if isinstance(f, SequenceField):
            raise ValueError(f"{who}: field {f.name!r} is a sequence field; sequence fields are read by "
                             f"SeqDPN / DINHeter (dpn_infer.nn.seqdpn)")


def _make_norm(norm, width) -> nn.Module:
    if norm == "layernorm":
        return nn.LayerNorm(width)
    if norm == "batchnorm":
        return nn.BatchNorm1d(width)
    return nn.Identity()


class FeatureDPN(nn.Module):
    """Stacked feature-based DPOs: per layer (Linear | DyLinear) -> norm -> activation -> dropout,
    then ``classifier = nn.Linear(last, 1)``. ``forward(batch)`` -> logits ``[B]``.

    Submodules (their paths name the tensors in model.bin): ``inputs`` (InputLayer), ``layers``
    (Linear / DyLinear), ``norms`` (LayerNorm / BatchNorm1d / Identity), ``acts`` (ReLU / Tanh /
    Sigmoid / Identity), ``dropout``, ``classifier``.
    """

    def __init__(self, schema: Schema, layers: Sequence[Union[LayerSpec, int]] = (),
                 activation: str = "relu", norm: Optional[str] = None, dropout: float = 0.0):
        super().__init__()
        if not isinstance(schema, Schema):
            raise TypeError(f"{type(self).__name__}: schema must be a Schema, got {type(schema).__name__}")
        _check_common(activation, norm, dropout)
        _no_sequences(type(self).__name__, schema)
        self.schema = schema
        self.specs: List[LayerSpec] = [_as_spec(l) for l in layers]
        self.activation, self.norm, self.dropout_p = activation, norm, float(dropout)
        self.inputs = InputLayer(schema)
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.acts = nn.ModuleList()
        x0_width = schema.width()
        width = x0_width
        for i, s in enumerate(self.specs):
            if s.dynamic:
                if s.context == "x0":
                    n = x0_width
                elif s.context == "prev":
                    n = width
                else:
                    for name in s.context:
                        if name not in schema:
                            raise ValueError(f"layer {i}: context field {name!r} is not in the schema "
                                             f"(fields: {schema.names})")
                    n = schema.width(s.context)
                layer = DyLinear(width, s.out, n, hidden=s.hidden, sigma=s.sigma,
                                 generator=s.generator, form=s.form, heads=s.heads, rank=s.rank,
                                 w0=s.w0)
            else:
                layer = nn.Linear(width, s.out)
            self.layers.append(layer)
            self.norms.append(_make_norm(norm, s.out))
            self.acts.append(ACTIVATIONS[activation]())
            width = s.out
        self.dropout = nn.Dropout(self.dropout_p)
        self.classifier = nn.Linear(width, 1)

    # -- configuration -------------------------------------------------------------------------
    def config(self) -> dict:
        return {"schema": self.schema.to_json(), "layers": [s.to_dict() for s in self.specs],
                "activation": self.activation, "norm": self.norm, "dropout": self.dropout_p}

    @classmethod
    def from_config(cls, config: Mapping) -> "FeatureDPN":
        c = dict(config)
        return cls(Schema.from_json(c.pop("schema")), [_as_spec(l) for l in c.pop("layers")], **c)

    # -- forward --------------------------------------------------------------------------------
    def x0(self, values) -> torch.Tensor:
        return torch.cat([values[n] for n in self.schema.names], dim=1)

    def forward(self, batch: Mapping) -> torch.Tensor:
        values = self.inputs(batch)
        x0 = self.x0(values)
        x = x0
        for spec, layer, norm, act in zip(self.specs, self.layers, self.norms, self.acts):
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
            x = self.dropout(act(norm(y)))
        return self.classifier(x).squeeze(-1)

    def predict_proba(self, batch: Mapping) -> torch.Tensor:
        return torch.sigmoid(self(batch))


class DNN(FeatureDPN):
    """A plain MLP over x0: FeatureDPN with static layers only."""

    def __init__(self, schema: Schema, hidden: Sequence[int] = (), activation: str = "relu",
                 norm: Optional[str] = None, dropout: float = 0.0):
        hidden = list(hidden)
        for h in hidden:
            if isinstance(h, bool) or not isinstance(h, int):
                raise TypeError(f"DNN: hidden sizes must be ints, got {h!r}")
        super().__init__(schema, hidden, activation=activation, norm=norm, dropout=dropout)
        self.hidden = hidden

    def config(self) -> dict:
        return {"schema": self.schema.to_json(), "hidden": list(self.hidden),
                "activation": self.activation, "norm": self.norm, "dropout": self.dropout_p}

    @classmethod
    def from_config(cls, config: Mapping) -> "DNN":
        c = dict(config)
        return cls(Schema.from_json(c.pop("schema")), **c)


class CrossNet(nn.Module):
    """DCN: a cross tower (``cross``, CrossLayer x num_cross) from x0 and, when ``hidden`` is not
    empty, a deep tower (``layers`` / ``norms`` / ``acts``, static) from x0; ``classifier`` reads
    concat[cross_out, deep_out] (cross_out alone without a deep tower)."""

    def __init__(self, schema: Schema, num_cross: int = 3, hidden: Sequence[int] = (),
                 activation: str = "relu", norm: Optional[str] = None, dropout: float = 0.0):
        super().__init__()
        if not isinstance(schema, Schema):
            raise TypeError(f"CrossNet: schema must be a Schema, got {type(schema).__name__}")
        if isinstance(num_cross, bool) or not isinstance(num_cross, int) or num_cross < 0:
            raise ValueError(f"CrossNet: num_cross must be an integer >= 0, got {num_cross!r}")
        _check_common(activation, norm, dropout)
        _no_sequences("CrossNet", schema)
        hidden = list(hidden)
        for h in hidden:
            if isinstance(h, bool) or not isinstance(h, int) or h < 1:
                raise ValueError(f"CrossNet: hidden sizes must be integers >= 1, got {h!r}")
        self.schema, self.num_cross, self.hidden = schema, num_cross, hidden
        self.activation, self.norm, self.dropout_p = activation, norm, float(dropout)
        self.inputs = InputLayer(schema)
        d = schema.width()
        self.cross = nn.ModuleList(CrossLayer(d) for _ in range(num_cross))
        self.layers = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.acts = nn.ModuleList()
        width = d
        for h in hidden:
            self.layers.append(nn.Linear(width, h))
            self.norms.append(_make_norm(norm, h))
            self.acts.append(ACTIVATIONS[activation]())
            width = h
        self.dropout = nn.Dropout(self.dropout_p)
        self.classifier = nn.Linear(d + (width if hidden else 0), 1)

    def config(self) -> dict:
        return {"schema": self.schema.to_json(), "num_cross": self.num_cross,
                "hidden": list(self.hidden), "activation": self.activation, "norm": self.norm,
                "dropout": self.dropout_p}

    @classmethod
    def from_config(cls, config: Mapping) -> "CrossNet":
        c = dict(config)
        return cls(Schema.from_json(c.pop("schema")), **c)

    def forward(self, batch: Mapping) -> torch.Tensor:
        values = self.inputs(batch)
        x0 = torch.cat([values[n] for n in self.schema.names], dim=1)
        xl = x0
        for layer in self.cross:
            xl = layer(x0, xl)
        if self.hidden:
            x = x0
            for layer, norm, act in zip(self.layers, self.norms, self.acts):
                x = self.dropout(act(norm(layer(x))))
            xl = torch.cat([xl, x], dim=1)
        return self.classifier(xl).squeeze(-1)

    def predict_proba(self, batch: Mapping) -> torch.Tensor:
        return torch.sigmoid(self(batch))


MODEL_CLASSES = {"FeatureDPN": FeatureDPN, "DNN": DNN, "CrossNet": CrossNet}


def save_checkpoint(model: nn.Module, path) -> None:
    """torch.save({"class", "config", "state_dict"}) — the input of ``dpn-convert``."""
    name = type(model).__name__
    if name not in MODEL_CLASSES or not isinstance(model, MODEL_CLASSES[name]):
        raise TypeError(f"save_checkpoint: {name} is not one of {sorted(MODEL_CLASSES)}")
    torch.save({"class": name, "config": model.config(),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)


def load_checkpoint(path, map_location="cpu") -> nn.Module:
    """Rebuild a model written by :func:`save_checkpoint`; returned in eval mode."""
    ck = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ck, Mapping) or not {"class", "config", "state_dict"} <= set(ck):
        raise ValueError(f"{path}: not a dpn_infer checkpoint (expected keys class, config, state_dict)")
    cls = MODEL_CLASSES.get(ck["class"])
    if cls is None:
        raise ValueError(f"{path}: unknown model class {ck['class']!r} "
                         f"(expected one of {sorted(MODEL_CLASSES)})")
    model = cls.from_config(ck["config"])
    model.load_state_dict(ck["state_dict"])
    return model.eval()
