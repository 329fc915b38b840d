"""Writes the data the C++ tests, the C ABI test, the fuzzers' seed corpus and the example use.

    python cpp/tests/make_data.py OUTDIR

Everything is derived from the Python side, so the C++ tests check the engine against it:
  tiny_a.bin, tiny_b.bin    two valid models with the same schema (tests/helpers/files.tiny_model 0, 1)
  tiny.batch                a batch for them (helpers.files.tiny_batch; every field kind, padding, OOV ids)
  tiny_a.logits, tiny_b.logits   float32 logits from tests/helpers/specref.py (the numpy spec
                            interpreter of docs/format.md, float64 then rounded)
  golden.bin, golden.batch, golden.prob, golden.logits   tests/golden/v1 (outputs frozen at release)
  golden_field.*, golden_seq.*   the same for tests/golden/v1/opset2-field and v1/opset2-seq (opset 2)
  golden_bf16.*, golden_seq_fp16.*   the same for v1/opset3-bf16 and v1/opset3-seq-fp16 (opset 3:
                            bfloat16 weights, bfloat16 / float16 embedding tables)
  golden_int8_emb.*, golden_int8_w.*   the same for v1/opset4-int8-emb and v1/opset4-int8-weights
                            (opset 4: int8 tables, int8 weights with their float32 scales)
  golden_seq_gen.*          the same for v1/opset5-seq-gen (opset 5: separable generators, Conv1D)
  golden_dien.*             the same for v1/opset5-dien (opset 5: gru, dien_attention, augru)
  format/NAME.EXPECT.bin    the corrupted and edge-case files of tests/test_format.py, EXPECT one of
                            error | ok | ok_or_error
Batch files (little-endian): b"DPNB", u32 field count; per field: u32 name length, name (UTF-8),
u32 type (0 = int64 ids, 1 = float32 values), i64 rows, i64 cols, rows*cols values.
Output files (.logits, .prob): raw float32.
Needs numpy and pytest (tests/test_format.py imports it); no torch.
"""
from __future__ import annotations

import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from helpers import files as HF  # noqa: E402
from helpers import specref  # noqa: E402


def write_batch(path, schema_fields, batch):
    with open(path, "wb") as f:
        f.write(b"DPNB" + struct.pack("<I", len(schema_fields)))
        for fd in schema_fields:
            name = fd["name"]
            a = np.asarray(batch[name])
            ids = fd["kind"] != "dense"
            a = np.ascontiguousarray(a, dtype="<i8" if ids else "<f4")
            rows = a.shape[0]
            cols = 1 if a.ndim == 1 else a.shape[1]
            nb = name.encode("utf-8")
            f.write(struct.pack("<I", len(nb)) + nb + struct.pack("<Iqq", 0 if ids else 1, rows, cols))
            f.write(a.tobytes())


def write_f32(path, a):
    np.ascontiguousarray(a, dtype="<f4").tofile(path)


def main(out):
    os.makedirs(out, exist_ok=True)
    batch = HF.tiny_batch(37, seed=1)
    # policy "error" field 'item' is in range in tiny_batch; specref agrees with the engine's OOV rules.
    for tag, seed in (("a", 0), ("b", 1)):
        meta, tensors = HF.tiny_model(seed)
        with open(os.path.join(out, f"tiny_{tag}.bin"), "wb") as f:
            f.write(HF.build(meta, tensors))
        write_f32(os.path.join(out, f"tiny_{tag}.logits"), specref.run(meta, tensors, batch, logits=True))
    write_batch(os.path.join(out, "tiny.batch"), HF.TINY_FIELDS, batch)

    import json
    for version, tag in (("v1", "golden"), ("v1/opset2-field", "golden_field"),
                         ("v1/opset2-seq", "golden_seq"), ("v1/opset3-bf16", "golden_bf16"),
                         ("v1/opset3-seq-fp16", "golden_seq_fp16"), ("v1/opset4-int8-emb", "golden_int8_emb"),
                         ("v1/opset4-int8-weights", "golden_int8_w"), ("v1/opset5-seq-gen", "golden_seq_gen"),
                         ("v1/opset5-dien", "golden_dien")):
        gold = os.path.join(ROOT, "tests", "golden", version)
        shutil.copyfile(os.path.join(gold, "model.bin"), os.path.join(out, f"{tag}.bin"))
        raw = open(os.path.join(gold, "model.bin"), "rb").read()
        h = HF.header(raw)
        meta = json.loads(raw[h["metadata_offset"]:h["metadata_offset"] + h["metadata_size"]])
        gb = dict(np.load(os.path.join(gold, "batch.npz")))
        write_batch(os.path.join(out, f"{tag}.batch"), meta["schema"]["fields"], gb)
        write_f32(os.path.join(out, f"{tag}.prob"), np.load(os.path.join(gold, "expected.npy")))
        write_f32(os.path.join(out, f"{tag}.logits"), np.load(os.path.join(gold, "expected_logits.npy")))

    import test_format  # the catalogue of corrupted files; one source of truth for both suites
    fmt = os.path.join(out, "format")
    os.makedirs(fmt, exist_ok=True)
    for name, (buf, expect, _rx) in test_format._CASES.items():
        with open(os.path.join(fmt, f"{name}.{expect}.bin"), "wb") as f:
            f.write(bytes(buf))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
