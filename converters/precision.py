"""Reduced-precision storage of an exported model (docs/format.md §3.1-§3.2, opsets 3-4); numpy only.

``apply(metadata, tensors, precision, embeddings)`` stores:

- ``embeddings``: every embedding table (the ``table`` param of ``embedding`` / ``seq_embedding``
  nodes) as float16 or bfloat16 (rounded to nearest even), or int8 with one scale per row, stored as
  float16 (2 bytes a row instead of 4: a dim-16 row takes 18 bytes) where every scale of the table is
  in float16's normal range, else as float32 (``quantize_table``);
- ``precision``: every dense weight matrix (a param of two or more dimensions whose role does not end
  in ``bias``: Linear / DyLinear / FieldDyLinear / attention / generator weights) as bfloat16, or int8
  with one float32 scale per output (per row of an ``[out, in]`` matrix, per column of the roles
  stored ``[in, out]``).

int8 is symmetric (scale = max|x| / 127, q = round(x / scale) in [-127, 127], no zero point) and needs
no calibration data. Biases, LayerNorm and cross vectors stay float32 (they are tiny and enter the
fp32 epilogue). A file with a float16 or bfloat16 tensor records opset 3 at least, one with an int8
tensor opset 4. ``precision="bf16"`` also records ``"arithmetic": "bf16"`` in the metadata, so
the engine runs bfloat16 GEMMs on those weights by default; ``precision="int8"`` records
``"arithmetic": "int8"`` (int8 GEMMs, inputs quantized per row at run time).
"""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

import numpy as np

from .format import HALF_OPSET, INT8_OPSET, SCALE_SUFFIX, to_bfloat16

PRECISIONS = ("fp32", "bf16", "int8")
EMBEDDINGS = ("fp32", "fp16", "bf16", "int8")
_TABLE_OPS = ("embedding", "seq_embedding", "session_embedding")
# Weights stored [in, out] (docs/format.md §3.2): their outputs are columns, so their scales are too.
COLUMN_ROLES = {("dylinear", "P"), ("dylinear", "Q"), ("dylinear", "W0"),
                ("field_dylinear", "feature_weight")}
_FP16_MAX = float(np.finfo(np.float16).max)
# The smallest normal float16: below it a float16 scale loses precision (subnormals), so such a table
# keeps float32 scales.
_FP16_NORMAL_MIN = float(np.finfo(np.float16).tiny)


def check(precision: str, embeddings: str) -> None:
    """A clear ValueError for a precision this converter does not write."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if embeddings not in EMBEDDINGS:
        raise ValueError(f"unknown embeddings precision {embeddings!r}: expected one of "
                         f"{', '.join(EMBEDDINGS)}")


def quantize(x: np.ndarray, per_column: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """(q int8, scale float32) of a float tensor of 2+ dims, symmetric: scale = max|x| / 127 per row
    (the last axis) or per column, q = round(x / scale) to nearest even in [-127, 127]; an all-zero
    row (column) gets scale 0 and q = 0. The scale has the broadcasting shape of docs/format.md §3.2."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim < 2:
        raise ValueError("int8 needs a tensor of 2 or more dimensions")
    if not np.isfinite(x).all():
        raise ValueError("has a non-finite value")
    axis = -2 if per_column else -1
    amax = np.max(np.abs(x), axis=axis, keepdims=True) if x.size else \
        np.zeros(x.shape[:axis] + (1,) + (x.shape[-1:] if per_column else ()), np.float32)
    scale = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(scale > 0, np.rint(x / scale), np.float32(0))
    q = np.clip(q, -127, 127).astype(np.int8)
    # A row so small that max/127 underflows to 0 means zeros (scale 0), as the format says.
    return q, scale


def quantize_table(x: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(q int8, scale) of an embedding table, per row, as ``quantize`` but with float16 scales
    (docs/format.md §3.2) where every nonzero scale lies in float16's normal range: each scale is
    rounded *up* to a float16, so max|x| / scale stays within 127, and q is rounded against that
    float16 scale (the value the engine multiplies by). Else the float32 scales of ``quantize``."""
    q, scale = quantize(x)
    nz = scale[scale > 0]
    if nz.size and (nz.min() < _FP16_NORMAL_MIN or nz.max() > _FP16_MAX):
        return q, scale
    half = scale.astype(np.float16)
    low = half.astype(np.float32) < scale
    half[low] = np.nextafter(half[low], np.float16(np.inf))
    wide = half.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(wide > 0, np.rint(np.asarray(x, np.float32) / wide), np.float32(0))
    return np.clip(q, -127, 127).astype(np.int8), half


def _round(name: str, a: np.ndarray, to: str) -> np.ndarray:
    if to == "bf16":
        return to_bfloat16(a)
    big = np.abs(a) > _FP16_MAX
    if big.any():
        raise ValueError(f"tensor '{name}' has values beyond float16's range (|x| up to "
                         f"{float(np.abs(a).max()):.4g} > {_FP16_MAX:.0f}); use embeddings='bf16'")
    return a.astype(np.float16)


def apply(metadata: dict, tensors: Mapping[str, np.ndarray], precision: str = "fp32",
          embeddings: str = "fp32") -> Tuple[dict, Dict[str, np.ndarray]]:
    """(metadata, tensors) with the chosen tensors rounded or quantized; the inputs are left unchanged.
    An int8 tensor ``T`` is followed by its scales ``T.scale``."""
    check(precision, embeddings)
    want: Dict[str, Tuple[str, str]] = {}  # name -> (precision, scales: "table", "row" or "column")
    for n in metadata["graph"]["nodes"]:
        for role, name in n.get("params", {}).items():
            if n["op"] in _TABLE_OPS and role == "table":
                to = embeddings
            elif tensors[name].ndim >= 2 and not role.endswith("bias"):
                to = precision
            else:
                continue
            if to != "fp32":
                want[name] = (to, "table" if n["op"] in _TABLE_OPS and role == "table" else
                              "column" if (n["op"], role) in COLUMN_ROLES else "row")
    out: Dict[str, np.ndarray] = {}
    for name, a in tensors.items():
        to, scales = want.get(name, ("fp32", "row"))
        if to != "int8":
            out[name] = _round(name, a, to) if to != "fp32" else a
            continue
        sname = name + SCALE_SUFFIX
        if sname in tensors:
            raise ValueError(f"cannot store tensor '{name}' as int8: the file already has a tensor "
                             f"'{sname}' (the name of its scales)")
        try:
            out[name], out[sname] = quantize_table(a) if scales == "table" else quantize(a, scales == "column")
        except ValueError as e:
            raise ValueError(f"tensor '{name}' cannot be stored as int8: {e}") from None
    meta = dict(metadata)
    kinds = {to for to, _ in want.values()}
    if kinds - {"int8"}:
        meta["opset"] = max(meta["opset"], HALF_OPSET)
    if "int8" in kinds:
        meta["opset"] = max(meta["opset"], INT8_OPSET)
    if precision in ("bf16", "int8"):
        # Ask the engine for bfloat16 / int8 GEMMs (docs/format.md §4): the weights are so already.
        meta["arithmetic"] = precision
    return meta, out
