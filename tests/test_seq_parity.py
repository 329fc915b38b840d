"""Sequence models (SeqDPN, DINHeter: HomoDPO and HeteroDPO with mlp / SE / separable generators,
self-attention, Conv1D, target attention) in the engine vs the PyTorch reference (dpn_infer.nn, eval
mode), on random models and behaviour batches.

The criterion is test_parity's (``judge``): engine logits within rtol 1e-4 / atol 1e-5 of
``model(batch)`` and probabilities within the same of its sigmoid; on a miss, both float32 answers are
judged against the float64 evaluation of the same model plus a rounding slack. Batches hold rows with
an empty history, one item and every column valid; max_len from 1 to 50; input T of 0, 1, max_len and
(with truncation) above it; odd batch sizes; every kernel ISA the machine has (child processes)."""
from __future__ import annotations

import copy
import os
import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from dpn_infer.converters import torch_export  # noqa: E402
from dpn_infer.engine import load  # noqa: E402
from helpers import models as HM  # noqa: E402
from helpers import seqmodels as SM  # noqa: E402
from test_parity import engine_scores, judge, judge_scores  # noqa: E402

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
                print_blob=True)


def _double(model):
    m64 = copy.deepcopy(model).double()
    m64.inputs.register_forward_hook(lambda mod, args, out: {
        k: (v[0].double(), v[1]) if isinstance(v, tuple) else v.double() for k, v in out.items()})
    return m64


def _truth(model, batch, trials=3, rel=2.0 ** -20):
    with torch.no_grad():
        truth = _double(model)(batch).numpy()
    g = torch.Generator().manual_seed(12345)
    spread = np.zeros_like(truth)
    for _ in range(trials):
        m = _double(model)
        with torch.no_grad():
            for t in list(m.parameters()) + [b for b in m.buffers() if b.is_floating_point()]:
                t.mul_(1 + rel * (2 * torch.rand(t.shape, generator=g, dtype=t.dtype) - 1))
            spread = np.maximum(spread, np.abs(m(batch).numpy() - truth))
    return truth, spread


def _prepare(spec):
    model = SM.build(spec)
    batch = SM.make_batch(spec, spec["B"], spec["seed"] + 1)
    HM.calibrate_(model, batch, seed=spec["seed"])
    return model, batch


def check(model, batch, what=""):
    with torch.no_grad():
        ref = model(batch).numpy()
    z, p, z3 = engine_scores(model, batch)
    judge_scores(z, p, z3, ref, lambda: _truth(model, batch), batch, what)
    return z, ref


def run_spec(spec):
    model, batch = _prepare(spec)
    return check(model, batch, what=f"for spec {spec!r}")


# ---------------------------------------------------------------------------------------------
# property tests


@settings(max_examples=60, **SETTINGS)
@given(spec=SM.seq_model_specs())
def test_parity_seq_models(spec):
    run_spec(spec)


def _fixed(**kw):
    spec = {"kind": "seqdpn", "T": 8, "Tin": 8, "truncate": False,
            "seqs": [{"name": "hist item", "cand": "item", "vocab": 40, "dim": 6, "policy": "hash",
                      "share": True},
                     {"name": "hist.cat", "cand": "cat", "vocab": 7, "dim": 4, "policy": "oov_bucket",
                      "share": True}],
            "profile": ["user", "age", "tags"], "extra_cand": False,
            "encoder": ["self_attention", "homo_dpo"], "decoder": ["target_attention", "hetero_dpo"],
            "residual": True, "heads": 2, "kernel_size": 3, "homo_generator": "mlp", "homo_hidden": 4,
            "homo_sigma": "relu", "se_ratio": 2, "att_hidden": 8, "att_act": "sigmoid",
            "hetero_out": None, "hetero_hidden": 4, "hetero_sigma": "relu", "hetero_generator": "mlp",
            "layers": [16, 8],
            "activation": "relu", "norm": None, "seed": 1234, "B": 257}
    spec.update(kw)
    return spec


MODULES = {
    "homo_only": dict(encoder=["homo_dpo"], decoder=[]),
    "homo_se": dict(encoder=["homo_dpo"], decoder=[], homo_generator="se"),
    "homo_sep": dict(encoder=["homo_dpo"], decoder=[], homo_generator="sep", se_ratio=3),
    "homo_sep_k5": dict(encoder=["homo_dpo"], decoder=[], homo_generator="sep", kernel_size=5),
    "hetero_se": dict(encoder=[], decoder=["hetero_dpo"], hetero_generator="se", hetero_out=3),
    "hetero_sep": dict(encoder=[], decoder=["hetero_dpo"], hetero_generator="sep", se_ratio=8),
    "conv1d": dict(encoder=["conv1d"], decoder=[]),
    "conv1d_k5_no_residual": dict(encoder=["conv1d"], decoder=[], kernel_size=5, residual=False),
    # Table 15's rows: Sep + SE + Homo / Conv1D encoders, Sep + SE + Heter decoder
    "table15_sep": dict(homo_generator="sep", hetero_generator="sep"),
    "table15_conv1d": dict(encoder=["self_attention", "conv1d"], hetero_generator="sep"),
    "homo_k1": dict(encoder=["homo_dpo"], decoder=[], kernel_size=1),
    "homo_k7_softmax": dict(encoder=["homo_dpo"], decoder=[], kernel_size=7, homo_sigma="softmax"),
    "self_attention_h1": dict(encoder=["self_attention"], decoder=[], heads=1),
    "self_attention_h5": dict(encoder=["self_attention"], decoder=[], heads=5),
    "target_only": dict(encoder=[], decoder=["target_attention"]),
    "hetero_only": dict(encoder=[], decoder=["hetero_dpo"], hetero_out=3),
    "din_heter": dict(kind="din_heter"),
    "sdpn_full": {},
    "sdpn_no_residual": dict(residual=False),
    "sdpn_dynamic_head": dict(layers=[{"out": 12, "dynamic": True, "context": "x0", "hidden": 3}, 6],
                              norm="layernorm"),
    "one_seq_field": dict(seqs=[{"name": "hist item", "cand": "item", "vocab": 40, "dim": 6,
                                 "policy": "error", "share": False}], heads=3),
    "truncate_T50": dict(T=50, Tin=60, truncate=True),
    "max_len_1": dict(T=1, Tin=1),
    "empty_columns": dict(Tin=0),
}


@pytest.mark.parametrize("variant", list(MODULES))
@pytest.mark.parametrize("B", [1, 257])
def test_parity_seq_fixed(variant, B):
    run_spec(_fixed(B=B, **MODULES[variant]))


# ---------------------------------------------------------------------------------------------
# every kernel ISA (child processes)


def test_parity_seq_every_isa():
    specs = [_fixed(B=b, **MODULES[v]) for v in MODULES for b in (1, 7)]
    specs += [_fixed(B=300, T=50, Tin=50, kernel_size=k, homo_generator=g, hetero_generator=g)
              for k in (1, 3, 5) for g in ("mlp", "se", "sep")]
    specs += [_fixed(B=300, T=50, Tin=50, kernel_size=k, encoder=["conv1d"]) for k in (1, 3, 5)]
    _check_every_isa(specs)


@settings(max_examples=1, derandomize=True, database=None, phases=[Phase.generate], **SETTINGS)
@given(specs=st.lists(SM.seq_model_specs(), min_size=12, max_size=12))
def test_parity_seq_every_isa_random(specs):
    """A fixed (derandomized) sample of random sequence models under every ISA; no shrinking."""
    _check_every_isa(specs)


def _check_every_isa(specs):
    from helpers.isa import check_models_every_isa

    cases = []
    for spec in specs:
        model, batch = _prepare(spec)
        with torch.no_grad():
            ref = model(batch).numpy()
        cases.append((f"spec {spec!r}", model, batch, ref,
                      lambda model=model, batch=batch: _truth(model, batch)))
    with tempfile.TemporaryDirectory(prefix="dpn_seq_isa_") as d:
        check_models_every_isa(cases, judge, d)


@settings(max_examples=15, **SETTINGS)
@given(spec=SM.seq_model_specs(), rows=st.lists(st.integers(0, 299), min_size=1, max_size=5))
def test_seq_rows_are_independent(spec, rows):
    """A row's output depends on its own history only (not on other rows' lengths or blocks)."""
    check_rows_independent(spec, rows)


def check_rows_independent(spec, rows):
    """The engine's logits of batch rows ``rows`` alone equal theirs in the whole 300-row batch."""
    spec = dict(spec, B=300)
    model, batch = _prepare(spec)
    with tempfile.TemporaryDirectory(prefix="dpn_seq_rows_") as d:
        path = os.path.join(d, "model.bin")
        torch_export.save(model, path)
        m = load(path)
        full = m.predict(batch, logits=True)
        sub = m.predict({k: v[rows] for k, v in batch.items()}, logits=True)
    np.testing.assert_allclose(sub, full[rows], rtol=1e-4, atol=1e-5)


def test_parity_seq_longer_than_a_pass():
    """max_len above the attention ops' 2048-position pass: one row per pass, full and empty rows."""
    spec = _fixed(B=5, T=2100, Tin=2100, seqs=[{"name": "hist item", "cand": "item", "vocab": 40,
                                                "dim": 4, "policy": "hash", "share": True}],
                  heads=2, profile=[])
    model, batch = _prepare(spec)
    batch["hist item"][3] = np.arange(2100) % 40          # every column valid
    check(model, batch, what="T=2100")
