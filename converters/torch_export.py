"""PyTorch module tree (dpn_infer.nn) -> model.bin metadata + tensors, as docs/format.md specifies.

``export(module) -> (metadata, tensors)`` and ``save(module, path)``. Supports every model class of
dpn_infer.nn (FeatureDPN, DNN, CrossNet, FieldDPN, SeqDPN, DINHeter, DIEN, DIENHeter, DyJoint): one exporter per model family,
registered with ``@_exporter``. The graph is emitted in eval semantics: dropout is dropped,
BatchNorm1d (running statistics) is folded into the Linear / DyLinear before it, and an activation
is fused into the node's ``act`` attribute. Anything the opset cannot express exactly is refused with
a TypeError / ValueError naming the module path and type — never exported approximately.
The user's module is only read: its training/eval mode and its parameters are left untouched.
"""
from __future__ import annotations

import os
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from dpn_infer import __version__
from dpn_infer.nn import (AUGRU, DIEN, DNN, GRU, CrossLayer, CrossNet, DenseField, DIENHeter,
                          DINHeter, DyLinear, FeatureDPN, HeteroDPO, HomoDPO, InputLayer, Schema,
                          SelfAttention, SeqDPN, SequenceField, TargetAttention)
from dpn_infer.nn.dyjoint import DyJoint, InterestDecoder, SessionEncoder
from dpn_infer.nn.field import FieldDPN, FieldDyLinear
from dpn_infer.nn.generators import Conv1DEncoder, SeparableConv
from dpn_infer.nn.kfatt import KFAtt
from dpn_infer.nn.schema import TimestampField

from . import precision as _precision
from .format import required_opset, write

PRODUCER = f"dpn_infer {__version__}"
_ACTS = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Identity: "identity"}


def _where(path: str) -> str:
    return path if path else "<root>"


def _check_type(module, types, path: str):
    if type(module) not in types:
        names = " or ".join(t.__name__ for t in types)
        raise TypeError(f"cannot export module '{_where(path)}' of type {type(module).__name__}: "
                        f"expected {names} here")
    if module._forward_hooks or module._forward_pre_hooks:
        raise ValueError(f"cannot export module '{_where(path)}' ({type(module).__name__}): it has "
                         f"forward hooks, which model.bin cannot carry")


def _np(t: torch.Tensor) -> np.ndarray:
    return np.array(t.detach().to("cpu", torch.float64).numpy(), dtype=np.float64)


class _Graph:
    def __init__(self):
        self.nodes = []
        self.tensors: Dict[str, np.ndarray] = {}

    def tensor(self, name: str, value) -> str:
        a = _np(value) if isinstance(value, torch.Tensor) else np.asarray(value, dtype=np.float64)
        a = np.ascontiguousarray(a, dtype=np.float32)
        if not np.isfinite(a).all():
            raise ValueError(f"cannot export tensor '{name}': it holds NaN or infinite values")
        if name in self.tensors:
            raise ValueError(f"duplicate tensor name '{name}'")
        self.tensors[name] = a
        return name

    def node(self, op, name, inputs, output, attrs=None, params=None) -> str:
        n = {"op": op, "name": name, "inputs": list(inputs), "output": output,
             "attrs": dict(attrs or {}), "params": dict(params or {})}
        self.nodes.append(n)
        return output


def _pre(path: str) -> str:
    return path + "." if path else ""


# -- pieces -------------------------------------------------------------------------------------

def _emit_inputs(g: _Graph, inputs, schema: Schema, path: str, prefix: str = "",
                 dense: Optional[Dict[str, str]] = None, sessions=None) -> Dict[str, str]:
    """embedding / dense_input nodes in schema order; returns field name -> value name. ``prefix``
    starts the value names (a second InputLayer's); ``dense``: field -> value of dense fields
    already emitted (a dense field has no table, so a second InputLayer reads the same value).
    ``sessions``: sequence field name -> timestamps field name, for the fields laid out by sessions
    (``session_embedding``; the other sequence fields get ``seq_embedding``). A timestamps field
    has no node of its own (the session operators read it)."""
    sessions = sessions or {}
    _check_type(inputs, (InputLayer,), path)
    if inputs.schema.to_json() != schema.to_json():
        raise ValueError(f"cannot export '{_where(path)}': its schema differs from the model's")
    values = {}
    tables = {}     # embeddings key -> tensor name: a table shared by several fields is stored once
    for f in schema.fields:
        if isinstance(f, DenseField):
            values[f.name] = dense[f.name] if dense else g.node(
                "dense_input", f"{_pre(path)}{f.name}", [], f"{prefix}dense/{f.name}", {"field": f.name})
            continue
        if isinstance(f, TimestampField):
            continue
        key = inputs.keys[f.name]
        epath = f"{_pre(path)}embeddings.{key}"
        emb = inputs.embeddings[key]
        _check_type(emb, (nn.Embedding,), epath)
        if emb.max_norm is not None:
            raise ValueError(f"cannot export '{epath}' (Embedding): max_norm renormalizes rows at "
                             f"lookup time, which model.bin cannot express")
        if tuple(emb.weight.shape) != (f.rows, f.dim):
            raise ValueError(f"cannot export '{epath}' (Embedding): table is {list(emb.weight.shape)}, "
                             f"field {f.name!r} needs [{f.rows}, {f.dim}]")
        if key not in tables:
            tables[key] = g.tensor(f"{epath}.weight", emb.weight)
        table = tables[key]
        if f.name in sessions:
            values[f.name] = g.node("session_embedding", f"{_pre(path)}{f.name}", [], f"sess/{f.name}",
                                    {"field": f.name, "timestamps": sessions[f.name]}, {"table": table})
            continue
        if isinstance(f, SequenceField):
            values[f.name] = g.node("seq_embedding", f"{_pre(path)}{f.name}", [], f"{prefix}seq/{f.name}",
                                    {"field": f.name}, {"table": table})
            continue
        values[f.name] = g.node("embedding", epath, [], f"{prefix}emb/{f.name}", {"field": f.name},
                                {"table": table})
    return values


def _act_name(act, path: str) -> str:
    _check_type(act, tuple(_ACTS), path)
    return _ACTS[type(act)]


def _bn_affine(bn, width: int, path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm1d as y * s + t (float64)."""
    if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
        raise ValueError(f"cannot export '{path}' (BatchNorm1d): it has no running statistics "
                         f"(track_running_stats=False uses batch statistics even in eval mode)")
    if bn.num_features != width:
        raise ValueError(f"cannot export '{path}' (BatchNorm1d): {bn.num_features} features after a "
                         f"layer of width {width}")
    s = 1.0 / np.sqrt(_np(bn.running_var) + float(bn.eps))
    t = -_np(bn.running_mean) * s
    if bn.affine:
        gamma, beta = _np(bn.weight), _np(bn.bias)
        s, t = s * gamma, t * gamma + beta
    return s, t


def _emit_linear(g, lin, path, x, out, act, fold=None, width_in=None) -> str:
    _check_type(lin, (nn.Linear,), path)
    if width_in is not None and lin.in_features != width_in:
        raise ValueError(f"cannot export '{path}' (Linear): in_features {lin.in_features} but its "
                         f"input has width {width_in}")
    W = _np(lin.weight)
    b = _np(lin.bias) if lin.bias is not None else None
    if fold is not None:
        s, t = fold
        W = W * s[:, None]
        b = (b if b is not None else 0.0) * s + t
    params = {"weight": g.tensor(f"{path}.weight", W)}
    if b is not None:
        params["bias"] = g.tensor(f"{path}.bias", b)
    return g.node("linear", path, [x], out,
                  {"in": lin.in_features, "out": lin.out_features, "act": act}, params)


def _emit_dylinear(g, dl, path, x, z, out, act, fold=None, width_in=None, width_z=None) -> str:
    _check_type(dl, (DyLinear,), path)
    m, c, n, l = dl.in_features, dl.out_features, dl.context_features, dl.hidden
    if width_in is not None and m != width_in:
        raise ValueError(f"cannot export '{path}' (DyLinear): in_features {m} but its input has "
                         f"width {width_in}")
    if width_z is not None and n != width_z:
        raise ValueError(f"cannot export '{path}' (DyLinear): context_features {n} but its context "
                         f"has width {width_z}")
    wsize = dl.weight_size
    attrs = {"in": m, "out": c, "context": n, "generator": dl.generator, "hidden": l,
             "sigma": dl.sigma if dl.generator == "mlp" else "identity", "form": dl.form}
    params = {}
    if dl.generator == "mlp":
        _check_type(dl.g1, (nn.Linear,), f"{path}.g1")
        if (dl.g1.in_features, dl.g1.out_features) != (n, l):
            raise ValueError(f"cannot export '{path}.g1': shape does not match the DyLinear")
        params["g1_weight"] = g.tensor(f"{path}.g1.weight", dl.g1.weight)
        params["g1_bias"] = g.tensor(f"{path}.g1.bias", dl.g1.bias if dl.g1.bias is not None
                                     else np.zeros(l))
    _check_type(dl.g2, (nn.Linear,), f"{path}.g2")
    if (dl.g2.in_features, dl.g2.out_features) != (l, wsize + c):
        raise ValueError(f"cannot export '{path}.g2': shape does not match the DyLinear")
    g2w = _np(dl.g2.weight)
    g2b = _np(dl.g2.bias) if dl.g2.bias is not None else np.zeros(wsize + c)
    Pm = Qm = W0 = None
    if dl.form == "decomp":
        Pm, Qm = _np(dl.P), _np(dl.Q)
        W0 = _np(dl.W0) if dl.w0 else None
    if fold is not None:
        s, t = fold
        if dl.form == "full":
            H = dl.heads
            mh, ch = m // H, c // H
            idx = np.arange(wsize)
            col = (idx // (mh * ch)) * ch + idx % ch          # output column of each W entry
            g2w[:wsize] *= s[col][:, None]
            g2b[:wsize] *= s[col]
        else:
            Qm = Qm * s[None, :]
            if W0 is not None:
                W0 = W0 * s[None, :]
        g2w[wsize:] *= s[:, None]
        g2b[wsize:] = g2b[wsize:] * s + t
    params["g2_weight"] = g.tensor(f"{path}.g2.weight", g2w)
    params["g2_bias"] = g.tensor(f"{path}.g2.bias", g2b)
    if dl.form == "full":
        attrs["heads"] = dl.heads
    else:
        attrs["rank"] = dl.rank
        attrs["w0"] = dl.w0
        params["P"] = g.tensor(f"{path}.P", Pm)
        params["Q"] = g.tensor(f"{path}.Q", Qm)
        if W0 is not None:
            params["W0"] = g.tensor(f"{path}.W0", W0)
    attrs["act"] = act
    return g.node("dylinear", path, [x, z], out, attrs, params)


def _emit_block(g, layer, lpath, norm, npath, act_mod, apath, x, z, out, width_in, width_z=None):
    """layer -> norm -> activation (dropout is ignored: eval semantics). Returns (value, width)."""
    act = _act_name(act_mod, apath)
    width = layer.out_features if isinstance(layer, (nn.Linear, DyLinear)) else None
    fold = None
    ln = None
    _check_type(norm, (nn.Identity, nn.BatchNorm1d, nn.LayerNorm), npath)
    if type(norm) is nn.BatchNorm1d:
        fold = _bn_affine(norm, width, npath)
    elif type(norm) is nn.LayerNorm:
        if tuple(norm.normalized_shape) != (width,):
            raise ValueError(f"cannot export '{npath}' (LayerNorm): normalized_shape "
                             f"{tuple(norm.normalized_shape)} after a layer of width {width}")
        ln = norm
    lin_out = f"{out}.pre" if ln is not None else out
    lin_act = "identity" if ln is not None else act
    if z is None:
        _emit_linear(g, layer, lpath, x, lin_out, lin_act, fold, width_in)
    else:
        _emit_dylinear(g, layer, lpath, x, z, lin_out, lin_act, fold, width_in, width_z)
    if ln is not None:
        w = ln.weight if ln.weight is not None else np.ones(width)
        b = ln.bias if ln.bias is not None else np.zeros(width)
        g.node("layernorm", npath, [lin_out], out, {"eps": float(ln.eps), "act": act},
               {"weight": g.tensor(f"{npath}.weight", w), "bias": g.tensor(f"{npath}.bias", b)})
    return out, width


def _check_dropout(module, path):
    _check_type(module, (nn.Dropout, nn.Identity), path)


def _check_lists(module, names, count):
    for name in names:
        lst = getattr(module, name)
        _check_type(lst, (nn.ModuleList,), name)
        if len(lst) != count:
            raise ValueError(f"cannot export '{name}': {len(lst)} modules, the model's config has {count}")


def _check_forward(module, base):
    if type(module).forward is not base.forward:
        raise TypeError(f"cannot export {type(module).__name__}: it overrides forward() of "
                        f"{base.__name__}, so its graph is unknown to the exporter")


# -- models -------------------------------------------------------------------------------------

def _context(g, context, values, schema, contexts, x0, prev):
    """(value, width) a dynamic feature layer reads as context: x0, the previous layer's output, or the
    concatenation of named fields (emitted once per distinct list, cached in ``contexts``)."""
    if context == "x0":
        return x0
    if context == "prev":
        return prev
    key = tuple(context)
    if key not in contexts:
        contexts[key] = values[key[0]] if len(key) == 1 else g.node(
            "concat", f"context[{','.join(key)}]", [values[k] for k in key], f"ctx{len(contexts)}")
    return contexts[key], schema.width(list(key))


def _emit_feature_layers(g, module, x, width, x0, values=None, schema=None, prefix=""):
    """The model's feature-layer stack (``specs`` / ``layers`` / ``norms`` / ``acts``, built by
    dpn_infer.nn.layers) from ``x`` of ``width``; ``x0`` is the (value, width) a context "x0" reads.
    ``prefix``: the stack's module path ("first." for a submodule). Returns (value, width)."""
    _check_lists(module, ("layers", "norms", "acts"), len(module.specs))
    contexts = {}
    for i, spec in enumerate(module.specs):
        layer = module.layers[i]
        z = zw = None
        if spec.dynamic:
            z, zw = _context(g, spec.context, values, schema, contexts, x0, (x, width))
        elif type(layer) is DyLinear:
            raise TypeError(f"cannot export module '{prefix}layers.{i}' of type DyLinear: its LayerSpec "
                            f"is static (expected Linear here)")
        x, width = _emit_block(g, layer, f"{prefix}layers.{i}", module.norms[i], f"{prefix}norms.{i}",
                               module.acts[i], f"{prefix}acts.{i}", x, z, f"{prefix}h{i}", width, zw)
    return x, width


_EXPORTERS = {}   # model class -> exporter(module, graph) -> output value; model_type = class name


def _exporter(*classes):
    def register(fn):
        for cls in classes:
            _EXPORTERS[cls] = fn
        return fn
    return register


@_exporter(FeatureDPN, DNN)
def _export_feature_dpn(module: FeatureDPN, g: _Graph) -> str:
    schema = module.schema
    _check_dropout(module.dropout, "dropout")
    values = _emit_inputs(g, module.inputs, schema, "inputs")
    x0 = g.node("concat", "x0", [values[name] for name in schema.names], "x0")
    x0_width = schema.width()
    zvalues, z0 = values, x0
    if getattr(module, "context_inputs", None) is not None:     # the contexts' own embeddings
        zvalues = _emit_inputs(g, module.context_inputs, schema, "context_inputs", "ctx/", values)
        z0 = g.node("concat", "z0", [zvalues[name] for name in schema.names], "z0")
    x, width = _emit_feature_layers(g, module, x0, x0_width, (z0, x0_width), zvalues, schema)
    return _emit_linear_out(g, module.classifier, x, width)


def _emit_linear_out(g, classifier, x, width) -> str:
    _check_type(classifier, (nn.Linear,), "classifier")
    if classifier.out_features != 1:
        raise ValueError(f"cannot export 'classifier' (Linear): out_features is "
                         f"{classifier.out_features}, expected 1")
    return _emit_linear(g, classifier, "classifier", x, "logit", "identity", None, width)


@_exporter(CrossNet)
def _export_crossnet(module: CrossNet, g: _Graph) -> str:
    schema = module.schema
    _check_lists(module, ("cross",), module.num_cross)
    _check_lists(module, ("layers", "norms", "acts"), len(module.hidden))
    _check_dropout(module.dropout, "dropout")
    values = _emit_inputs(g, module.inputs, schema, "inputs")
    x0 = g.node("concat", "x0", [values[name] for name in schema.names], "x0")
    d = schema.width()
    xl = x0
    for i, layer in enumerate(module.cross):
        path = f"cross.{i}"
        _check_type(layer, (CrossLayer,), path)
        if layer.d != d or tuple(layer.weight.shape) != (d,) or tuple(layer.bias.shape) != (d,):
            raise ValueError(f"cannot export '{path}' (CrossLayer): width {layer.d}, x0 has {d}")
        xl = g.node("cross", path, [x0, xl], f"c{i}", {},
                    {"weight": g.tensor(f"{path}.weight", layer.weight),
                     "bias": g.tensor(f"{path}.bias", layer.bias)})
    width = d
    if module.hidden:
        x, w = _emit_feature_layers(g, module, x0, d, (x0, d))
        xl = g.node("concat", "concat[cross,deep]", [xl, x], "cat")
        width = d + w
    return _emit_linear_out(g, module.classifier, xl, width)


def _emit_field_dylinear(g, fl, path, x, z, out, norm, npath, act, residual) -> str:
    """One field layer (FieldDyLinear -> per-field LayerNorm -> act -> + x) as one node."""
    _check_type(fl, (FieldDyLinear,), path)
    attrs = {"fields": fl.in_fields, "in": fl.in_features, "out": fl.out_features,
             "context_fields": fl.context_fields, "context": fl.context_features,
             "aggregation": fl.aggregation, "dynamic": fl.dynamic, "implicit": fl.implicit}
    params = {}
    G, l, P = fl.groups, fl.hidden, fl.generated_size
    t1, m, c, n, da = fl.in_fields, fl.in_features, fl.out_features, fl.context_features, \
        fl.attention_hidden
    want = {}
    if fl.dynamic:
        want.update(g2_weight=(G, P, l), g2_bias=(G, P))
        if fl.generator == "mlp":
            want.update(g1_weight=(G, l, fl.generator_input), g1_bias=(G, l))
        if fl.aggregation == "attention":
            want["att_query"] = (t1, da)
    if fl.implicit:
        want.update(field_weight=(t1, t1), feature_weight=(m, c))
        if not fl.dynamic:
            want["bias"] = (c,)
    for name, shape in want.items():
        got = tuple(getattr(fl, name).shape)
        if got != shape:
            raise ValueError(f"cannot export '{path}.{name}' (FieldDyLinear): shape {list(got)}, its "
                             f"config needs {list(shape)}")
    if fl.dynamic and fl.aggregation == "attention":
        _check_type(fl.att, (nn.Linear,), f"{path}.att")
        if (fl.att.in_features, fl.att.out_features) != (n, da):
            raise ValueError(f"cannot export '{path}.att': Linear({fl.att.in_features}, "
                             f"{fl.att.out_features}), its config needs Linear({n}, {da})")
    if fl.dynamic:
        attrs.update({"generator": fl.generator, "hidden": l,
                      "sigma": fl.sigma if fl.generator == "mlp" else "identity",
                      "heads": fl.heads, "shared": fl.shared, "exclude_self": fl.exclude_self})
        if fl.generator == "mlp":
            params["g1_weight"] = g.tensor(f"{path}.g1_weight", fl.g1_weight)
            params["g1_bias"] = g.tensor(f"{path}.g1_bias", fl.g1_bias)
        params["g2_weight"] = g.tensor(f"{path}.g2_weight", fl.g2_weight)
        params["g2_bias"] = g.tensor(f"{path}.g2_bias", fl.g2_bias)
        if fl.aggregation == "attention":
            attrs["attention_hidden"] = fl.attention_hidden
            params["att_weight"] = g.tensor(f"{path}.att.weight", fl.att.weight)
            params["att_bias"] = g.tensor(f"{path}.att.bias", fl.att.bias if fl.att.bias is not None
                                          else np.zeros(fl.attention_hidden))
            params["att_query"] = g.tensor(f"{path}.att_query", fl.att_query)
    if fl.implicit:
        params["field_weight"] = g.tensor(f"{path}.field_weight", fl.field_weight)
        params["feature_weight"] = g.tensor(f"{path}.feature_weight", fl.feature_weight)
        if not fl.dynamic:
            params["bias"] = g.tensor(f"{path}.bias", fl.bias)
    _check_type(norm, (nn.Identity, nn.LayerNorm), npath)
    if type(norm) is nn.LayerNorm:
        c = fl.out_features
        if tuple(norm.normalized_shape) != (c,):
            raise ValueError(f"cannot export '{npath}' (LayerNorm): normalized_shape "
                             f"{tuple(norm.normalized_shape)}, the field layer has {c} features")
        attrs["norm"] = "layernorm"
        attrs["eps"] = float(norm.eps)
        params["ln_weight"] = g.tensor(f"{npath}.weight", norm.weight if norm.weight is not None
                                       else np.ones(c))
        params["ln_bias"] = g.tensor(f"{npath}.bias", norm.bias if norm.bias is not None
                                     else np.zeros(c))
    attrs["residual"] = bool(residual)
    attrs["act"] = act
    return g.node("field_dylinear", path, [x, z], out, attrs, params)


def _emit_field_layers(g, module, X0, rows, m):
    """``module``'s field layers (``field_specs`` / ``field_layers`` / ``field_norms`` /
    ``field_acts``, FieldDPN's) over the field rows X0; ``rows``: field name -> that field's row (a
    named context concatenates them); ``m``: the rows' width. Returns (value, features per field)."""
    x, contexts = X0, {}
    for i, spec in enumerate(module.field_specs):
        fl = module.field_layers[i]
        if isinstance(spec.context, list):
            key = tuple(spec.context)
            if key not in contexts:
                contexts[key] = rows[key[0]] if len(key) == 1 else g.node(
                    "concat", f"field_context[{','.join(key)}]", [rows[n] for n in key],
                    f"fctx{len(contexts)}")
            z = contexts[key]
        else:
            z = X0 if spec.context == "x0" else x
        residual = module.residual and fl.in_features == fl.out_features
        x = _emit_field_dylinear(g, fl, f"field_layers.{i}", x, z, f"f{i}", module.field_norms[i],
                                 f"field_norms.{i}", _act_name(module.field_acts[i], f"field_acts.{i}"),
                                 residual)
        m = fl.out_features
    return x, m


@_exporter(FieldDPN)
def _export_field_dpn(module: FieldDPN, g: _Graph) -> str:
    schema = module.schema
    _check_lists(module, ("field_layers", "field_norms", "field_acts"), len(module.field_specs))
    _check_dropout(module.dropout, "dropout")
    values = _emit_inputs(g, module.inputs, schema, "inputs")
    x0 = g.node("concat", "x0", [values[name] for name in schema.names], "x0")
    x0_width = schema.width()
    d = module.field_dim
    rows = []
    for i, fd in enumerate(schema.fields):
        key = f"f{i}"
        if key in module.projections:
            ppath = f"projections.{key}"
            proj = module.projections[key]
            if proj.bias is not None or (proj.in_features, proj.out_features) != (fd.dim, d):
                raise ValueError(f"cannot export '{ppath}': expected a bias-free Linear({fd.dim}, {d})")
            rows.append(_emit_linear(g, proj, ppath, values[fd.name], f"proj/{fd.name}", "identity"))
        elif fd.dim != d:
            raise ValueError(f"cannot export field {fd.name!r}: dim {fd.dim}, the field rows have {d}")
        else:
            rows.append(values[fd.name])
    X0 = x0 if len(module.projections) == 0 else g.node("concat", "field_rows", rows, "X0")
    x, m = _emit_field_layers(g, module, X0, dict(zip(schema.names, rows)), d)
    f, fw = x, module.num_fields * m
    x, width = (f, fw) if module.combine == "stacked" else (x0, x0_width)
    x, width = _emit_feature_layers(g, module, x, width, (x0, x0_width), values, schema)
    if module.combine == "parallel":
        x = g.node("concat", "concat[field,feature]", [f, x], "cat")
        width += fw
    return _emit_linear_out(g, module.classifier, x, width)


def _linear_params(g, lin, path, prefix, n_in, n_out):
    _check_type(lin, (nn.Linear,), path)
    if (lin.in_features, lin.out_features) != (n_in, n_out):
        raise ValueError(f"cannot export '{path}' (Linear): shape [{lin.out_features}, {lin.in_features}], "
                         f"expected [{n_out}, {n_in}]")
    b = lin.bias if lin.bias is not None else np.zeros(n_out)
    return {f"{prefix}weight": g.tensor(f"{path}.weight", lin.weight),
            f"{prefix}bias": g.tensor(f"{path}.bias", b)}


def _emit_sepconv_pool(g, sep, path, x, lens, T, d, out, S=1, per_session=False) -> str:
    """seq_sepconv_pool of sequence ``x`` (T positions of width d): mean_valid of the
    SeparableConv ``sep`` (module path ``path``) over it, the separable generators' context [B, d].
    S > 1: x holds S sessions of T, each convolved on its own; the output is each session's mean
    ([B, S·d], per_session) or the mean over every kept behaviour ([B, d])."""
    _check_type(sep, (SeparableConv,), path)
    if sep.dim != d:
        raise ValueError(f"cannot export '{path}' (SeparableConv): dim {sep.dim}, behaviours have {d}")
    params = {"dw_weight": g.tensor(f"{path}.depthwise", sep.depthwise),
              "dw_bias": g.tensor(f"{path}.bias", sep.bias)}
    params.update(_linear_params(g, sep.pointwise, f"{path}.pointwise", "pw_", d, d))
    attrs = {"max_len": T, "dim": d, "kernel": sep.kernel_size, **_sessions_attr(S)}
    if S > 1 and per_session:
        attrs["per_session"] = 1
    return g.node("seq_sepconv_pool", path, [x, lens], out, attrs, params)


def _emit_homo_dpo(g, hd, path, x, lens, T, d, out, z=None, S=1) -> str:
    """homo_dpo of sequence ``x`` [B, T·d] for the HomoDPO ``hd`` (any generator); returns ``out``.
    ``z`` (a [B, d] value) overrides the generator's context; by default it is mean_valid(x), or for
    generator "sep" the seq_sepconv_pool of ``hd.sep`` over x (emitted here, value ``out + ".z"``).
    S > 1: x holds S sessions of T positions, each convolved on its own (its generator reads that
    session's mean, or for "sep" its own separable convolution's: z of width S·d)."""
    _check_type(hd, (HomoDPO,), path)
    if hd.dim != d:
        raise ValueError(f"cannot export '{path}': dim {hd.dim}, behaviours have {d}")
    if z is None and hd.generator == "sep":
        z = _emit_sepconv_pool(g, hd.sep, f"{path}.sep", x, lens, T, d, f"{out}.z", S=S, per_session=True)
    params = _linear_params(g, hd.g1, f"{path}.g1", "g1_", d, hd.hidden)
    params.update(_linear_params(g, hd.g2, f"{path}.g2", "g2_", hd.hidden, hd.kernel_size * d))
    return g.node("homo_dpo", path, [x, lens] + ([z] if z is not None else []), out,
                  {"max_len": T, "dim": d, "kernel": hd.kernel_size, "hidden": hd.hidden,
                   "sigma": hd.sigma, "gate": hd.gate, **_sessions_attr(S)}, params)


def _emit_hetero_dpo(g, het, path, q, x, lens, T, dq, d, out, z=None) -> str:
    """HeteroDPO ``het`` of query ``q`` (width dq) over sequence ``x`` [B, T·d]: its context ``z``
    (by default seq_pool of x, or for generator "sep" seq_sepconv_pool of ``het.sep``, emitted here
    as value ``out + ".z"``), then a dylinear; returns ``out`` (width het.out_dim)."""
    _check_type(het, (HeteroDPO,), path)
    if (het.query_dim, het.behaviour_dim) != (dq, d):
        raise ValueError(f"cannot export '{path}' (HeteroDPO): query {het.query_dim} / behaviours "
                         f"{het.behaviour_dim}, its inputs have {dq} / {d}")
    if z is None:
        z = (_emit_sepconv_pool(g, het.sep, f"{path}.sep", x, lens, T, d, f"{out}.z")
             if het.generator == "sep" else
             g.node("seq_pool", f"{path}.mean_valid", [x, lens], f"{out}.z", {"max_len": T}))
    return _emit_dylinear(g, het.dpo, f"{path}.dpo", q, z, out, "identity", width_in=dq, width_z=d)


def _emit_conv1d(g, conv, path, x, lens, T, d, out, S=1) -> str:
    """conv1d of sequence ``x`` [B, T·d] (S > 1: S sessions of T, each on its own) for the
    Conv1DEncoder ``conv``; returns ``out``."""
    _check_type(conv, (Conv1DEncoder,), path)
    c = conv.conv
    _check_type(c, (nn.Conv1d,), f"{path}.conv")
    k = conv.kernel_size
    if (c.in_channels, c.out_channels, c.kernel_size, c.stride, c.dilation, c.groups) != \
            (d, d, (k,), (1,), (1,), 1) or c.padding != (k // 2,) or c.padding_mode != "zeros":
        raise ValueError(f"cannot export '{path}.conv' (Conv1d): conv1d is a stride-1, 'same'-padded "
                         f"Conv1d({d}, {d}, {k}), got {c}")
    b = c.bias if c.bias is not None else np.zeros(d)
    return g.node("conv1d", path, [x, lens], out, {"max_len": T, "dim": d, "kernel": k, **_sessions_attr(S)},
                  {"weight": g.tensor(f"{path}.conv.weight", c.weight),
                   "bias": g.tensor(f"{path}.conv.bias", b)})


def _sessions_attr(S):
    """The ``sessions`` attribute of a sequence op over S sessions (absent for 1: opset 2 files)."""
    return {"sessions": S} if S > 1 else {}


def _emit_self_attention(g, sa, path, x, lens, T, d, S=1) -> str:
    """``self_attention`` over x (T positions of width d; S sessions of T with S > 1)."""
    _check_type(sa, (SelfAttention,), path)
    if sa.dim != d:
        raise ValueError(f"cannot export '{path}': dim {sa.dim}, behaviours have {d}")
    params = {}
    for r in ("q", "k", "v", "o"):
        params.update(_linear_params(g, getattr(sa, r), f"{path}.{r}", f"{r}_", d, d))
    return g.node("self_attention", path, [x, lens], "sa",
                  {"max_len": T, "dim": d, "heads": sa.heads, **_sessions_attr(S)}, params)


@_exporter(SeqDPN, DINHeter)
def _export_seqdpn(module: SeqDPN, g: _Graph) -> str:
    schema = module.schema
    T, d, dq = module.max_len, module.seq_dim, module.query_dim
    _check_dropout(module.dropout, "dropout")
    values = _emit_inputs(g, module.inputs, schema, "inputs")
    seq0 = module.sequence[0]
    lens = g.node("seq_length", f"lengths[{seq0}]", [], "len", {"field": seq0})
    x = values[seq0]
    if len(module.sequence) > 1:
        x = g.node("seq_concat", "behaviours", [values[n] for n in module.sequence] + [lens], "X",
                   {"max_len": T})
    parts = [x] if module.residual or not module.encoder else []
    if module.self_attention is not None:
        parts.append(_emit_self_attention(g, module.self_attention, "self_attention", x, lens, T, d))
    if module.homo_dpo is not None:
        parts.append(_emit_homo_dpo(g, module.homo_dpo, "homo_dpo", x, lens, T, d, "homo"))
    if module.conv1d is not None:
        parts.append(_emit_conv1d(g, module.conv1d, "conv1d", x, lens, T, d, "conv"))
    e = parts[0] if len(parts) == 1 else g.node("seq_add", "encoder", parts + [lens], "E",
                                                {"max_len": T})
    cand = [values[n] for n in module.candidate]
    q = cand[0] if len(cand) == 1 else g.node("concat", "candidate", cand, "q")
    interest = []
    if module.target_attention is not None:
        ta = module.target_attention
        _check_type(ta, (TargetAttention,), "target_attention")
        params = _linear_params(g, ta.fc1, "target_attention.fc1", "fc1_", 4 * d, ta.hidden)
        params.update(_linear_params(g, ta.fc2, "target_attention.fc2", "fc2_", ta.hidden, 1))
        interest.append(g.node("target_attention", "target_attention", [q, e, lens], "ta",
                               {"max_len": T, "dim": d, "hidden": ta.hidden, "act": ta.act}, params))
    if module.hetero_dpo is not None:
        interest.append(_emit_hetero_dpo(g, module.hetero_dpo, "hetero_dpo", q, e, lens, T, dq, d,
                                         "het"))
    if not interest:
        interest.append(g.node("seq_pool", "mean_valid", [e, lens], "pooled", {"max_len": T}))
    x0 = g.node("concat", "head_input", interest + [q] + [values[n] for n in module.profile], "x0")
    x, width = _emit_feature_layers(g, module, x0, module.head_in, (x0, module.head_in))
    return _emit_linear_out(g, module.classifier, x, width)


def _gru_params(g, rnn, path, cls, d, h):
    """weight_ih / weight_hh / bias_ih / bias_hh of a dpn_infer.nn GRU or AUGRU (torch.nn.GRU's
    layout, gates reset, update, new), checked against the behaviours' width."""
    _check_type(rnn, (cls,), path)
    if (rnn.input_dim, rnn.hidden) != (d, h):
        raise ValueError(f"cannot export '{path}' ({cls.__name__}): input_dim {rnn.input_dim}, hidden "
                         f"{rnn.hidden}; the model needs {d}, {h}")
    return {n: g.tensor(f"{path}.{n}", getattr(rnn, n))
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}


@_exporter(DIEN, DIENHeter)
def _export_dien(module: DIEN, g: _Graph) -> str:
    """DIEN (+ Heter): seq_embedding / seq_concat as SeqDPN, then ``gru`` (reverse: the newest_first
    order), ``dien_attention``, ``augru`` and, for DIENHeter, seq_pool of the states + dylinear."""
    schema = module.schema
    seq0 = module.sequence[0]
    T, d, dq = schema[seq0].max_len, module.seq_dim, module.query_dim
    _check_dropout(module.dropout, "dropout")
    values = _emit_inputs(g, module.inputs, schema, "inputs")
    lens = g.node("seq_length", f"lengths[{seq0}]", [], "len", {"field": seq0})
    x = values[seq0]
    if len(module.sequence) > 1:
        x = g.node("seq_concat", "behaviours", [values[n] for n in module.sequence] + [lens], "X",
                   {"max_len": T})
    rnn = {"max_len": T, "in": d, "hidden": d}
    states = g.node("gru", "extractor", [x, lens], "H",
                    dict(rnn, reverse=module.order == "newest_first"),
                    _gru_params(g, module.extractor, "extractor", GRU, d, d))
    cand = [values[n] for n in module.candidate]
    q = cand[0] if len(cand) == 1 else g.node("concat", "candidate", cand, "q")
    _check_type(module.att, (nn.Linear,), "att")
    if module.att.bias is not None or (module.att.in_features, module.att.out_features) != (d, dq):
        raise ValueError(f"cannot export 'att': expected a bias-free Linear({d}, {dq})")
    a = g.node("dien_attention", "att", [q, states, lens], "a", {"max_len": T, "dim": d, "query": dq},
               {"weight": g.tensor("att.weight", module.att.weight)})
    interest = [g.node("augru", "evolution", [states, a, lens], "interest", rnn,
                       _gru_params(g, module.evolution, "evolution", AUGRU, d, d))]
    if module.hetero_dpo is not None:
        het = module.hetero_dpo
        _check_type(het, (HeteroDPO,), "hetero_dpo")
        if het.generator != "mlp":
            raise ValueError(f"cannot export 'hetero_dpo': generator {het.generator!r} (DIENHeter "
                             f"builds an 'mlp' one)")
        pooled = g.node("seq_pool", "mean_states", [states, lens], "pooled", {"max_len": T})
        interest.append(_emit_dylinear(g, het.dpo, "hetero_dpo.dpo", q, pooled, "het", "identity",
                                       width_in=dq, width_z=d))
    x0 = g.node("concat", "head_input", interest + [q] + [values[n] for n in module.profile], "x0")
    x, width = _emit_feature_layers(g, module, x0, module.head_in, (x0, module.head_in))
    return _emit_linear_out(g, module.classifier, x, width)


def _emit_kfatt(g, kf, path, q, e, lens, L, S, dq, d, add=None) -> str:
    """``kfatt`` of query q over e (S sessions of L behaviours of width d); ``add`` (a value of the
    output's width) is added to its output (Eqn. 16's sum with HeteroDPO)."""
    _check_type(kf, (KFAtt,), path)
    if (kf.query_dim, kf.behaviour_dim) != (dq, d):
        raise ValueError(f"cannot export '{path}': KFAtt({kf.query_dim}, {kf.behaviour_dim}), the "
                         f"model has query width {dq} and behaviour width {d}")
    A, H = kf.dim, kf.heads
    params = {}
    for r, n_in in (("q", dq), ("k", d), ("v", d)):
        params.update(_linear_params(g, getattr(kf, r), f"{path}.{r}", f"{r}_", n_in, A))
    params.update(_linear_params(g, kf.o, f"{path}.o", "o_", A, kf.out_dim))
    params.update(_linear_params(g, kf.prior_mean, f"{path}.prior_mean", "prior_mean_", dq, A))
    params.update(_linear_params(g, kf.prior_logprec, f"{path}.prior_logprec", "prior_logprec_", dq, H))
    if kf.mode == "freq":
        params.update(_linear_params(g, kf.group_logprec, f"{path}.group_logprec", "group_logprec_",
                                     d, H))
    return g.node("kfatt", path, [q, e, lens] + ([add] if add else []), "kfatt",
                  {"max_len": L, "sessions": S, "query_dim": dq, "dim": d, "att_dim": A,
                   "out": kf.out_dim, "heads": H, "mode": kf.mode}, params)


@_exporter(DyJoint)
def _export_dyjoint(module: DyJoint, g: _Graph) -> str:
    schema, ts = module.schema, module.timestamps
    S, L, d, dq = ts.max_sessions, ts.session_len, module.seq_dim, module.query_dim
    _check_dropout(module.dropout, "dropout")
    values = _emit_inputs(g, module.inputs, schema, "inputs", sessions={n: ts.name for n in module.sequence})
    lens = g.node("session_length", f"lengths[{ts.name}]", [], "len", {"timestamps": ts.name})
    x = values[module.sequence[0]]
    if len(module.sequence) > 1:
        x = g.node("seq_concat", "behaviours", [values[n] for n in module.sequence] + [lens], "X",
                   {"max_len": L, "sessions": S})
    # encoder (Eqn. 15), per session
    enc = module.encoder
    _check_type(enc, (SessionEncoder,), "encoder")
    parts = [x] if enc.residual else []
    if enc.self_attention is not None:
        parts.append(_emit_self_attention(g, enc.self_attention, "encoder.self_attention", x, lens,
                                          L, d, S))
    if enc.homo_dpo is not None:
        parts.append(_emit_homo_dpo(g, enc.homo_dpo, "encoder.homo_dpo", x, lens, L, d, "homo", S=S))
    if enc.conv1d is not None:
        parts.append(_emit_conv1d(g, enc.conv1d, "encoder.conv1d", x, lens, L, d, "conv", S=S))
    e = parts[0] if len(parts) == 1 else g.node("seq_add", "encoder", parts + [lens], "E",
                                                {"max_len": L, "sessions": S})
    # decoder (Eqn. 16)
    dec = module.decoder
    _check_type(dec, (InterestDecoder,), "decoder")
    cand = [values[n] for n in module.candidate]
    q = cand[0] if len(cand) == 1 else g.node("concat", "candidate", cand, "q")
    het = None
    if dec.hetero_dpo is not None:
        hd = dec.hetero_dpo
        _check_type(hd, (HeteroDPO,), "decoder.hetero_dpo")
        # the context: the mean over every kept behaviour of e (generator "sep": of e's separable
        # convolution, each session convolved on its own)
        pooled = (_emit_sepconv_pool(g, hd.sep, "decoder.hetero_dpo.sep", e, lens, L, d, "pooled", S=S)
                  if hd.generator == "sep" else
                  g.node("seq_pool", "decoder.context", [e, lens], "pooled", {"max_len": L, "sessions": S}))
        het = _emit_hetero_dpo(g, dec.hetero_dpo, "decoder.hetero_dpo", q, e, lens, L, dq, d, "het",
                               z=pooled)
    interest = het
    if dec.kfatt is not None:
        interest = _emit_kfatt(g, dec.kfatt, "decoder.kfatt", q, e, lens, L, S, dq, d, add=het)
    # DyMLP: field layers over the candidate and profile fields, the first feature layer, then the
    # interest and dense fields joined, the rest and the classifier (App. G.1, B.5)
    mlp = module.mlp_fields
    x0 = values[mlp[0]] if len(mlp) == 1 else g.node("concat", "x0", [values[n] for n in mlp], "x0")
    x0_width = schema.width(mlp)
    x, width = x0, x0_width
    if module.field_specs:
        _check_lists(module, ("field_layers", "field_norms", "field_acts"), len(module.field_specs))
        x, m = _emit_field_layers(g, module, x0, values, None)
        width = len(mlp) * m
    _check_dropout(module.first.dropout, "first.dropout")
    x, width = _emit_feature_layers(g, module.first, x, width, (x0, x0_width), values, schema,
                                    prefix="first.")
    dense = [values[n] for n in module.dense]
    x = g.node("concat", "joined", [x, interest] + dense, "joined")
    width += module.interest_dim + schema.width(module.dense)
    if module.specs[1:]:
        _check_dropout(module.rest.dropout, "rest.dropout")
        x, width = _emit_feature_layers(g, module.rest, x, width, (x0, x0_width), values, schema,
                                        prefix="rest.")
    return _emit_linear_out(g, module.classifier, x, width)


def export(module: nn.Module) -> Tuple[dict, Dict[str, np.ndarray]]:
    """(metadata, tensors) of ``module`` (a dpn_infer.nn model), ready for format.write."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"export expects a dpn_infer.nn model, got {type(module).__name__}")
    if module._forward_hooks or module._forward_pre_hooks:
        raise ValueError(f"cannot export {type(module).__name__}: it has forward hooks")
    # The exporter of the nearest registered class: a subclass that keeps forward() exports as
    # its base (model_type names the base).
    base = next((cls for cls in type(module).__mro__ if cls in _EXPORTERS), None)
    if base is None:
        names = [cls.__name__ for cls in _EXPORTERS]
        raise TypeError(f"cannot export {type(module).__name__}: expected {', '.join(names[:-1])} or "
                        f"{names[-1]} from dpn_infer.nn")
    _check_forward(module, base)
    g = _Graph()
    out = _EXPORTERS[base](module, g)
    model_type = base.__name__
    metadata = {"producer": PRODUCER, "opset": 0, "model_type": model_type,
                "schema": {"fields": module.schema.to_json()},
                "graph": {"nodes": g.nodes, "output": out},
                "extra": {"config": module.config()}}
    metadata["opset"] = required_opset(metadata)
    return metadata, g.tensors


def save(module: nn.Module, path, precision: str = "fp32", embeddings: str = "fp32") -> str:
    """Export ``module`` and write it to ``path`` (model.bin). Returns the path.

    ``precision="bf16"|"int8"`` stores the dense weight matrices as bfloat16 / int8 (a scale per
    output), ``embeddings="fp16"|"bf16"|"int8"`` the embedding tables as float16 / bfloat16 / int8 (a
    scale per row) (converters/precision.py).
    """
    _precision.check(precision, embeddings)
    metadata, tensors = _precision.apply(*export(module), precision, embeddings)
    write(path, metadata, tensors)
    return os.fspath(path)
