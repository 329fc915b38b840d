"""Reduced-precision helpers for tests and the golden script: round a torch model's parameters the way
``save(..., precision=, embeddings=)`` rounds its tensors (converters/precision.py), so the rounded
torch model is the exact float32 reference of the reduced-precision file."""
from __future__ import annotations

_TORCH = {"bf16": "bfloat16", "fp16": "float16"}


def round_params_(model, precision="bf16", embeddings="bf16"):
    """In place: embedding tables to ``embeddings``, weight matrices (2+ dims, not a bias) to
    ``precision``, each rounded to nearest even and kept as float32 values. Exact for a model whose
    export copies its parameters unchanged (no BatchNorm to fold)."""
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if "embeddings" in name:
                to = embeddings
            elif p.ndim >= 2 and not name.endswith("bias"):
                to = precision
            else:
                continue
            if to != "fp32":
                p.copy_(p.to(getattr(torch, _TORCH[to])).to(torch.float32))
    return model
