"""Build tests/golden/v1/opset4-int8-emb-f16scales/: an int8-table model.bin whose table scales are
float16 (opset 4, format version 1, docs/format.md §3.2), a batch, and the engine's outputs.

Run by hand, once, when float16 table scales are released:
    DPN_ISA=ref python tests/golden/make_v1_opset4_f16scales.py
Never by the tests, and never again: the file pins what a float16 scale means. Outputs are recorded
with the reference kernels, after the engine has been checked against the PyTorch model with the same
dequantized parameters (tests/helpers/precision.py).

opset2-seq's SeqDPN (make_v1_opset2.py: sparse, oov_bucket and shared-table sequence fields, so both
embedding and seq_embedding read float16-scaled tables) with embeddings="int8", weights float32 — the
model of v1/opset4-int8-emb, whose scales are float32.
"""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [ROOT, os.path.dirname(ROOT)]  # the sibling make_* scripts, tests/helpers

import make_v1_opset2  # noqa: E402
import make_v1_opset3  # noqa: E402


def main(argv=None):
    from dpn_infer.converters import format as F

    args = make_v1_opset2.parse_args(argv, __doc__)
    name = "v1/opset4-int8-emb-f16scales"
    make_v1_opset3.write(name, make_v1_opset2.build_seq(), make_v1_opset2.batch_seq(), "fp32", "int8",
                         args.force, opset=4, dtype="int8")
    _, tensors = F.read(os.path.join(ROOT, name, "model.bin"))
    scales = {n: a.dtype for n, a in tensors.items() if n.endswith(".scale")}
    assert scales and all(d == "float16" for d in scales.values()), scales


if __name__ == "__main__":
    main()
