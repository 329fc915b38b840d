"""Corrupt and hand-edited files with `field_dylinear` nodes (opset 2): every bad attribute, param
shape, missing param and inconsistent input is refused at load with ModelFormatError naming the node
(never a crash: each file loads in an isolated child process); valid variations load and predict."""
from __future__ import annotations

import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dpn_infer import nn as dnn  # noqa: E402
from dpn_infer.converters import format as F  # noqa: E402
from dpn_infer.converters import torch_export  # noqa: E402
from helpers import models as HM  # noqa: E402
from helpers.isolated import check_edited, run_edited  # noqa: E402

FIELDS = [{"name": n, "kind": "sparse", "dim": 4, "vocab": 9, "policy": "hash"} for n in "abc"]
N0, N1 = "field_layers.0", "field_layers.1"   # attention + implicit + layernorm; summation, shared


def _model():
    torch.manual_seed(0)
    schema = HM.make_schema(FIELDS)
    return dnn.FieldDPN(schema, [
        dnn.FieldLayerSpec(4, aggregation="attention", hidden=3, heads=2, implicit=True,
                           attention_hidden=5),
        dnn.FieldLayerSpec(4, aggregation="summation", context="prev", shared=True,
                           exclude_self=True, sigma="softmax", hidden=2)],
        [dnn.LayerSpec(3)], combine="parallel", norm="layernorm", residual=True).eval()


def _base():
    return torch_export.export(_model())


def _node(meta, name):
    return next(n for n in meta["graph"]["nodes"] if n.get("name") == name)


def _r(*shape):
    return np.random.default_rng(1).standard_normal(shape).astype(np.float32)


def _cases():
    c = {}

    def bad(fn, node):
        c[fn.__name__] = (fn, "error", node)

    def ok(fn):
        c[fn.__name__] = (fn, "ok", None)

    def a0(**kw):
        return lambda mt, t: _node(mt, N0)["attrs"].update(kw)

    def a1(**kw):
        return lambda mt, t: _node(mt, N1)["attrs"].update(kw)

    def named(name, fn):
        fn.__name__ = name
        return fn

    for name, upd in [("unknown_aggregation", dict(aggregation="max")),
                      ("fields_mismatch", dict(fields=4)), ("in_mismatch", dict(**{"in": 3})),
                      ("context_mismatch", dict(context=5)), ("context_fields_mismatch",
                                                              dict(context_fields=2)),
                      ("out_zero", dict(out=0)), ("heads_not_dividing", dict(heads=3)),
                      ("heads_zero", dict(heads=0)), ("shared_not_bool", dict(shared="yes")),
                      ("shared_but_per_field_params", dict(shared=True)),
                      ("hidden_mismatch", dict(hidden=4)), ("hidden_huge", dict(hidden=1 << 40)),
                      ("fields_huge", dict(fields=1 << 40)),
                      ("attention_hidden_mismatch", dict(attention_hidden=4)),
                      ("exclude_self_on_attention", dict(exclude_self=True)),
                      ("neither_dynamic_nor_implicit", dict(dynamic=False, implicit=False)),
                      ("implicit_only_without_bias", dict(dynamic=False)),
                      ("unknown_norm", dict(norm="batchnorm")), ("eps_zero", dict(eps=0.0)),
                      ("unknown_sigma", dict(sigma="gelu")), ("unknown_generator", dict(generator="x")),
                      ("linear_generator_hidden_ne_input", dict(generator="linear")),
                      ("residual_not_bool", dict(residual=1)), ("act_unknown", dict(act="swish"))]:
        bad(named(name, a0(**upd)), N0)
    bad(named("per_field_params_on_shared", a1(shared=False)), N1)
    bad(named("self_exclusion_needs_summation", a1(aggregation="self")), N1)  # ok agg, but exclude_self

    def attention_hidden_missing(mt, t): del _node(mt, N0)["attrs"]["attention_hidden"]
    def sigma_missing(mt, t): del _node(mt, N0)["attrs"]["sigma"]
    def one_input(mt, t): _node(mt, N0)["inputs"] = ["x0"]
    def g1_wrong(mt, t): t[_node(mt, N0)["params"]["g1_weight"]] = _r(3, 3, 3)
    def g2_wrong(mt, t): t[_node(mt, N0)["params"]["g2_weight"]] = _r(3, 11, 3)
    def g2_bias_wrong(mt, t): t[_node(mt, N1)["params"]["g2_bias"]] = _r(3, 12)
    def att_query_wrong(mt, t): t[_node(mt, N0)["params"]["att_query"]] = _r(5, 3)
    def att_weight_missing(mt, t): del _node(mt, N0)["params"]["att_weight"]
    def field_weight_wrong(mt, t): t[_node(mt, N0)["params"]["field_weight"]] = _r(3, 4)
    def feature_weight_missing(mt, t): del _node(mt, N0)["params"]["feature_weight"]
    def ln_weight_wrong(mt, t): t[_node(mt, N0)["params"]["ln_weight"]] = _r(5)
    def ln_bias_missing(mt, t): del _node(mt, N1)["params"]["ln_bias"]
    def param_float16(mt, t):
        k = _node(mt, N1)["params"]["g1_weight"]
        t[k] = t[k].astype(np.float16)
    def param_names_missing_tensor(mt, t): _node(mt, N0)["params"]["g2_weight"] = "nope"
    for fn in (attention_hidden_missing, sigma_missing, one_input, g1_wrong, g2_wrong, att_query_wrong,
               att_weight_missing, field_weight_wrong, feature_weight_missing, ln_weight_wrong,
               param_names_missing_tensor):
        bad(fn, N0)
    for fn in (g2_bias_wrong, ln_bias_missing, param_float16):
        bad(fn, N1)

    def residual_in_ne_out(mt, t):
        # the first layer maps 4 -> 4: make it 4 -> 2 in the attrs only (widths then disagree too)
        _node(mt, N0)["attrs"]["residual"] = True
        _node(mt, N0)["attrs"]["in"] = 2
    bad(residual_in_ne_out, N0)

    def unknown_attribute_ignored(mt, t): _node(mt, N0)["attrs"]["zz_future"] = {"x": 1}
    def heads_default(mt, t): _node(mt, N1)["attrs"].pop("heads")
    def norm_none_ignores_ln(mt, t):
        # layernorm off: the ln params are then unused (and the output changes, still valid)
        _node(mt, N1)["attrs"]["norm"] = "none"
    for fn in (unknown_attribute_ignored, heads_default, norm_none_ignores_ln):
        ok(fn)
    return c


_CASES = _cases()


@pytest.fixture(scope="module")
def results():
    meta0, tensors0 = _base()
    yield run_edited(meta0, tensors0, _CASES, HM.make_batch(FIELDS, 9, 3), timeout=240)


@pytest.mark.parametrize("case", list(_CASES))
def test_field_crafted_file(case, results):
    _, expect, node = _CASES[case]
    check_edited(case, expect, results[case], r"field_dylinear '" + re.escape(node or "") + "'")


def test_field_model_records_opset_2_and_v1_models_stay_1():
    meta, _ = _base()
    assert meta["opset"] == 2 == F.OP_OPSET["field_dylinear"]
    feat = dnn.FeatureDPN(HM.make_schema(FIELDS), [dnn.LayerSpec(3, dynamic=True)])
    assert torch_export.export(feat)[0]["opset"] == 1


def test_field_model_refused_by_an_opset_1_reader(tmp_path):
    """What an older engine does with this file: the message names the operator and says upgrade."""
    from dpn_infer.engine import ModelFormatError, load

    meta, tensors = _base()
    meta["opset"] = 99
    p = tmp_path / "m.bin"
    F.write(p, meta, tensors)
    with pytest.raises(ModelFormatError, match=r"(?i)upgrad"):
        load(str(p))
