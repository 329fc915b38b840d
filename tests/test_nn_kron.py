"""The Kronecker-form forward of DyLinear, FieldDyLinear and HeteroDPO (impl="kron"; what the default
"auto" runs in train mode) against the paper form (impl="paper"; "auto" in eval mode): same outputs
and same gradients for every parameter and input, in train mode, over random shapes, heads, forms,
ranks, sigmas, generators, aggregations and batch sizes (1 and odd).

Tolerances: float32 |kron - paper| <= 1e-5 + 1e-4 * max|paper| per tensor (the two sum the same
products in another order); float64 (the cases where float32 rounding could hide a wrong index:
softmax, HyperDense, wide heads) 1e-10 + 1e-10 * max|paper|.
"""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from dpn_infer import nn as dnn  # noqa: E402
from dpn_infer.nn.dylinear import FORMS, GENERATORS, IMPLS, SIGMAS  # noqa: E402
from dpn_infer.nn.field import AGGREGATIONS  # noqa: E402

TOL = {torch.float32: (1e-4, 1e-5), torch.float64: (1e-10, 1e-10)}
SETTINGS = settings(max_examples=40, deadline=None)
BATCH = st.one_of(st.just(1), st.integers(1, 17).map(lambda k: 2 * k + 1))     # 1 and odd sizes


def _randomize(module, seed):
    """O(1)-scale parameters (the default init makes the dynamic part tiny, which would hide it)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            fan = p.shape[-1] if p.dim() > 1 else 1
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) / math.sqrt(fan))


def _outputs_and_grads(module, impl, inputs):
    """Output and d(sum(y * weights))/d(every input and parameter) under ``impl``."""
    assert dnn.set_impl(module, impl) == 1
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    y = module(*leaves)
    w = torch.linspace(-1.0, 2.0, y.numel(), dtype=y.dtype).view(y.shape)   # every output counts
    wrt = [t for t in leaves if t.requires_grad] + list(module.parameters())
    grads = torch.autograd.grad((y * w).sum(), wrt, allow_unused=True)     # z is unused when static
    return [y.detach()] + [torch.zeros_like(t) if g is None else g for t, g in zip(wrt, grads)]


def _assert_same(module, inputs, dtype):
    module.to(dtype).train()
    inputs = [t.to(dtype) if t.is_floating_point() else t for t in inputs]
    kron = _outputs_and_grads(module, "kron", inputs)
    paper = _outputs_and_grads(module, "paper", inputs)
    rtol, atol = TOL[dtype]
    names = ["output"] + [f"input {i}" for i, t in enumerate(inputs) if t.is_floating_point()] + \
        [f"grad {n}" for n, _ in module.named_parameters()]
    for name, a, b in zip(names, kron, paper):
        bound = atol + rtol * b.abs().max().item()
        err = (a - b).abs().max().item()
        assert err <= bound, f"{name}: |kron - paper| = {err:.3g} > {bound:.3g}"


@st.composite
def dylinear_cases(draw):
    form = draw(st.sampled_from(FORMS))
    generator = draw(st.sampled_from(GENERATORS))
    kw = {"hidden": draw(st.integers(1, 6)), "sigma": draw(st.sampled_from(SIGMAS)),
          "generator": generator, "form": form}
    if form == "full":
        H = draw(st.integers(1, 4))
        kw["heads"] = H
        m, c = H * draw(st.integers(1, 5)), H * draw(st.integers(1, 5))
    else:
        m, c = draw(st.integers(1, 12)), draw(st.integers(1, 12))
        kw["rank"], kw["w0"] = draw(st.integers(1, 6)), draw(st.booleans())
    n = draw(st.integers(1, 9))
    return m, c, n, kw, draw(BATCH), draw(st.integers(0, 2 ** 16))


def _hard(kw):
    return kw.get("sigma") == "softmax" or kw.get("generator") == "linear" or kw.get("heads", 1) > 2


@SETTINGS
@given(dylinear_cases())
def test_dylinear_kron_equals_paper(case):
    m, c, n, kw, B, seed = case
    torch.manual_seed(seed)
    dl = dnn.DyLinear(m, c, n, **kw)
    _randomize(dl, seed)
    inputs = [torch.randn(B, m), torch.randn(B, n)]
    _assert_same(dl, inputs, torch.float32)
    if _hard(kw):
        _assert_same(dl, inputs, torch.float64)


@st.composite
def field_cases(draw):
    aggregation = draw(st.sampled_from(AGGREGATIONS))
    H = draw(st.integers(1, 3))
    t1 = draw(st.integers(1, 4))
    t2 = t1 if aggregation == "self" else draw(st.integers(1, 4))
    exclude_self = aggregation == "summation" and t1 == t2 and t1 >= 2 and draw(st.booleans())
    dynamic = draw(st.booleans())
    kw = {"aggregation": aggregation, "hidden": draw(st.integers(1, 5)),
          "sigma": draw(st.sampled_from(SIGMAS)), "generator": draw(st.sampled_from(GENERATORS)),
          "heads": H, "shared": draw(st.booleans()), "exclude_self": exclude_self,
          "attention_hidden": draw(st.integers(1, 4)), "dynamic": dynamic,
          "implicit": draw(st.booleans()) if dynamic else True}
    shape = (t1, H * draw(st.integers(1, 3)), H * draw(st.integers(1, 3)), t2, draw(st.integers(1, 5)))
    return shape, kw, draw(BATCH), draw(st.integers(0, 2 ** 16))


@SETTINGS
@given(field_cases())
def test_field_dylinear_kron_equals_paper(case):
    (t1, m, c, t2, n), kw, B, seed = case
    torch.manual_seed(seed)
    fl = dnn.FieldDyLinear(t1, m, c, t2, n, **kw)
    _randomize(fl, seed)
    inputs = [torch.randn(B, t1, m), torch.randn(B, t2, n)]
    _assert_same(fl, inputs, torch.float32)
    if _hard(kw):
        _assert_same(fl, inputs, torch.float64)


@SETTINGS
@given(st.integers(1, 8), st.integers(1, 8), st.integers(1, 8), st.integers(1, 5),
       st.sampled_from(SIGMAS), BATCH, st.integers(1, 6), st.integers(0, 2 ** 16))
def test_hetero_dpo_kron_equals_paper(q, d, c, hidden, sigma, B, T, seed):
    torch.manual_seed(seed)
    het = dnn.HeteroDPO(q, d, c, hidden=hidden, sigma=sigma)
    _randomize(het, seed)
    lengths = torch.randint(0, T + 1, (B,))                  # empty rows included
    inputs = [torch.randn(B, q), torch.randn(B, T, d), lengths]
    _assert_same(het, inputs, torch.float32)
    if sigma == "softmax":
        _assert_same(het, inputs, torch.float64)


@pytest.mark.parametrize("kind", ["feature", "field"])
def test_model_train_step_same_in_both_impls(kind):
    """A whole model (BatchNorm / LayerNorm, dropout off) in train mode: same loss and gradients,
    switched by set_impl; the state_dict is the same object either way (impl is not in it)."""
    schema = dnn.Schema([dnn.SparseField("a", vocab=20, dim=4), dnn.SparseField("b", vocab=9, dim=4),
                         dnn.DenseField("x", dim=4)])
    torch.manual_seed(5)
    if kind == "feature":
        dynamic = 2
        model = dnn.FeatureDPN(schema, [{"out": 8, "dynamic": True, "heads": 2},
                                        {"out": 6, "dynamic": True, "form": "decomp", "rank": 3,
                                         "w0": True, "context": "prev"}], norm="batchnorm")
    else:
        dynamic = 3
        model = dnn.FieldDPN(schema, [{"out": 4, "heads": 2}, {"out": 4, "aggregation": "concat",
                                                                "implicit": True}],
                             layers=[{"out": 5, "dynamic": True}], norm="layernorm", residual=True)
    _randomize(model, 5)
    g = torch.Generator().manual_seed(6)
    batch = {"a": torch.randint(0, 20, (33,), generator=g), "b": torch.randint(0, 9, (33,), generator=g),
             "x": torch.randn(33, 4, generator=g)}
    labels = torch.rand(33, generator=g).round()
    keys = list(model.state_dict())
    results = []
    for impl in ("kron", "paper"):
        assert dnn.set_impl(model, impl) == dynamic
        model.train()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), labels)
        results.append([loss.detach()] + list(torch.autograd.grad(loss, list(model.parameters()))))
        assert list(model.state_dict()) == keys
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op returns (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("impl,train,kron", [("kron", True, True), ("kron", False, True),
                                              ("auto", True, True), ("auto", False, False),
                                              ("paper", True, False)])
def test_kron_never_builds_the_per_row_weight(impl, train, kron):
    """Forward + backward of a DyLinear: when the Kronecker form runs no tensor as large as B x m x c
    exists; when the paper form runs one does (so the probe can fail)."""
    B, m, c, n, l = 16, 32, 32, 5, 2
    dl = dnn.DyLinear(m, c, n, hidden=l, impl=impl).train(train)
    x, z = torch.randn(B, m, requires_grad=True), torch.randn(B, n)
    probe = _LargestTensor()
    with probe:
        dl(x, z).sum().backward()
    assert (probe.largest < B * m * c) == kron, probe.largest


def test_auto_is_kron_in_train_mode_and_paper_in_eval_mode():
    """Bit for bit: "auto" in train mode is "kron", in eval mode "paper" (what earlier releases
    computed, so recorded logits stay exact)."""
    torch.manual_seed(3)
    fl = dnn.FieldDyLinear(3, 4, 6, 3, 5, heads=2)
    _randomize(fl, 3)
    x, z = torch.randn(9, 3, 4), torch.randn(9, 3, 5)
    out = {}
    for impl in IMPLS:
        for train in (True, False):
            fl.impl = impl
            out[impl, train] = fl.train(train)(x, z).detach()
    for train in (True, False):
        assert torch.equal(out["kron", True], out["kron", train])
        assert torch.equal(out["paper", True], out["paper", train])
    assert torch.equal(out["auto", True], out["kron", True])
    assert torch.equal(out["auto", False], out["paper", False])
    assert not torch.equal(out["kron", True], out["paper", True])   # the two really differ in rounding


def test_impl_is_checked_and_not_saved(tmp_path):
    with pytest.raises(ValueError, match="impl must be one of"):
        dnn.DyLinear(4, 4, 3, impl="fast")
    with pytest.raises(ValueError, match="impl must be one of"):
        dnn.set_impl(dnn.HeteroDPO(4, 3, 4), "bmm")
    fl = dnn.FieldDyLinear(2, 4, 4, 2, 3)
    with pytest.raises(ValueError, match="FieldDyLinear: impl must be one of"):
        fl.impl = "x"
    assert fl.impl == "auto" and dnn.HeteroDPO(4, 3, 4, impl="paper").dpo.impl == "paper"
    schema = dnn.Schema([dnn.SparseField("a", vocab=5, dim=3)])
    model = dnn.FeatureDPN(schema, [{"out": 4, "dynamic": True}])
    dnn.set_impl(model, "paper")
    dnn.save_checkpoint(model, tmp_path / "m.pt")
    assert "impl" not in str(model.config())
    assert dnn.load_checkpoint(tmp_path / "m.pt").layers[0].impl == "auto"    # the default again
