"""dpn_infer.nn model -> ONNX, in two forms (a fallback for users, and the benchmark's peers).

- ``form="paper"``: the module with ``impl="paper"`` (DyLinear materializes W(z) per row, then a batched matmul).
- ``form="kron"``: every DyLinear rewritten with the Kronecker identity (docs/architecture.md,
  "The Kronecker identity"): one GEMM with a static matrix A' over the left operand [1; h] ⊗ x. The
  strongest ONNX peer. A FieldDyLinear becomes one batched GEMM over (field, head) pairs with static
  A'_i per field.

The ONNX graph takes the fields in schema order as inputs named after them and returns logits [B].
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from dpn_infer.nn.dylinear import DyLinear, apply_sigma, set_impl
from dpn_infer.nn.field import FieldDyLinear


class KronDyLinear(nn.Module):
    """Computes exactly what a DyLinear computes, as one static GEMM per head (no per-row weight)."""

    def __init__(self, dy: DyLinear):
        super().__init__()
        self.sigma, self.generator, self.form = dy.sigma, dy.generator, dy.form
        self.g1 = copy.deepcopy(dy.g1) if dy.generator == "mlp" else None
        m, c, ws = dy.in_features, dy.out_features, dy.weight_size
        W2, b2 = dy.g2.weight.detach(), dy.g2.bias.detach()        # [P, l], [P]
        l = W2.shape[1]
        # Rows of A': the static part (k = 0) then one block per hidden unit k.
        cols = torch.cat([b2[:ws, None], W2[:ws]], dim=1).T           # [(l+1), ws]
        if dy.form == "full":
            H = dy.heads
            mh, ch = m // H, c // H
            A = cols.reshape(l + 1, H, mh, ch).permute(1, 0, 2, 3).reshape(H, (l + 1) * mh, ch)
            self.heads, self.mh = H, mh
        else:
            r = dy.rank
            A = cols.reshape(l + 1, r, r).reshape(1, (l + 1) * r, r)
            self.heads, self.mh = 1, r
            self.P = nn.Parameter(dy.P.detach().clone())
            self.Q = nn.Parameter(dy.Q.detach().clone())
            self.W0 = nn.Parameter(dy.W0.detach().clone()) if dy.w0 else None
        self.A = nn.Parameter(A.contiguous())
        self.Wb = nn.Parameter(W2[ws:].T.contiguous())                   # [l, c] dynamic bias
        self.bb = nn.Parameter(b2[ws:].clone())

    def forward(self, x, z):
        h = apply_sigma(self.sigma, self.g1(z)) if self.g1 is not None else z
        B = x.shape[0]
        u = x @ self.P if self.form == "decomp" else x
        one_h = torch.cat([torch.ones_like(h[:, :1]), h], dim=1)            # [B, l+1]
        xh = u.reshape(B, self.heads, 1, self.mh) * one_h[:, None, :, None]  # [B, H, l+1, mh]
        left = xh.reshape(B, self.heads, -1).transpose(0, 1)                # [H, B, (l+1)mh]
        y = torch.bmm(left, self.A).transpose(0, 1).reshape(B, -1)          # [B, c or r]
        if self.form == "decomp":
            y = y @ self.Q
            if self.W0 is not None:
                y = y + x @ self.W0
        return y + h @ self.Wb + self.bb


class KronFieldDyLinear(nn.Module):
    """What a FieldDyLinear computes, as one batched GEMM over (field, head) pairs with static
    A'_i = [A_0; A_1; ...; A_l] per field (docs/architecture.md, "The Kronecker identity"): no per-row,
    per-field weight."""

    def __init__(self, fl: FieldDyLinear):
        super().__init__()
        self.src = copy.deepcopy(fl)           # aggregation, g1, implicit part: as in the module
        self.t1, self.m, self.c, self.H = fl.in_fields, fl.in_features, fl.out_features, fl.heads
        if not fl.dynamic:
            return
        W2, b2 = fl.g2_weight.detach(), fl.g2_bias.detach()              # [G, P, l], [G, P]
        if fl.shared:
            W2, b2 = W2.expand(self.t1, -1, -1), b2.expand(self.t1, -1)
        t1, ws, l, H = self.t1, fl.weight_size, W2.shape[2], fl.heads
        mh, ch = self.m // H, self.c // H
        cols = torch.cat([b2[:, :ws, None], W2[:, :ws]], dim=2).transpose(1, 2)   # [t1, l+1, ws]
        A = cols.reshape(t1, l + 1, H, mh, ch).permute(0, 2, 1, 3, 4).reshape(t1 * H, (l + 1) * mh, ch)
        self.A = nn.Parameter(A.contiguous())
        self.Wb = nn.Parameter(W2[:, ws:].transpose(1, 2).contiguous())         # [t1, l, c]
        self.bb = nn.Parameter(b2[:, ws:].clone())                              # [t1, c]

    def forward(self, x, z):
        fl, B, t1, H = self.src, x.shape[0], self.t1, self.H
        y = None
        if fl.dynamic:
            h = fl.hidden_of(z)
            one_h = torch.cat([torch.ones_like(h[..., :1]), h], dim=2)           # [B, t1, l+1]
            xh = x.reshape(B, t1, H, 1, self.m // H) * one_h[:, :, None, :, None]
            left = xh.reshape(B, t1 * H, -1).transpose(0, 1)                       # [t1*H, B, K]
            y = torch.bmm(left, self.A).transpose(0, 1).reshape(B, t1, self.c)
            y = y + torch.bmm(h.transpose(0, 1), self.Wb).transpose(0, 1) + self.bb
        if fl.implicit:
            imp = torch.einsum("ik,bkm,mc->bic", fl.field_weight, x, fl.feature_weight)
            y = imp + fl.bias if y is None else y + imp
        return y


def kron_form(model: nn.Module) -> nn.Module:
    """A copy of `model` whose DyLinear and FieldDyLinear layers run by the Kronecker identity."""
    out = copy.deepcopy(model).eval()
    for name, mod in list(out.named_modules()):
        for child_name, child in list(mod.named_children()):
            if isinstance(child, DyLinear):
                setattr(mod, child_name, KronDyLinear(child))
            elif isinstance(child, FieldDyLinear):
                setattr(mod, child_name, KronFieldDyLinear(child))
    return out


class _Positional(nn.Module):
    """ONNX export wants positional tensors; the models take a field-name mapping."""

    def __init__(self, model, names):
        super().__init__()
        self.model, self.names = model, list(names)

    def forward(self, *tensors):
        return self.model(dict(zip(self.names, tensors)))


def export_onnx(model: nn.Module, path, example_batch: dict, form: str = "paper",
                opset: int = 17) -> None:
    """Write `model` to ONNX at `path`; `example_batch` gives the input layout (batch axis dynamic)."""
    if form not in ("paper", "kron"):
        raise ValueError(f"form must be 'paper' or 'kron', got {form!r}")
    if form == "kron":
        m = kron_form(model)
    else:                   # pinned: a model set to impl="kron" would otherwise export that form
        m = copy.deepcopy(model).eval()
        set_impl(m, "paper")
    names = list(example_batch)
    args = tuple(torch.as_tensor(example_batch[n]) for n in names)
    with torch.no_grad():
        torch.onnx.export(_Positional(m, names), args, str(path), input_names=names,
                          output_names=["logit"], opset_version=opset, dynamo=False,
                          dynamic_axes={**{n: {0: "batch"} for n in names}, "logit": {0: "batch"}})
