"""The PyTorch reference of a bfloat16 file loaded with ``load(path, bf16_gemm=True)``, and the bound
its parity tests use.

The engine then runs every ``linear`` node and every ``dylinear`` GEMM on bfloat16 operands: the
weights as the file stores them (and a dylinear's A' rounded as packed: the static weight A_0, cut
from g2's float32 bias, too), the GEMM inputs rounded to nearest even (a Kronecker left operand after
its float32 products h_k·x), with float32 accumulation and a float32 bias. ``reference(model, meta)``
makes the torch model (parameters already rounded by helpers/precision.round_params_) compute exactly
that: forward pre-hooks round the inputs of the nn.Linear modules exported as ``linear`` nodes, and
each DyLinear exported as ``dylinear`` runs the engine's Kronecker form with the same roundings.
Everything else (field, sequence and attention ops, LayerNorm) stays float32 in both.

Rounding is exact, so the two differ by float32 summation order, and by what that order can do to a
rounding: where the engine's and torch's float32 value of a GEMM input straddle a bfloat16 rounding
boundary, the two round it to adjacent bfloat16 values, one ulp apart, at most 2^-7 of the value
(8 significant bits). First order, the output z_b of row b then moves by at most
2^-7 · F_b, F_b = Σ over every rounded input a of row b of |a · ∂z_b/∂a| (all inputs flipping at once:
a worst case far above the few flips that happen). ``reference`` returns F (autograd through the
roundings as identities); the tests allow twice the first-order bound for second-order terms.

``reference(..., arith="int8")`` is the same for an int8 file loaded with ``int8_gemm=True``
(test_int8_gemm.py): every GEMM weight the engine packs (a linear weight, g1's, each A', P, and
decomp's [Q; Bd; W0]) quantized per output column as packed (symmetric, max/127: a stored int8
weight gets its own values back), every GEMM input quantized per row (qa = rint(a·127/max|row|),
value qa·max|row|/127), the products summed in float32 (the engine's int32 sums are exact, so only
float32 summation order and the epilogue's rounding differ). A straddled boundary there moves an
input by one quantization step, max|row|/127, whatever its value: F_b = Σ over every quantized input
a of row b of |∂z_b/∂a| · step(a), already in output units.
"""
from __future__ import annotations

import copy

import numpy as np


def _round(a):
    """bfloat16 rounding (nearest even) with an identity gradient."""
    import torch

    return a + (a.to(torch.bfloat16).to(torch.float32) - a).detach()


def _int8_step(a, dim):
    """max |a| / 127 along ``dim`` (kept), as the engine computes it in float32."""
    return a.detach().abs().amax(dim=dim, keepdim=True) / 127.0


def _quant(a, dim):
    """Symmetric int8 quantization along ``dim`` (1: per row, as the engine quantizes a GEMM input;
    0: per column, as it packs a weight), dequantized, with an identity gradient. Rows: inv =
    127/max then rint(clamp(a·inv)) (kernels' order); columns: rint(a / (max/127)) (the converter's);
    a max below 1e-30 (rows) or of 0 (columns) gives zeros."""
    import torch

    d = a.detach()
    amax = d.abs().amax(dim=dim, keepdim=True)
    s = amax / 127.0
    if dim == 1:
        ok = amax >= 1e-30
        q = torch.round(torch.clamp(d * torch.where(ok, 127.0 / amax, torch.zeros_like(amax)), -127, 127))
    else:
        ok = s > 0
        q = torch.clamp(torch.round(d / torch.where(ok, s, torch.ones_like(s))), -127, 127)
    return a + (torch.where(ok, q * s, torch.zeros_like(d)) - d).detach()


class _Sensitivity:
    """Collects Σ |a · ∂z/∂a| (bf16) or Σ |∂z/∂a| · step(a) (int8) per row over the rounded
    tensors a of one forward pass."""

    def __init__(self, arith="bf16"):
        self.arith = arith
        self.tensors, self.weights = [], []

    def __call__(self, a):
        if self.arith == "int8":
            if a.requires_grad:
                self.tensors.append(a)
                self.weights.append(_int8_step(a, 1).expand_as(a))
            return _quant(a, 1)
        if a.requires_grad:
            self.tensors.append(a)
            self.weights.append(a.detach().abs())
        return _round(a)

    def weight(self, w):
        """A GEMM weight as the engine packs it ([in, out]: per output column)."""
        return _quant(w, 0) if self.arith == "int8" else _round(w)

    def per_row(self, z):
        import torch

        if not self.tensors:
            return np.zeros(len(z))
        grads = torch.autograd.grad(z.sum(), self.tensors, allow_unused=True)
        F = torch.zeros(z.shape[0], dtype=torch.float64)
        for w, g in zip(self.weights, grads):
            if g is not None:
                F += (w * g.abs()).reshape(w.shape[0], -1).sum(1).double()
        return F.numpy()


def _dylinear_forward(dl, rb):
    import torch

    from dpn_infer.nn.dylinear import apply_sigma

    def forward(x, z):
        m, c, ws = dl.in_features, dl.out_features, dl.weight_size
        W2 = dl.g2.weight
        b2 = dl.g2.bias if dl.g2.bias is not None else torch.zeros(W2.shape[0])
        l = W2.shape[1]
        h = apply_sigma(dl.sigma, torch.nn.functional.linear(rb(z), rb.weight(dl.g1.weight.t()).t(), dl.g1.bias)) \
            if dl.generator == "mlp" else z
        Bd = W2[ws:].t()                                             # [l, c]
        if dl.form == "full":
            H = dl.heads
            mh, ch = m // H, c // H
            ys = []
            for g in range(H):
                xg = x[:, g * mh:(g + 1) * mh]
                left = torch.cat([xg] + [h[:, k:k + 1] * xg for k in range(l)] + [h], 1)
                A0 = b2[:ws].view(H, mh, ch)[g]
                Ak = W2[:ws].view(H, mh, ch, l)[g]
                A = torch.cat([A0] + [Ak[:, :, k] for k in range(l)] + [Bd[:, g * ch:(g + 1) * ch]], 0)
                ys.append(rb(left) @ rb.weight(A) + b2[ws + g * ch:ws + (g + 1) * ch])
            return torch.cat(ys, 1)
        r = dl.rank
        u = rb(x) @ rb.weight(dl.P)
        left = torch.cat([u] + [h[:, k:k + 1] * u for k in range(l)], 1)
        A = torch.cat([b2[:ws].view(r, r)] + [W2[:ws].view(r, r, l)[:, :, k] for k in range(l)], 0)
        v = rb(left) @ rb.weight(A)
        parts, rows = [v, h], [dl.Q, Bd]
        if dl.w0:
            parts.append(x)
            rows.append(dl.W0)
        return rb(torch.cat(parts, 1)) @ rb.weight(torch.cat(rows, 0)) + b2[ws:]

    return forward


def reference(model, meta, batch, arith="bf16"):
    """(logits float32 [B], F float64 [B]) of ``model`` (rounded parameters) as the engine computes
    the file ``meta`` describes with bf16_gemm=True (arith "bf16") or int8_gemm=True ("int8"); F as
    in the module docstring."""
    import torch

    ref = copy.deepcopy(model).eval()
    sens = _Sensitivity(arith)
    for n in meta["graph"]["nodes"]:
        if n["op"] == "linear":
            mod = ref.get_submodule(n["name"])
            with torch.no_grad():  # the weight as packed (bfloat16 values already: unchanged)
                mod.weight.copy_(sens.weight(mod.weight.t()).t())
            mod.register_forward_pre_hook(lambda mod, args: (sens(args[0]),))
        elif n["op"] == "dylinear":
            mod = ref.get_submodule(n["name"])
            mod.forward = _dylinear_forward(mod, sens)
    with torch.enable_grad():
        z = ref(batch)
        F = sens.per_row(z)
    return z.detach().numpy(), F
