"""dpn_infer.nn model -> ONNX, in two forms (the ONNX fallback, docs/onnx.md, and the benchmark's peers).

- ``form="kron"`` (the default, what ``dpn-convert --onnx`` writes): every DyLinear rewritten with the
  Kronecker identity (docs/architecture.md, "The Kronecker identity"): one GEMM with a static matrix A'
  over the left operand [1; h] ⊗ x. The strongest ONNX peer. A FieldDyLinear becomes one batched GEMM
  over (field, head) pairs with static A'_i per field.
- ``form="paper"``: the module with ``impl="paper"`` (DyLinear materializes W(z) per row, then a batched matmul).

The graph (torch.export, ``torch.onnx.export(dynamo=True)``) takes the fields in schema order as inputs
named after them, the padded arrays ``predict`` takes (int64 ids padded with -1, float32 dense), and
returns logits [B] (output ``logit``). Dynamic axes: the batch (``batch``) and every multi-hot /
sequence width (``<field>_len``).

DyJoint is exported in its pre-segmented form: its session segmentation (sort by timestamp, cut at
gaps) is data-dependent, so the graph takes no timestamps field and every sequence field as sessions
already built, int64 ids [B, S, L] at the model's caps (``max_sessions`` x ``session_len`` of its
TimestampField; -1 padded; ``dpn_infer.nn.sessions.segment_sessions`` builds them). ONNX Runtime is
thus handed the segmentation that the engine does itself from [B, T] ids and timestamps.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import os
import warnings

import numpy as np
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


def _varies(f) -> bool:
    """Whether field f's input has a width axis (multi-hot and sequence ids are [B, T])."""
    return f.kind in ("multi_hot", "sequence")


def _most_width(f):
    """The largest width field f accepts (None: any): max_len unless 0 (multi-hot) or truncating."""
    if f.kind == "multi_hot":
        return f.max_len or None
    return None if f.truncate else f.max_len


def sessions_of(model):
    """(S, L): the session caps of a model whose graph takes sessions (DyJoint: module docstring),
    else None."""
    from dpn_infer.nn.dyjoint import DyJoint

    if isinstance(model, DyJoint):
        return model.timestamps.max_sessions, model.timestamps.session_len
    return None


def sample_batch(schema, rows: int = 3, width: int = 3, seed: int = 0, sessions=None) -> dict:
    """A batch in the layout the ONNX graph takes: int64 ids ([B], or [B, T] for multi-hot and
    sequence fields), float32 dense values [B, dim]; ``width`` ids per row, fewer where the field's
    max_len is smaller. With ``sessions`` (S, L) (``sessions_of(model)``): no timestamps fields and
    every sequence field pre-segmented [B, S, L], each session's ids from its front, up to ``width``
    (the layout a DyJoint's graph takes). The export's example input when none is given."""
    rng = np.random.default_rng(seed)
    out = {}
    for f in schema:
        if sessions is not None and f.kind == "timestamps":
            continue
        if sessions is not None and f.kind == "sequence":
            S, L = sessions
            ids = rng.integers(0, f.vocab, (rows, S, L), dtype=np.int64)
            n = rng.integers(0, min(width, L) + 1, (rows, S, 1))
            out[f.name] = np.where(np.arange(L) < n, ids, -1)
        elif f.kind == "dense":
            out[f.name] = rng.standard_normal((rows, f.dim)).astype(np.float32)
        elif _varies(f):
            w = width if _most_width(f) is None else min(width, _most_width(f))
            out[f.name] = rng.integers(0, f.vocab, (rows, w), dtype=np.int64)
        else:
            out[f.name] = rng.integers(0, f.vocab, rows, dtype=np.int64)
    return out


@contextlib.contextmanager
def _quiet_exporter():
    """Silence the two things torch 2.13's exporter emits on every export that are not about the
    model: a FutureWarning from deep-copying torch's own deprecated pytree LeafSpec, and a log line per
    torchvision op it skips when torchvision is not installed. Anything else still shows."""
    log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    category=FutureWarning)
            yield
    finally:
        log.setLevel(level)


def _name_ends(graph, names) -> None:
    """Name the graph's inputs after the fields and its output ``logit``. The exporter's own renaming
    leaves an inner value of the same name in place (a field "cat" met the output of aten.cat, and ONNX
    Runtime refuses the model), so such values are renamed first."""
    import onnx_ir as ir

    wanted = set(names) | {"logit"}
    ends = set(graph.inputs) | set(graph.outputs)
    values = [*graph.inputs, *graph.initializers.values(),
              *(v for node in ir.traversal.RecursiveGraphIterator(graph) for v in node.outputs)]
    taken = {v.name for v in values} | wanted
    for v in values:
        if v.name in wanted and v not in ends:
            k = 1
            while f"{v.name}_{k}" in taken:
                k += 1
            v.name = f"{v.name}_{k}"
            taken.add(v.name)
    for v, name in zip(graph.inputs, names):
        v.name = name
    graph.outputs[0].name = "logit"


def export_onnx(model: nn.Module, path, example_batch: dict = None, form: str = "kron",
                opset: int = None) -> dict:
    """Write `model` (a dpn_infer.nn model) to ONNX at `path` with the torch.export-based exporter.

    `example_batch` (default: ``sample_batch(model.schema)``) is the traced input; its sizes are not
    fixed in the graph, but its layout is (a dense field given as [B] stays [B]). Returns the graph's
    axes: input name -> list of axis names or sizes, output ``logit`` included. Weights over 2 GB go
    to a data file beside `path`."""
    import onnxscript  # noqa: F401  (the exporter translates with it: missing, fail here by name)

    from dpn_infer.nn.schema import Schema

    if form not in ("paper", "kron"):
        raise ValueError(f"form must be 'paper' or 'kron', got {form!r}")
    schema = getattr(model, "schema", None)
    if not isinstance(model, nn.Module) or not isinstance(schema, Schema):
        raise TypeError(f"export_onnx expects a dpn_infer.nn model (one with a schema), "
                        f"got {type(model).__name__}")
    if "logit" in schema.names:
        raise ValueError("export_onnx: a field named 'logit' would take the name of the graph's output")
    sessions = sessions_of(model)
    example = sample_batch(schema, sessions=sessions) if example_batch is None else example_batch
    names = [n for n in schema.names if sessions is None or schema[n].kind != "timestamps"]
    missing = [n for n in names if n not in example]
    if missing:
        raise ValueError(f"export_onnx: example_batch lacks field(s) {missing}")
    # a DyJoint's sequence fields: [B, S, L] sessions, the caps fixed in the graph (module docstring)
    segmented = [n for n in names if sessions is not None and schema[n].kind == "sequence"]
    for n in segmented:
        if np.shape(example[n])[1:] != tuple(sessions):
            raise ValueError(f"export_onnx: field {n!r}: a {type(model).__name__} graph takes sessions "
                             f"[B, {sessions[0]}, {sessions[1]}] (pre-segmented, no timestamps), got "
                             f"example shape {list(np.shape(example[n]))}")
    if form == "kron":
        m = kron_form(model)
    else:                   # pinned: a model set to impl="kron" would otherwise export that form
        m = copy.deepcopy(model).eval()
        set_impl(m, "paper")
    args = tuple(torch.as_tensor(np.asarray(example[n])) for n in names)
    # Dim.AUTO: the exporter keeps each axis symbolic (sizes of 1 too) and records the model's own
    # bounds on it (a width at most max_len); a size it had to fix anyway is refused below.
    auto = torch.export.Dim.AUTO
    shapes = tuple({0: auto, 1: auto} if _varies(schema[n]) and n not in segmented else {0: auto}
                   for n in names)
    try:
        with torch.no_grad(), _quiet_exporter():
            prog = torch.onnx.export(_Positional(m, names).eval(), args, None, opset_version=opset,
                                     dynamo=True, dynamic_shapes=(shapes,), verbose=False, report=False)
    except Exception as e:  # the exporter's errors span torch.export, decomposition and translation
        cause = e           # its own message is a page of next steps: name the error underneath
        while cause.__cause__ is not None:
            cause = cause.__cause__
        first = next((line for line in str(cause).splitlines() if line.strip()), "")
        raise RuntimeError(f"cannot export {type(model).__name__} to ONNX: "
                           f"{type(cause).__name__}: {first}") from e
    _name_ends(prog.model.graph, names)
    inputs = prog.model.graph.inputs
    rename = {}
    for n, v in zip(names, inputs):
        width = _varies(schema[n]) and n not in segmented
        axes = [("batch", "rows")] + ([(f"{n}_len", "ids per row")] if width else [])
        for i, (axis, what) in enumerate(axes):
            d = v.shape[i]
            if isinstance(d, int):
                if what == "ids per row" and _most_width(schema[n]) == d:
                    continue        # max_len 1: the one width there is
                raise ValueError(f"export_onnx: field {n!r}: the exporter fixed its {what} at {d}, so the "
                                 f"graph would refuse any other; export from another example")
            rename.setdefault(d.value, axis)
    prog.rename_axes(rename)
    prog.save(os.fspath(path))
    return {v.name: [d if isinstance(d, int) else d.value for d in v.shape]
            for v in list(inputs) + list(prog.model.graph.outputs)}
