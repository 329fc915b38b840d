"""Build tests/golden/v1/opset5-seq-gen/: an opset-5 model.bin (format version 1) with the SE /
separable-convolution generators and the Conv1D encoder, a batch, and the engine's outputs.

Run by hand, once, when opset 5 is released:  DPN_ISA=ref python tests/golden/make_v1_opset5_gen.py
Never by the tests, and never again: the file pins what seq_sepconv_pool, conv1d and homo_dpo's
context input mean (docs/format.md §5b, §6). Outputs are recorded with the reference kernels, after
the engine has been checked against PyTorch.

The model: opset2-seq's schema and batch (make_v1_opset2.py: two sequence fields, one sharing the
candidate's table, one truncating; empty, full and over-long histories) in a SeqDPN with encoder
self-attention + HomoDPO (separable generator) + Conv1D and decoder target attention + HeteroDPO
(separable generator), Table 15's top rows, with kernel 3 and SE ratio 2.
"""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [ROOT, os.path.dirname(ROOT)]  # the sibling make_* scripts

import make_v1_opset2  # noqa: E402


def build():
    import torch
    from dpn_infer import nn as dnn

    torch.manual_seed(make_v1_opset2.SEED + 5)
    schema = make_v1_opset2.build_seq().schema
    model = dnn.SeqDPN(schema, sequence=["hist_item", "hist_cat"], candidate=["item", "cat"],
                       encoder=["self_attention", "homo_dpo", "conv1d"],
                       decoder=["target_attention", "hetero_dpo"], heads=2, kernel_size=3,
                       homo_generator="sep", hetero_generator="sep", se_ratio=2, att_hidden=6,
                       layers=[8, 5])
    model = make_v1_opset2._randomize(model, make_v1_opset2.SEED + 6)
    with torch.no_grad():
        model.classifier.weight.mul_(6.0)                      # spread the logits
    return model


def main(argv=None):
    args = make_v1_opset2.parse_args(argv, __doc__)
    make_v1_opset2.write("v1/opset5-seq-gen", build(), make_v1_opset2.batch_seq(), args.force, opset=5)


if __name__ == "__main__":
    main()
