"""Build tests/golden/v1/opset5-sessions/: a DyJoint model.bin (opset 5, format version 1), a batch
and the engine's outputs.

Run by hand, once, when opset 5 is released:  DPN_ISA=ref python tests/golden/make_v1_opset5_sessions.py
Never by the tests, and never again: the files pin what the timestamps field, the sessions and the
session operators mean (docs/format.md §4.1, §4.4, §5d, §6). Outputs are recorded with the
reference kernels after the engine has been checked against the PyTorch model.

The model: two behaviour fields (one sharing the candidate's table) timed by a timestamps field
(gap 30 s, 3 sessions x 4 behaviours), encoder self-attention (2 heads) + HomoDPO with the SE
generator, residual, decoder KFAtt-freq + HeteroDPO, an attention field layer, a dynamic and a
static feature layer, a 3-d dense field. The batch: unsorted timestamps, gaps of exactly 30 s, an
empty history, rows with more sessions than kept (tests/helpers/dyjoint.py).
"""
from __future__ import annotations

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [ROOT, os.path.dirname(ROOT)]  # the sibling make_* scripts, tests/helpers

import make_v1_opset2  # noqa: E402

SPEC = {"seed": 7, "S": 3, "L": 4, "gap": 30, "dim": 4, "two_seqs": True, "heads": 2,
        "encoder": ["self_attention", "homo_dpo"], "residual": True, "decoder": ["kfatt", "hetero_dpo"],
        "mode": "freq", "gen": "se", "kernel_size": 3,
        "field_layers": [{"out": 4, "aggregation": "attention", "attention_hidden": 4}],
        "layers": [{"out": 8, "dynamic": True}, 5], "interest_dim": None, "dense": 3, "T": 20,
        "pad": 0.3, "shuffle": True, "B": 12}


def main(argv=None):
    args = make_v1_opset2.parse_args(argv, __doc__)
    from dpn_infer.converters import format as F
    from dpn_infer.converters import torch_export
    from dpn_infer.engine import load
    from helpers import dyjoint as DJ

    name = "v1/opset5-sessions"
    here = os.path.join(ROOT, name)
    os.makedirs(here, exist_ok=True)
    out_bin = os.path.join(here, "model.bin")
    if os.path.exists(out_bin) and not args.force:
        sys.exit(f"{out_bin} exists; golden files are never regenerated")
    import torch

    model, batch = DJ.build(SPEC), DJ.make_batch(SPEC, SPEC["B"], SPEC["seed"] + 1)
    with torch.no_grad():       # a spread of logits, so that any change shows
        model.classifier.weight.mul_(20.0)
    tmp_bin = out_bin + ".tmp"
    torch_export.save(model, tmp_bin)
    engine = load(tmp_bin)
    logits, probs = engine.predict(batch, logits=True), engine.predict(batch)
    np.testing.assert_allclose(logits, DJ.reference(model, batch), rtol=1e-4, atol=1e-5)
    assert np.ptp(logits) > 0.5, "logits too flat to be a useful golden test"
    assert F.read(tmp_bin)[0]["opset"] == 5
    make_v1_opset2.save_outputs(name, tmp_bin, batch, probs, logits)


if __name__ == "__main__":
    main()
