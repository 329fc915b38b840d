"""Build tests/golden/v1/opset3-bf16/ and v1/opset3-seq-fp16/: reduced-precision model.bin files
(opset 3, format version 1), a batch each, and the engine's outputs.

Run by hand, once, when opset 3 is released:  DPN_ISA=ref python tests/golden/make_v1_opset3.py
Never by the tests, and never again: these files pin what float16 / bfloat16 tensors mean
(docs/format.md §3.1, §6). Outputs are recorded with the reference kernels, after the engine has been
checked against the PyTorch model with the same rounded parameters (tests/helpers/precision.py).

bf16: v1's FeatureDPN (make_v1.py: full heads=2 and decomp+W0 dynamic layers, LayerNorm) with
precision="bf16", embeddings="bf16". seq-fp16: opset2-seq's SeqDPN (make_v1_opset2.py: self-attention,
HomoDPO, target attention, HeteroDPO, a shared table) with precision="bf16", embeddings="fp16".
"""
from __future__ import annotations

import copy
import os
import struct
import sys

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [ROOT, os.path.dirname(ROOT)]  # the sibling make_* scripts, tests/helpers

import make_v1  # noqa: E402
import make_v1_opset2  # noqa: E402


def write(name, model, batch, precision, embeddings, force, opset=3, dtype="bfloat16"):
    """Save ``model`` with the given precision, check it against torch with the same rounded (or
    dequantized) parameters, and record it as golden ``name``: a file of ``opset`` holding ``dtype``."""
    import torch
    from dpn_infer.converters import format as F
    from dpn_infer.converters import torch_export
    from dpn_infer.engine import load
    from helpers.precision import round_params_

    here = os.path.join(ROOT, name)
    os.makedirs(here, exist_ok=True)
    out_bin = os.path.join(here, "model.bin")
    if os.path.exists(out_bin) and not force:
        sys.exit(f"{out_bin} exists; golden files are never regenerated")
    tmp_bin = out_bin + ".tmp"
    torch_export.save(model, tmp_bin, precision=precision, embeddings=embeddings)
    engine = load(tmp_bin)
    rounded = round_params_(copy.deepcopy(model), precision, embeddings)
    with torch.no_grad():
        ref = rounded(batch).numpy()
        full = model(batch).numpy()
    logits = engine.predict(batch, logits=True)
    probs = engine.predict(batch)
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)
    assert np.ptp(logits) > 1.0, "logits too flat to be a useful golden test"
    assert np.max(np.abs(logits - full)) > 1e-4, "rounding left no trace: not a reduced-precision test"
    meta, tensors = F.read(tmp_bin)
    assert meta["opset"] == opset
    assert {F.dtype_name(a) for a in tensors.values()} >= {dtype, "float32"}
    with open(tmp_bin, "rb") as f:
        raw = f.read()
    assert raw[:8] == b"DPNINFER" and struct.unpack_from("<I", raw, 8)[0] == 1
    make_v1_opset2.save_outputs(name, tmp_bin, batch, probs, logits,
                                **{"max |logit - fp32 model|": float(np.max(np.abs(logits - full)))})


def main(argv=None):
    args = make_v1_opset2.parse_args(argv, __doc__)
    write("v1/opset3-bf16", make_v1.build_model(), make_v1.make_batch(), "bf16", "bf16", args.force)
    write("v1/opset3-seq-fp16", make_v1_opset2.build_seq(), make_v1_opset2.batch_seq(), "bf16", "fp16",
          args.force)


if __name__ == "__main__":
    main()
