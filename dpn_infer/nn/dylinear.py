"""The feature-based dynamic parameterized operator (paper Eqn. 4-5), in plain paper form.

    h = sigma(g1(z))            (generator "mlp")    or   h = z   (generator "linear", HyperDense)
    t = g2(h) in R^P;  b(z) = last c entries of t;  W(z) from the first P - c entries
    full:   y = W(z)^T x + b(z),  W(z) block-diagonal with `heads` blocks (m/H x c/H)
    decomp: y = Q^T phi(z)^T P^T x (+ W0^T x) + b(z),  phi(z) = t[:r*r].view(r, r)

The layout of t is exactly docs/format.md §5 `dylinear`. W(z) is materialized per row: this module
is the numeric reference, not the fast path.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .checks import positive_int

SIGMAS = ("identity", "sigmoid", "softmax", "relu")
GENERATORS = ("mlp", "linear")
FORMS = ("full", "decomp")


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


class DyLinear(nn.Module):
    """Dynamic linear layer y = W(z)^T x + b(z), weights generated from the context z.

    Parameters: ``g1`` (``nn.Linear(n, l)``, generator "mlp" only), ``g2`` (``nn.Linear(l, P)``, with
    l = n for "linear"), and for ``form="decomp"``: ``P`` [m, r], ``Q`` [r, c], ``W0`` [m, c] (w0 only).
    For generator "linear" the ``hidden`` argument is ignored (l = n) and so is ``sigma``.
    """

    def __init__(self, in_features: int, out_features: int, context_features: int, hidden: int = 4,
                 sigma: str = "relu", generator: str = "mlp", form: str = "full", heads: int = 1,
                 rank: int = None, w0: bool = False):
        super().__init__()
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

    def generate(self, z: torch.Tensor):
        """(weight part [B, P - c], dynamic bias [B, c]) of t = g2(h(z))."""
        h = apply_sigma(self.sigma, self.g1(z)) if self.generator == "mlp" else z
        t = self.g2(h)
        return t[:, :self.weight_size], t[:, self.weight_size:]

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        m, c = self.in_features, self.out_features
        if x.dim() != 2 or x.shape[1] != m:
            raise ValueError(f"DyLinear: x must be [B, {m}], got {list(x.shape)}")
        if z.dim() != 2 or z.shape[1] != self.context_features or z.shape[0] != x.shape[0]:
            raise ValueError(f"DyLinear: z must be [{x.shape[0]}, {self.context_features}], "
                             f"got {list(z.shape)}")
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
