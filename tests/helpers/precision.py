"""Reduced-precision helpers for tests and the golden scripts: round (or quantize) a torch model's
parameters the way ``save(..., precision=, embeddings=)`` stores its tensors (converters/precision.py),
so the rounded torch model is the exact float32 reference of the reduced-precision file."""
from __future__ import annotations

_TORCH = {"bf16": "bfloat16", "fp16": "float16"}
# torch parameters stored [in, out]: int8 scales per column (converters/precision.COLUMN_ROLES)
_COLUMN_PARAMS = (".P", ".Q", ".W0", ".feature_weight")


def round_params_(model, precision="bf16", embeddings="bf16"):
    """In place: embedding tables to ``embeddings``, weight matrices (2+ dims, not a bias) to
    ``precision``, each rounded to nearest even (or, for int8, quantized and dequantized) and kept as
    float32 values. Exact for a model whose export copies its parameters unchanged (no BatchNorm to
    fold)."""
    import numpy as np
    import torch

    from dpn_infer.converters.format import dequantize
    from dpn_infer.converters.precision import quantize, quantize_table

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embeddings" in name:
                to = embeddings
            elif p.ndim >= 2 and not name.endswith("bias"):
                to = precision
            else:
                continue
            if to == "int8":
                a = p.detach().numpy()
                # tables: float16 scales where they fit (converters/precision.py)
                q, s = quantize_table(a) if "embeddings" in name else \
                    quantize(a, per_column=name.endswith(_COLUMN_PARAMS))
                p.copy_(torch.from_numpy(np.ascontiguousarray(dequantize(q, s))))
            elif to != "fp32":
                p.copy_(p.to(getattr(torch, _TORCH[to])).to(torch.float32))
    return model
