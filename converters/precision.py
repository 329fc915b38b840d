"""Reduced-precision storage of an exported model (docs/format.md §3, opset 3); numpy only.

``apply(metadata, tensors, precision, embeddings)`` rounds, to nearest even:

- ``embeddings``: every embedding table (the ``table`` param of ``embedding`` / ``seq_embedding``
  nodes) to float16 or bfloat16;
- ``precision``: every dense weight matrix (a param of two or more dimensions whose role does not end
  in ``bias``: Linear / DyLinear / FieldDyLinear / attention / generator weights) to bfloat16.

Biases, LayerNorm and cross vectors stay float32 (they are tiny and enter the fp32 epilogue). A file
with a float16 or bfloat16 tensor records opset 3 at least.
"""
from __future__ import annotations

from typing import Dict, Mapping, Tuple

import numpy as np

from .format import HALF_OPSET, to_bfloat16

PRECISIONS = ("fp32", "bf16")
EMBEDDINGS = ("fp32", "fp16", "bf16")
_TABLE_OPS = ("embedding", "seq_embedding")
_FP16_MAX = float(np.finfo(np.float16).max)


def check(precision: str, embeddings: str) -> None:
    """A clear ValueError for a precision this converter does not write."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)} "
                         f"(int8 is not supported yet)")
    if embeddings not in EMBEDDINGS:
        raise ValueError(f"unknown embeddings precision {embeddings!r}: expected one of "
                         f"{', '.join(EMBEDDINGS)} (int8 is not supported yet)")


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
    """(metadata, tensors) with the chosen tensors rounded; the inputs are left unchanged."""
    check(precision, embeddings)
    want: Dict[str, str] = {}
    for n in metadata["graph"]["nodes"]:
        for role, name in n.get("params", {}).items():
            if n["op"] in _TABLE_OPS and role == "table":
                to = embeddings
            elif tensors[name].ndim >= 2 and not role.endswith("bias"):
                to = precision
            else:
                continue
            if to != "fp32":
                want[name] = to
    out = {name: (_round(name, a, want[name]) if name in want else a) for name, a in tensors.items()}
    meta = dict(metadata)
    if want:
        meta["opset"] = max(meta["opset"], HALF_OPSET)
    return meta, out
