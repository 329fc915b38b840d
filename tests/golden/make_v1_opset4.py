"""Build tests/golden/v1/opset4-int8-emb/ and v1/opset4-int8-weights/: int8 model.bin files (opset 4,
format version 1), a batch each, and the engine's outputs.

Run by hand, once, when opset 4 is released:  DPN_ISA=ref python tests/golden/make_v1_opset4.py
Never by the tests, and never again: these files pin what int8 tensors and their scales mean
(docs/format.md §3.2, §6). Outputs are recorded with the reference kernels, after the engine has been
checked against the PyTorch model with the same dequantized parameters (tests/helpers/precision.py).

int8-emb: opset2-seq's SeqDPN (make_v1_opset2.py: sparse, oov_bucket and shared-table sequence
fields) with embeddings="int8" (per-row scales), weights float32. int8-weights: v1's FeatureDPN
(make_v1.py: full heads=2 and decomp+W0 dynamic layers, so per-row and per-column weight scales) with
precision="int8", embeddings float32.
"""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [ROOT, os.path.dirname(ROOT)]  # the sibling make_* scripts, tests/helpers

import make_v1  # noqa: E402
import make_v1_opset2  # noqa: E402
import make_v1_opset3  # noqa: E402


def main(argv=None):
    args = make_v1_opset2.parse_args(argv, __doc__)
    make_v1_opset3.write("v1/opset4-int8-emb", make_v1_opset2.build_seq(), make_v1_opset2.batch_seq(),
                         "fp32", "int8", args.force, opset=4, dtype="int8")
    make_v1_opset3.write("v1/opset4-int8-weights", make_v1.build_model(), make_v1.make_batch(), "int8",
                         "fp32", args.force, opset=4, dtype="int8")


if __name__ == "__main__":
    main()
