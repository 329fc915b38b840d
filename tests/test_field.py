"""Field-based DPO (FieldDyLinear / FieldDPN, op `field_dylinear`): engine vs the PyTorch reference.

Same criterion as test_parity.py (rtol 1e-4 / atol 1e-5, with its float64 fallback for
ill-conditioned rows): random models over every aggregation (summation, self-excluded summation,
self, attention, concat), shared / per-field generators, mlp / linear generators, every sigma,
heads, the implicit W_f X W_l part alone and combined, per-field LayerNorm and residual, and the
stacked / parallel combinations with feature layers; random batch sizes. Every ISA runs a fixed
sample in child processes. FM written as a field operator is checked against a hand-written FM."""
from __future__ import annotations


import numpy as np
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dpn_infer import nn as dnn  # noqa: E402
from helpers import field_models as FM  # noqa: E402
from test_parity import SETTINGS, _check_every_isa, run_spec  # noqa: E402

FIELDS = [
    {"name": "user", "kind": "sparse", "dim": 4, "vocab": 30, "policy": "hash"},
    {"name": "genre", "kind": "multi_hot", "dim": 4, "vocab": 19, "policy": "oov_bucket",
     "pooling": "mean", "T": 6, "max_len": 6},
    {"name": "item", "kind": "sparse", "dim": 4, "vocab": 12, "policy": "error"},
    {"name": "feat", "kind": "dense", "dim": 4},
    {"name": "price", "kind": "dense", "dim": 1},          # projected to a row of 4
    {"name": "tags", "kind": "multi_hot", "dim": 4, "vocab": 7, "policy": "hash", "pooling": "sum",
     "T": 4, "max_len": 0},
]


def _fl(**kw):
    d = {"out": 6, "aggregation": "attention", "context": "x0", "generator": "mlp", "hidden": 3,
         "sigma": "relu", "heads": 1, "shared": False, "exclude_self": False, "attention_hidden": 5,
         "dynamic": True, "implicit": False}
    d.update(kw)
    return d


def _spec(field_layers, layers=(), combine="stacked", norm=None, residual=False, B=257, seed=1234,
          activation="relu", fields=FIELDS):
    return {"kind": "field_dpn", "fields": fields, "field_layers": list(field_layers),
            "layers": list(layers), "combine": combine, "activation": activation, "norm": norm,
            "feature_norm": None, "residual": residual, "seed": seed, "B": B}


VARIANTS = {
    "summation": [_fl(aggregation="summation")],
    "summation_exclude_self": [_fl(aggregation="summation", exclude_self=True)],
    "summation_shared": [_fl(aggregation="summation", shared=True)],
    "self": [_fl(aggregation="self")],
    "self_shared_h2": [_fl(aggregation="self", shared=True, heads=2)],
    "attention": [_fl()],
    "attention_shared_softmax": [_fl(shared=True, sigma="softmax")],
    "concat": [_fl(aggregation="concat")],
    "concat_shared_linear": [_fl(aggregation="concat", shared=True, generator="linear")],
    "linear_generator_self": [_fl(aggregation="self", generator="linear", out=4, heads=4)],
    "sigma_sigmoid": [_fl(sigma="sigmoid")],
    "sigma_identity": [_fl(sigma="identity", aggregation="summation")],
    "implicit_only": [_fl(dynamic=False, implicit=True)],
    "dynamic_plus_implicit": [_fl(implicit=True, aggregation="concat")],
    "stack_prev_residual": [_fl(out=4), _fl(out=4, context="prev", aggregation="self"),
                            _fl(out=4, context="prev", aggregation="summation", shared=True)],
    "out1": [_fl(out=1, aggregation="summation")],
    # named context rows: t2 != t1 (the projected dense field "price" among them)
    "attention_named_context": [_fl(context=["genre", "price", "user"])],
    "summation_one_context_field": [_fl(aggregation="summation", context=["item"])],
    "concat_named_context": [_fl(aggregation="concat", context=["tags", "feat"], shared=True)],
    "self_permuted_context": [_fl(aggregation="self", context=["tags", "price", "feat", "item",
                                                                "genre", "user"])],
}
FEATURE = [{"out": 7, "dynamic": True, "context": "x0", "generator": "mlp", "hidden": 3,
            "sigma": "relu", "form": "full", "heads": 1},
           {"out": 5, "dynamic": False}]


@pytest.mark.parametrize("norm,residual", [(None, False), ("layernorm", True)])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_field_fixed_variant(variant, norm, residual):
    run_spec(_spec(VARIANTS[variant], norm=norm, residual=residual))


@pytest.mark.parametrize("combine", ["stacked", "parallel"])
@pytest.mark.parametrize("agg", FM.AGGS)
def test_field_feature_combination(combine, agg):
    """Table 14b: the field part feeds the feature layers (stacked) or runs beside them (parallel)."""
    run_spec(_spec([_fl(aggregation=agg, out=4)], FEATURE, combine=combine, norm="layernorm",
                   residual=True))


@pytest.mark.parametrize("B", [1, 2, 3, 255, 513])
def test_field_batch_sizes(B):
    run_spec(_spec(VARIANTS["stack_prev_residual"], FEATURE, combine="parallel", B=B))


@pytest.mark.parametrize("B", [16, 300])
def test_field_movielens_shape(B):
    """The bench `field` shape (Table 11): 7 fields x 16, field layers 64-64, attention, residual.
    At batch 16, predict(threads=3) (compared with threads=1 by check_parity) splits the fields'
    GEMMs between threads."""
    fields = [{"name": f"f{i}", "kind": "sparse", "dim": 16, "vocab": 50, "policy": "hash"}
              for i in range(7)]
    run_spec(_spec([_fl(out=64, hidden=4, attention_hidden=16), _fl(out=64, hidden=4,
                                                                    attention_hidden=16)],
                   [{"out": 32, "dynamic": False}], norm="layernorm", residual=True, fields=fields,
                   B=B))


@settings(max_examples=80, **SETTINGS)
@given(spec=FM.field_dpn_specs())
def test_parity_field_dpn(spec):
    run_spec(spec)


@pytest.mark.parametrize("agg", FM.AGGS)
@settings(max_examples=20, **SETTINGS)
@given(data=st.data())
def test_parity_field_per_aggregation(agg, data):
    run_spec(data.draw(FM.field_dpn_specs(agg=agg)))


def test_parity_field_every_isa_fixed():
    specs = [_spec(layers, norm="layernorm", residual=True, B=131) for layers in VARIANTS.values()]
    specs += [_spec(VARIANTS[v], B=1) for v in ("attention", "dynamic_plus_implicit",
                                                "self_shared_h2", "concat_named_context")]
    specs += [_spec([_fl(aggregation=a, out=4)], FEATURE, combine=c)
              for a in FM.AGGS for c in ("stacked", "parallel")]
    _check_every_isa(specs)


@settings(max_examples=5, derandomize=True, database=None, phases=[Phase.generate], **SETTINGS)
@given(specs=st.lists(FM.field_dpn_specs(), min_size=5, max_size=5))
def test_parity_field_every_isa_random(specs):
    _check_every_isa(specs)


# ---------------------------------------------------------------------------------------------
# the formulation

def _fm(v):
    """Hand-written FM: sum_{i<j} <v_i, v_j> over the field rows of v [B, t, d]."""
    t = v.shape[1]
    return sum((v[:, i] * v[:, j]).sum(-1) for i in range(t) for j in range(i + 1, t))


@pytest.mark.parametrize("t,d", [(2, 1), (3, 4), (7, 16)])
def test_fm_is_self_excluded_summation_with_identity_generator(t, d):
    """App. C: FM = (t - 1) / 2 * sum_i y_i with y_i = <v_i, mean_{j != i} v_j>."""
    torch.manual_seed(t * 100 + d)
    v = torch.randn(33, t, d, dtype=torch.float64)
    op = dnn.fm_operator(t, d).double()
    y = op(v, v)
    assert y.shape == (33, t, 1)
    torch.testing.assert_close(y.sum((1, 2)) * (t - 1) / 2, _fm(v), rtol=1e-10, atol=1e-10)


def test_fm_operator_in_engine():
    """The same FM operator, exported inside a FieldDPN, scores like the reference."""
    fields = [{"name": f"f{i}", "kind": "sparse", "dim": 3, "vocab": 20, "policy": "hash"}
              for i in range(4)]
    spec = _spec([{**_fl(out=1, aggregation="summation", generator="linear", shared=True,
                         exclude_self=True)}], fields=fields, activation="identity", B=64)
    from helpers import models as HM
    model = HM.build(spec)
    with torch.no_grad():
        fm = dnn.fm_operator(4, 3)
        model.field_layers[0].load_state_dict(fm.state_dict())
        model.classifier.weight.fill_(1.5)        # (t - 1) / 2
        model.classifier.bias.zero_()
    batch = HM.make_batch(fields, 64, 3)
    with torch.no_grad():
        x0 = torch.stack([model.inputs(batch)[f["name"]] for f in fields], 1)
        torch.testing.assert_close(model(batch), _fm(x0), rtol=1e-5, atol=1e-5)
    from test_parity import check_parity
    check_parity(model, batch, what="FM operator")


def test_attention_weights_sum_to_one():
    op = dnn.FieldDyLinear(3, 4, 2, 5, 6, aggregation="attention")
    a = op.attention(torch.randn(9, 5, 6))
    assert a.shape == (9, 3, 5)
    torch.testing.assert_close(a.sum(-1), torch.ones(9, 3))


@pytest.mark.parametrize("kw,msg", [
    (dict(aggregation="self"), "in_fields == context_fields"),
    (dict(aggregation="attention", exclude_self=True), "exclude_self"),
    (dict(dynamic=False, implicit=False), "at least one"),
    (dict(heads=3), "heads"),
    (dict(aggregation="nope"), "aggregation"),
])
def test_field_dylinear_refuses_bad_options(kw, msg):
    with pytest.raises(ValueError, match=msg):
        dnn.FieldDyLinear(3, 4, 2, 5, 6, **kw)


def test_field_dpn_needs_one_dim():
    schema = dnn.Schema([dnn.SparseField("a", 5, 3), dnn.SparseField("b", 5, 2)])
    with pytest.raises(ValueError, match="same dim"):
        dnn.FieldDPN(schema, [4])
    schema = dnn.Schema([dnn.SparseField("a", 5, 3), dnn.DenseField("b", 2)])
    assert list(dnn.FieldDPN(schema, [4]).projections) == ["f1"]


def test_field_dpn_checkpoint_roundtrip(tmp_path):
    from helpers import models as HM
    model = HM.build(_spec(VARIANTS["stack_prev_residual"], FEATURE, combine="parallel"))
    dnn.save_checkpoint(model, tmp_path / "m.pt")
    back = dnn.load_checkpoint(tmp_path / "m.pt")
    batch = HM.make_batch(FIELDS, 17, 2)
    with torch.no_grad():
        np.testing.assert_array_equal(back(batch).numpy(), model(batch).numpy())


@pytest.mark.parametrize("combine", ["stacked", "parallel"])
def test_spec_interpreter_matches_reference(combine):
    """helpers/specref.py (numpy, float64, written from docs/format.md §5 `field_dylinear`) evaluates the
    converted files as the PyTorch reference does: the converter writes what the spec says."""
    from dpn_infer.converters import torch_export
    from helpers import models as HM
    from helpers import specref

    for name, layers in VARIANTS.items():
        spec = _spec(layers, FEATURE, combine=combine, norm="layernorm", residual=True, B=33)
        model = HM.build(spec)
        batch = HM.make_batch(FIELDS, 33, 4)
        meta, tensors = torch_export.export(model)
        z = specref.run(meta, {k: np.asarray(v) for k, v in tensors.items()}, batch)
        with torch.no_grad():
            ref = model(batch).numpy()
        np.testing.assert_allclose(z, ref, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("combine", ["stacked", "parallel"])
def test_onnx_kron_form_matches_reference(combine):
    """converters/onnx_export.kron_form rewrites FieldDyLinear as one batched static GEMM over
    (field, head) pairs: same outputs as the paper form (the benchmark's ONNX peer computes the same
    function)."""
    from dpn_infer.converters.onnx_export import kron_form
    from helpers import models as HM

    for name, layers in VARIANTS.items():
        model = HM.build(_spec(layers, FEATURE, combine=combine, norm="layernorm", residual=True))
        batch = HM.make_batch(FIELDS, 29, 5)
        with torch.no_grad():
            np.testing.assert_allclose(kron_form(model)(batch).numpy(), model(batch).numpy(),
                                       rtol=1e-4, atol=1e-5, err_msg=name)


def test_onnx_export_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from dpn_infer.converters.onnx_export import export_onnx
    from helpers import models as HM

    model = HM.build(_spec(VARIANTS["stack_prev_residual"] + [_fl(out=3, implicit=True)], FEATURE,
                           combine="parallel", norm="layernorm", residual=True))
    batch = HM.make_batch(FIELDS, 31, 6)
    with torch.no_grad():
        ref = model(batch).numpy()
    for form in ("paper", "kron"):
        export_onnx(model, tmp_path / f"{form}.onnx", batch, form=form)
        sess = ort.InferenceSession(str(tmp_path / f"{form}.onnx"), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(sess.run(None, batch)[0], ref, rtol=1e-4, atol=1e-5, err_msg=form)


def test_readme_field_example_runs(tmp_path, monkeypatch, capsys):
    """The README's field-based example runs as written and prints engine == PyTorch."""
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = text.split("## Field-based DPN", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.replace("[", " ").replace("]", " ").split()
    vals = np.array([float(v) for v in out])
    np.testing.assert_allclose(vals[:2], vals[2:], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("B", [1, 300, 513])
def test_field_many_fields_chunked(B):
    """40 fields with a wide attention layer: the op's per-row scratch (t2 x (d + t1) scores) makes it
    split a 256-row block into chunks; rows on both sides of every chunk edge match the reference."""
    fields = [{"name": f"f{i}", "kind": "sparse", "dim": 4, "vocab": 30, "policy": "hash"}
              for i in range(40)]
    run_spec(_spec([_fl(out=4, attention_hidden=64, hidden=2, heads=2),
                    _fl(out=4, aggregation="concat", context="prev", hidden=2, shared=True)],
                   norm="layernorm", residual=True, fields=fields, B=B))


def test_every_field_variant_trains():
    """A few Adam steps per aggregation / part (parallel with feature layers, so every part is on the
    loss's path): every parameter gets a finite gradient and the loss drops."""
    from helpers import models as HM

    batch = HM.make_batch(FIELDS, 32, 9)
    y = torch.as_tensor(np.random.default_rng(0).random(32) < 0.3, dtype=torch.float32)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for name in ("summation_exclude_self", "self_shared_h2", "attention", "concat_shared_linear",
                 "implicit_only", "dynamic_plus_implicit", "stack_prev_residual"):
        model = HM.build(_spec(VARIANTS[name], FEATURE, combine="parallel", norm="layernorm",
                               residual=True)).train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        losses = []
        for _ in range(3):
            opt.zero_grad()
            loss = loss_fn(model(batch), y)
            loss.backward()
            for pname, p in model.named_parameters():
                assert p.grad is not None and bool(torch.isfinite(p.grad).all()), f"{name}: {pname}"
            opt.step()
            losses.append(float(loss))
        assert losses[-1] < losses[0], f"{name}: loss {losses}"


def test_exporter_refuses_inconsistent_field_modules():
    """A FieldDyLinear whose parameters do not match its config, or a field norm the format cannot
    express, is refused naming the module (never exported approximately)."""
    from dpn_infer.converters import torch_export
    from helpers import models as HM

    def fresh():
        return HM.build(_spec([_fl(implicit=True)], norm="layernorm"))

    m = fresh()
    m.field_layers[0].g1_weight = torch.nn.Parameter(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match=r"field_layers\.0\.g1_weight"):
        torch_export.export(m)
    m = fresh()
    m.field_layers[0].att = torch.nn.Linear(4, 7)
    with pytest.raises(ValueError, match=r"field_layers\.0\.att"):
        torch_export.export(m)
    m = fresh()
    m.field_layers[0].feature_weight = torch.nn.Parameter(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="feature_weight"):
        torch_export.export(m)
    m = fresh()
    m.field_norms[0] = torch.nn.BatchNorm1d(6)
    with pytest.raises(TypeError, match=r"field_norms\.0"):
        torch_export.export(m)
    m = fresh()
    m.field_norms[0] = torch.nn.LayerNorm(5)
    with pytest.raises(ValueError, match=r"field_norms\.0"):
        torch_export.export(m)


# -- many callers sharing one field model ------------------------------------------------------

THREAD_FIELDS = [{"name": n, "kind": "sparse", "dim": 8, "vocab": 50, "policy": "hash"} for n in "abcde"]
THREAD_WIDE = [{"name": n, "kind": "sparse", "dim": 64, "vocab": 50, "policy": "hash"} for n in "abcde"]


def _thread_models():
    from helpers import models as HM

    specs = {
        "attention+implicit": [dnn.FieldLayerSpec(8, aggregation="attention", hidden=3, heads=2,
                                                  implicit=True, attention_hidden=5)],
        "summation-shared-exclude": [dnn.FieldLayerSpec(8, aggregation="summation", shared=True,
                                                        exclude_self=True, sigma="softmax")],
        "self": [dnn.FieldLayerSpec(6, aggregation="self", hidden=2, heads=2)],
        "concat-linear": [dnn.FieldLayerSpec(4, aggregation="concat", generator="linear", hidden=40),
                          dnn.FieldLayerSpec(4, aggregation="summation", context="prev")],
        "implicit-only": [dnn.FieldLayerSpec(8, dynamic=False, implicit=True)],
        # wide fields: at batch 1 with 2 threads the fields' GEMMs are split between threads
        "wide-per-field": [dnn.FieldLayerSpec(64, aggregation="attention", hidden=16)],
    }
    out = {}
    for name, layers in specs.items():
        torch.manual_seed(0)
        fields = THREAD_WIDE if name.startswith("wide") else THREAD_FIELDS
        m = dnn.FieldDPN(HM.make_schema(fields), layers, [dnn.LayerSpec(3)], norm="layernorm").eval()
        HM.randomize_(m, 2)
        out[name] = (fields, m)
    return out


def test_field_models_predict_from_threads_is_identical(tmp_path):
    """Each field model kind shared by 6 threads (intra-op threads 1 and 2; batches of one block,
    one row, and row-split lanes) gives exactly the single-threaded answer."""
    from dpn_infer.converters import torch_export
    from dpn_infer.engine import load
    from helpers import models as HM
    from helpers.threaded import mismatches_from_threads

    for name, (fields, model) in _thread_models().items():
        batches = [HM.make_batch(fields, B, B) for B in (1, 5, 300)]
        p = tmp_path / f"{name}.bin"
        torch_export.save(model, p)
        m = load(str(p))
        errors = mismatches_from_threads(m, batches, threads=6, reps=2)
        assert not errors, (name, errors[:5])
