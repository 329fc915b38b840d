"""The feature-based dynamic parameterized operator (paper Eqn. 4-5).

    h = sigma(g1(z))            (generator "mlp")    or   h = z   (generator "linear", HyperDense)
    t = g2(h) in R^P;  b(z) = last c entries of t;  W(z) from the first P - c entries
    full:   y = W(z)^T x + b(z),  W(z) block-diagonal with `heads` blocks (m/H x c/H)
    decomp: y = Q^T phi(z)^T P^T x (+ W0^T x) + b(z),  phi(z) = t[:r*r].view(r, r)

The layout of t is exactly docs/format.md §5 `dylinear`.

Two ways to compute the same thing (``impl``, not part of the config or the state_dict):

- ``"kron"``: the Kronecker identity (docs/architecture.md, "The Kronecker identity"):
  W(z) is linear in h, so y = ([1; h] ⊗ x) A' with A' = [A_0; A_1; ...; A_l] cut from g2 —
  one GEMM per head, differentiable, and no per-row weight: the largest intermediate is the
  left operand, (l+1)·m floats per row instead of the m·c of W(z) (for HyperDense, l = n: the
  same FLOP either way, and the operand is the larger one when n + 1 > c).
- ``"paper"``: W(z) materialized per row, then applied: the operator exactly as written.
- ``"auto"`` (default): "kron" in train mode, where autograd would also keep every row's W(z) for
  the backward pass; "paper" in eval mode, so inference gives bit-for-bit the logits earlier
  releases gave (tests/golden/checkpoints records them).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .checks import positive_int

SIGMAS = ("identity", "sigmoid", "softmax", "relu")
GENERATORS = ("mlp", "linear")
FORMS = ("full", "decomp")
IMPLS = ("auto", "kron", "paper")


def apply_sigma(sigma: str, x: torch.Tensor) -> torch.Tensor:
    if sigma == "identity":
        return x
    if sigma == "sigmoid":
        return torch.sigmoid(x)
    if sigma == "softmax":
        return torch.softmax(x, dim=-1)
    if sigma == "relu":
        return torch.relu(x)
    raise ValueError(f"unknown sigma {sigma!r} (expected one of {SIGMAS})")


def kron_matmul(x: torch.Tensor, h: torch.Tensor, w: torch.Tensor, a0: torch.Tensor) -> torch.Tensor:
    """Row r of group g: x_r (A0_g + sum_k h_rk A_gk), as ([1; h_r] ⊗ x_r) @ [A0_g; A_g1; ...; A_gl].

    x [..., R, mh], h [..., R, l] (leading dims broadcast against x's), w [..., mh, ch, l] (A_gk =
    w[g, :, :, k], the layout of g2's weight rows), a0 [..., mh, ch] -> [..., R, ch]. Costs what
    materializing costs in FLOP; A' is rebuilt per call (a copy of the generator's weight, so
    gradients flow to g2) and never depends on the batch.
    """
    one_h = torch.cat([torch.ones_like(h[..., :1]), h], dim=-1)                     # [..., R, l+1]
    left = (one_h.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)                      # [..., R, (l+1)mh]
    A = torch.cat([a0.unsqueeze(-3), w.movedim(-1, -3)], dim=-3).flatten(-3, -2)    # [..., (l+1)mh, ch]
    return left @ A


class ImplChoice:
    """The ``impl`` attribute ("auto" | "kron" | "paper") of the modules that can compute either way."""

    @property
    def impl(self) -> str:
        return self._impl

    @impl.setter
    def impl(self, value: str) -> None:
        if value not in IMPLS:
            raise ValueError(f"{type(self).__name__}: impl must be one of {IMPLS}, got {value!r}")
        self._impl = value

    def uses_kron(self) -> bool:
        return self._impl == "kron" or (self._impl == "auto" and self.training)


def set_impl(model: nn.Module, impl: str) -> int:
    """Set ``impl`` ("auto", "kron" or "paper") on every DyLinear / FieldDyLinear in ``model``
    (HeteroDPO's included); returns how many were set. Outputs and gradients agree to float rounding."""
    if impl not in IMPLS:
        raise ValueError(f"set_impl: impl must be one of {IMPLS}, got {impl!r}")
    n = 0
    for mod in model.modules():
        if isinstance(mod, ImplChoice):
            mod.impl = impl
            n += 1
    return n


class DyLinear(ImplChoice, nn.Module):
    """Dynamic linear layer y = W(z)^T x + b(z), weights generated from the context z.

    Parameters: ``g1`` (``nn.Linear(n, l)``, generator "mlp" only), ``g2`` (``nn.Linear(l, P)``, with
    l = n for "linear"), and for ``form="decomp"``: ``P`` [m, r], ``Q`` [r, c], ``W0`` [m, c] (w0 only).
    For generator "linear" the ``hidden`` argument is ignored (l = n) and so is ``sigma``.
    ``impl`` chooses how forward computes (module docstring); it is not saved with the model.
    """

    def __init__(self, in_features: int, out_features: int, context_features: int, hidden: int = 4,
                 sigma: str = "relu", generator: str = "mlp", form: str = "full", heads: int = 1,
                 rank: int = None, w0: bool = False, impl: str = "auto"):
        super().__init__()
        self.impl = impl
        positive_int("DyLinear", "in_features", in_features)
        positive_int("DyLinear", "out_features", out_features)
        positive_int("DyLinear", "context_features", context_features)
        if generator not in GENERATORS:
            raise ValueError(f"DyLinear: generator must be one of {GENERATORS}, got {generator!r}")
        if sigma not in SIGMAS:
            raise ValueError(f"DyLinear: sigma must be one of {SIGMAS}, got {sigma!r}")
        if form not in FORMS:
            raise ValueError(f"DyLinear: form must be one of {FORMS}, got {form!r}")
        if generator == "mlp":
            positive_int("DyLinear", "hidden", hidden)
        else:
            hidden = context_features
            sigma = "identity"
        positive_int("DyLinear", "heads", heads)
        m, c = in_features, out_features
        if form == "full":
            if m % heads or c % heads:
                raise ValueError(f"DyLinear: heads={heads} must divide in_features={m} and "
                                 f"out_features={c}")
            if rank is not None or w0:
                raise ValueError("DyLinear: rank and w0 apply to form='decomp' only")
            wsize = heads * (m // heads) * (c // heads)
            fan = m // heads
        else:
            if rank is None:
                raise ValueError("DyLinear: form='decomp' needs rank")
            positive_int("DyLinear", "rank", rank)
            if heads != 1:
                raise ValueError("DyLinear: heads applies to form='full' only")
            wsize = rank * rank
            fan = rank
        self.in_features, self.out_features, self.context_features = m, c, context_features
        self.hidden, self.sigma, self.generator, self.form = hidden, sigma, generator, form
        self.heads, self.rank, self.w0 = heads, rank, bool(w0)
        self.weight_size = wsize
        self.generated_size = wsize + c     # P

        if generator == "mlp":
            self.g1 = nn.Linear(context_features, hidden)
        self.g2 = nn.Linear(hidden, wsize + c)
        with torch.no_grad():
            k = 1.0 / math.sqrt(fan)
            # static part of W (g2 bias) ~ U(-k, k); dynamic part smaller so outputs stay O(1)
            self.g2.bias[:wsize].uniform_(-k, k)
            self.g2.bias[wsize:].zero_()
            self.g2.weight[:wsize].normal_(0.0, 0.5 * k / math.sqrt(hidden))
            self.g2.weight[wsize:].normal_(0.0, 0.01)
        if form == "decomp":
            self.P = nn.Parameter(torch.randn(m, rank) / math.sqrt(m))
            self.Q = nn.Parameter(torch.randn(rank, c) / math.sqrt(rank))
            if self.w0:
                self.W0 = nn.Parameter(torch.empty(m, c).uniform_(-1 / math.sqrt(m), 1 / math.sqrt(m)))

    def extra_repr(self) -> str:
        s = (f"in={self.in_features}, out={self.out_features}, context={self.context_features}, "
             f"generator={self.generator}, hidden={self.hidden}, sigma={self.sigma}, form={self.form}")
        return s + (f", heads={self.heads}" if self.form == "full" else f", rank={self.rank}, w0={self.w0}")

    def config(self) -> dict:
        return {"in_features": self.in_features, "out_features": self.out_features,
                "context_features": self.context_features, "hidden": self.hidden,
                "sigma": self.sigma, "generator": self.generator, "form": self.form,
                "heads": self.heads, "rank": self.rank, "w0": self.w0}

    def hidden_of(self, z: torch.Tensor) -> torch.Tensor:
        """h [B, l]: what g2 reads."""
        return apply_sigma(self.sigma, self.g1(z)) if self.generator == "mlp" else z

    def generate(self, z: torch.Tensor):
        """(weight part [B, P - c], dynamic bias [B, c]) of t = g2(h(z))."""
        t = self.g2(self.hidden_of(z))
        return t[:, :self.weight_size], t[:, self.weight_size:]

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        m, c = self.in_features, self.out_features
        if x.dim() != 2 or x.shape[1] != m:
            raise ValueError(f"DyLinear: x must be [B, {m}], got {list(x.shape)}")
        if z.dim() != 2 or z.shape[1] != self.context_features or z.shape[0] != x.shape[0]:
            raise ValueError(f"DyLinear: z must be [{x.shape[0]}, {self.context_features}], "
                             f"got {list(z.shape)}")
        if self.uses_kron():
            return self._forward_kron(x, z)
        wt, b = self.generate(z)
        B = x.shape[0]
        if self.form == "full":
            H = self.heads
            W = wt.view(B, H, m // H, c // H)                      # W_g[i, j] per row
            y = torch.einsum("bhi,bhij->bhj", x.view(B, H, m // H), W).reshape(B, c)
        else:
            r = self.rank
            phi = wt.view(B, r, r)
            y = torch.einsum("br,brs->bs", x @ self.P, phi) @ self.Q
            if self.w0:
                y = y + x @ self.W0
        return y + b

    def _forward_kron(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        m, c, ws, B = self.in_features, self.out_features, self.weight_size, x.shape[0]
        h = self.hidden_of(z)
        W2, b2 = self.g2.weight, self.g2.bias
        l = W2.shape[1]
        b = nn.functional.linear(h, W2[ws:], b2[ws:])                   # the dynamic bias
        if self.form == "full":
            H = self.heads
            mh, ch = m // H, c // H
            y = kron_matmul(x.view(B, H, mh).transpose(0, 1), h,
                            W2[:ws].view(H, mh, ch, l), b2[:ws].view(H, mh, ch))   # [H, B, ch]
            return y.transpose(0, 1).reshape(B, c) + b
        r = self.rank                                # phi(z) between the static P and Q
        y = kron_matmul(x @ self.P, h, W2[:ws].view(r, r, l), b2[:ws].view(r, r)) @ self.Q
        if self.w0:
            y = y + x @ self.W0
        return y + b
