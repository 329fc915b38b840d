"""Whole CTR models in paper form: FeatureDPN, DNN (static layers only) and CrossNet (DCN).

Every model reads a batch (mapping field name -> array) and returns logits ``[B]`` (float32).
``config()`` returns a JSON-able dict and ``Cls.from_config(config)`` rebuilds the architecture;
``dpn_infer.nn.checkpoint`` saves and loads config + weights in one torch file.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import torch
from torch import nn

from .crossnet import CrossLayer
from .inputs import InputLayer
from .layers import (CTRModel, LayerSpec, as_layer_spec, build_feature_layers, check_common,
                     check_schema, no_sequences, run_feature_layers, x0_of)
from .schema import Schema


class FeatureDPN(CTRModel):
    """Stacked feature-based DPOs: per layer (Linear | DyLinear) -> norm -> activation -> dropout,
    then ``classifier = nn.Linear(last, 1)``. ``forward(batch)`` -> logits ``[B]``.

    Submodules (their paths name the tensors in model.bin): ``inputs`` (InputLayer), ``layers``
    (Linear / DyLinear), ``norms`` (LayerNorm / BatchNorm1d / Identity), ``acts`` (ReLU / Tanh /
    Sigmoid / Identity), ``dropout``, ``classifier``.

    ``context_embeddings=True`` gives the dynamic layers' contexts embeddings of their own (the
    paper's z, Table 2b: z0 is every field's context embedding concatenated, zt the tag field's):
    a second InputLayer ``context_inputs`` whose tables only contexts read, so a context "x0" reads
    z0 and a field-list context the named fields' context embeddings. Dense fields are the same
    values in both.
    """

    def __init__(self, schema: Schema, layers: Sequence[Union[LayerSpec, int]] = (),
                 activation: str = "relu", norm: Optional[str] = None, dropout: float = 0.0,
                 context_embeddings: bool = False):
        super().__init__()
        check_schema(type(self).__name__, schema)
        check_common(activation, norm, dropout)
        no_sequences(type(self).__name__, schema)
        if not isinstance(context_embeddings, bool):
            raise ValueError(f"{type(self).__name__}: context_embeddings must be True or False, "
                             f"got {context_embeddings!r}")
        self.schema = schema
        self.specs = [as_layer_spec(layer) for layer in layers]
        self.activation, self.norm, self.dropout_p = activation, norm, float(dropout)
        self.inputs = InputLayer(schema)
        self.context_inputs = InputLayer(schema) if context_embeddings else None
        x0_width = schema.width()
        width = build_feature_layers(self, self.specs, x0_width, x0_width, norm, activation, schema)
        self.dropout = nn.Dropout(self.dropout_p)
        self.classifier = nn.Linear(width, 1)

    def config(self) -> dict:
        c = {"schema": self.schema.to_json(), "layers": [s.to_dict() for s in self.specs],
             "activation": self.activation, "norm": self.norm, "dropout": self.dropout_p}
        if self.context_inputs is not None:     # only where set: older configs stay as they were
            c["context_embeddings"] = True
        return c

    def x0(self, values) -> torch.Tensor:
        return x0_of(values, self.schema)

    def forward(self, batch: Mapping) -> torch.Tensor:
        values = self.inputs(batch)
        x0 = self.x0(values)
        zvalues = values if self.context_inputs is None else self.context_inputs(batch)
        z0 = x0 if self.context_inputs is None else self.x0(zvalues)
        return self.classifier(run_feature_layers(self, x0, z0, zvalues)).squeeze(-1)


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


class CrossNet(CTRModel):
    """DCN: a cross tower (``cross``, CrossLayer x num_cross) from x0 and, when ``hidden`` is not
    empty, a deep tower (``layers`` / ``norms`` / ``acts``, static) from x0; ``classifier`` reads
    concat[cross_out, deep_out] (cross_out alone without a deep tower)."""

    def __init__(self, schema: Schema, num_cross: int = 3, hidden: Sequence[int] = (),
                 activation: str = "relu", norm: Optional[str] = None, dropout: float = 0.0):
        super().__init__()
        check_schema("CrossNet", schema)
        if isinstance(num_cross, bool) or not isinstance(num_cross, int) or num_cross < 0:
            raise ValueError(f"CrossNet: num_cross must be an integer >= 0, got {num_cross!r}")
        check_common(activation, norm, dropout)
        no_sequences("CrossNet", schema)
        hidden = list(hidden)
        for h in hidden:
            if isinstance(h, bool) or not isinstance(h, int) or h < 1:
                raise ValueError(f"CrossNet: hidden sizes must be integers >= 1, got {h!r}")
        self.schema, self.num_cross, self.hidden = schema, num_cross, hidden
        self.specs = [LayerSpec(h) for h in hidden]        # the deep tower: static layers
        self.activation, self.norm, self.dropout_p = activation, norm, float(dropout)
        self.inputs = InputLayer(schema)
        d = schema.width()
        self.cross = nn.ModuleList(CrossLayer(d) for _ in range(num_cross))
        width = build_feature_layers(self, self.specs, d, d, norm, activation)
        self.dropout = nn.Dropout(self.dropout_p)
        self.classifier = nn.Linear(d + (width if hidden else 0), 1)

    def config(self) -> dict:
        return {"schema": self.schema.to_json(), "num_cross": self.num_cross,
                "hidden": list(self.hidden), "activation": self.activation, "norm": self.norm,
                "dropout": self.dropout_p}

    def forward(self, batch: Mapping) -> torch.Tensor:
        x0 = x0_of(self.inputs(batch), self.schema)
        xl = x0
        for layer in self.cross:
            xl = layer(x0, xl)
        if self.hidden:
            xl = torch.cat([xl, run_feature_layers(self, x0, x0)], dim=1)
        return self.classifier(xl).squeeze(-1)
