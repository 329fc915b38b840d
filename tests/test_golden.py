"""Golden files (docs/format.md §6): every released format version keeps loading, with the same outputs.

tests/golden/vN/ was written once by tests/golden/make_vN.py and is never regenerated (see the README
there); the SHA-256 below pins the committed bytes so that an accidental regeneration fails here too.
Needs only numpy and the engine (no torch)."""
from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from dpn_infer.engine import load

GOLDEN = Path(__file__).parent / "golden"

SHA256 = {
    "v1": {
        "model.bin": "14139d2f25c7bf5e16ac4a910b5917ad34ec9fe74e9e825cf76eeae108792dfb",
        "batch.npz": "91ef2dea4e270ae8cf26c138777379a1ad52203863c4b49ab914d631780b52ff",
        "expected.npy": "4148884b2e445c9ee1517aea6902f88d2b9ddbd378912344c87d6753aa681935",
        "expected_logits.npy": "8f2e5c91366a9d050623e1bb65c65c82c7e5f69693acf4d37f088b1c7deaf8a5",
    },
    # opset 2 (field- and sequence-based operators) inside format version 1: make_v1_opset2.py
    "v1/opset2-field": {
        "model.bin": "ccea886ad409a7a6f9d6487b49fbe6e1ea30a7681ee4a6c830fc1651009b8390",
        "batch.npz": "fb1a96322a95b1edc92691e8c9d8814e12d53443e41ab0ab701af61025f8af2b",
        "expected.npy": "433e95b336106b0df63df420deb70913611bc4970b50f22e5c89d65aa31bb0cb",
        "expected_logits.npy": "c8c31b7905f29feb90f6df6df0603b2649a5f75181d0747d1cf121e11004070c",
    },
    "v1/opset2-seq": {
        "model.bin": "9ae91ccb2725bfb75d8301c45efafbeaf36f7b949ad4156e52ec244f035a91ce",
        "batch.npz": "8f9b4be1a77545e2242002a515f953b6cbfe7890f1c8255331ca43e04457496c",
        "expected.npy": "637b1325bff069aaa5b4122f6792729d375d880cac14ee91ea996ec2c1527b19",
        "expected_logits.npy": "4df3ce9502060d4edb40db556a01d3688098911ec03b07d27689587033b07f2b",
    },
    # opset 3 (float16 / bfloat16 tensors) inside format version 1: make_v1_opset3.py
    "v1/opset3-bf16": {
        "model.bin": "bd773470a0d79f4287c0008f7d9ef4a35d1f8b39e64c7e188f2b3ded01d6aa91",
        "batch.npz": "91ef2dea4e270ae8cf26c138777379a1ad52203863c4b49ab914d631780b52ff",
        "expected.npy": "51ce659981ca89debdd69e7daf5ad4eb6c18f0085929d99e8e425471d916ffb2",
        "expected_logits.npy": "a66222e23f1d1d293012a271c881a62c8e3f002debcf891d903b15155bcd5bf8",
    },
    "v1/opset3-seq-fp16": {
        "model.bin": "0674fbfd7b9f95be520c1a16d733b6871c3ff615b17d34f9a373b342b18e7d30",
        "batch.npz": "8f9b4be1a77545e2242002a515f953b6cbfe7890f1c8255331ca43e04457496c",
        "expected.npy": "952f29ab8314d1cfc474afca920dbfadb2538b74f9d04870bc31b2f3814fea89",
        "expected_logits.npy": "d70762e276ccae60c5c83cb1ef62b9f7064b490eb99e5916c60fd4914d473688",
    },
    # opset 4 (int8 tensors with float32 scales) inside format version 1: make_v1_opset4.py
    "v1/opset4-int8-emb": {
        "model.bin": "46245a45f370a5608e125642741eb382c89e3d0f6e348b14bbf0c51c3f5b22cc",
        "batch.npz": "8f9b4be1a77545e2242002a515f953b6cbfe7890f1c8255331ca43e04457496c",
        "expected.npy": "8d641f929e0e7952dfe9ab871a6d454964ba6da398a559246a35db3521ea05ef",
        "expected_logits.npy": "91ad325defc133420a225abf540fa568976972f5ad0278d05bf8fba12be8937e",
    },
    "v1/opset4-int8-weights": {
        "model.bin": "8c5c70154ad09b4064d3980c599c67a621c499a1dfb1a2dfaf6044c6205f1ded",
        "batch.npz": "91ef2dea4e270ae8cf26c138777379a1ad52203863c4b49ab914d631780b52ff",
        "expected.npy": "55b5b20d49d96d1ab663e40996a43b8a8b75eaa14c3fb73001bef980f6bf528c",
        "expected_logits.npy": "b5345f6aea990697b0d6289992c19b1ab757f419423aa99774c30fc72532eb99",
    },
    # opset 5: the SE / separable generators and Conv1D (seq_sepconv_pool, conv1d, homo_dpo's
    # context input): make_v1_opset5_gen.py
    "v1/opset5-seq-gen": {
        "model.bin": "142f246453a8abf13f8544efa9fad4e2e9256810d1985b170669885b57b82382",
        "batch.npz": "8f9b4be1a77545e2242002a515f953b6cbfe7890f1c8255331ca43e04457496c",
        "expected.npy": "86b684f37135c5e74f3607c74f7a8872c69adc36f05ecf7511f85d2c6e6f2dca",
        "expected_logits.npy": "b9b155f64b38cdaae8fdd987659d84a351586a48d9616f55b48f6408b649c51b",
    },
    # opset 5 (DIEN's recurrent operators gru, dien_attention, augru): make_v1_opset5.py
    "v1/opset5-dien": {
        "model.bin": "c9b814ff33179f47c0bf1c4c7522cca079802471ad0a06738e77e65c3d61289b",
        "batch.npz": "6ecb810af30539f30f9c46d97a2b37a4976d46560593d7a39bbbbc382a344a42",
        "expected.npy": "4d14d249a7605a19635871bf8c4e2f34e5cc543ecb03d3dc19f9dde4063dfa5f",
        "expected_logits.npy": "b64d9a9385a70413253927f84ceecb51f16c005ccdd6e989985d0bf68cfc1450",
    },
    # opset 5 (timestamps, sessions, KFAtt) inside format version 1: make_v1_opset5_sessions.py
    "v1/opset5-sessions": {
        "model.bin": "68fd77d6ba4e4effa5cc926284d4bd07dd8bcb7db290422be198f6ae1ea91362",
        "batch.npz": "867fdb80c0c7b20532d853399fbb5947f0d59df479d6598818a2d01f7592d6fa",
        "expected.npy": "8b1352eff77dd0244e3ad1b7dc5ac19976b3d816311b1077b5c2e6a698bab309",
        "expected_logits.npy": "ae0ff22b50877cbd1a887f4592565485804a64874475cb7613611620f7b0936a",
    },
    # int8 tables with float16 scales (§3.2), opset 4: make_v1_opset4_f16scales.py
    "v1/opset4-int8-emb-f16scales": {
        "model.bin": "212bc8f58480804603bf9ff51cfc87a40f229ac24ab6240acc368aeb553c7bae",
        "batch.npz": "8f9b4be1a77545e2242002a515f953b6cbfe7890f1c8255331ca43e04457496c",
        "expected.npy": "293e3c248e0f811f2a495d5d37291680934990c20c37d7bc3aa8e435d8472f8c",
        "expected_logits.npy": "8d1f2292ca68f2ca545f1e45c2291ad1e86eb1db5c7f916987757d64ae4b13f8",
    },
}


def _batch(d):
    with np.load(d / "batch.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.mark.parametrize("version", sorted(SHA256))
def test_golden_files_unchanged(version):
    d = GOLDEN / version
    for name, digest in SHA256[version].items():
        assert hashlib.sha256((d / name).read_bytes()).hexdigest() == digest, \
            f"{d / name} changed: golden files are never regenerated (tests/golden/README.md)"


@pytest.mark.parametrize("version", sorted(SHA256))
def test_golden_header(version):
    raw = (GOLDEN / version / "model.bin").read_bytes()
    assert raw[:8] == b"DPNINFER"
    assert struct.unpack_from("<I", raw, 8)[0] == int(version.split("/")[0][1:])
    assert struct.unpack_from("<I", raw, 12)[0] == 0x0A0B0C0D
    assert struct.unpack_from("<Q", raw, 16)[0] == len(raw)
    n = struct.unpack_from("<Q", raw, 32)[0]
    meta = json.loads(raw[128:128 + n])
    opset = re.search(r"opset(\d+)", version)
    assert meta["opset"] == (int(opset.group(1)) if opset else 1)


# Outputs are recorded from the portable reference kernels (DPN_ISA=ref), which must reproduce them to
# rtol 1e-6 / atol 1e-7. The SIMD kernels (FMA, other summation orders) may differ from them by float32
# rounding only: rtol 1e-5 / atol 1e-6 — far below what any misread tensor or changed formula would cause.
# avx512bf16 runs avx512's float32 kernels (its bfloat16 GEMMs only with load(..., bf16_gemm=True)).
TOL = {"ref": (1e-6, 1e-7), "avx2": (1e-5, 1e-6), "avx512": (1e-5, 1e-6), "avx512bf16": (1e-5, 1e-6),
       "avx512amx": (1e-5, 1e-6)}


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("version", sorted(SHA256))
def test_golden_outputs(version, threads):
    """In this process, under whatever ISA the engine picked for this machine."""
    from dpn_infer.engine import cpu_info

    isa = cpu_info()["selected"]
    rtol, atol = TOL[isa]
    d = GOLDEN / version
    model = load(str(d / "model.bin"))
    batch = _batch(d)
    probs = model.predict(batch, threads=threads)
    logits = model.predict(batch, logits=True, threads=threads)
    assert probs.dtype == np.float32 and probs.shape == (len(next(iter(batch.values()))),)
    np.testing.assert_allclose(probs, np.load(d / "expected.npy"), rtol=rtol, atol=atol, err_msg=isa)
    np.testing.assert_allclose(logits, np.load(d / "expected_logits.npy"), rtol=rtol, atol=atol, err_msg=isa)


@pytest.mark.parametrize("version", sorted(SHA256))
def test_golden_outputs_every_isa(version, tmp_path):
    """Each kernel ISA this machine has (DPN_ISA, in a child process) reproduces the recorded outputs."""
    from helpers.isa import available_isas, predict_under_isa

    d = GOLDEN / version
    jobs = [{"id": version, "model": str(d / "model.bin"), "batch": str(d / "batch.npz")}]
    for isa in available_isas():
        selected, res = predict_under_isa(isa, jobs, str(tmp_path))
        assert selected == isa
        logits, probs, logits_t3 = res[version]
        rtol, atol = TOL[isa]
        np.testing.assert_allclose(probs, np.load(d / "expected.npy"), rtol=rtol, atol=atol, err_msg=isa)
        np.testing.assert_allclose(logits, np.load(d / "expected_logits.npy"), rtol=rtol, atol=atol,
                                   err_msg=isa)
        np.testing.assert_allclose(logits_t3, logits, rtol=rtol, atol=atol, err_msg=isa)


def test_golden_v1_schema():
    model = load(str(GOLDEN / "v1" / "model.bin"))
    assert [(f["name"], f["kind"]) for f in model.schema] == [
        ("user", "sparse"), ("item", "sparse"), ("genre", "multi_hot"), ("tags", "multi_hot"),
        ("age", "dense"), ("feat", "dense")]


@pytest.mark.parametrize("version", sorted(SHA256))
def test_golden_rows_one_at_a_time(version):
    """Row i of the golden batch, alone, gives row i of the recorded output."""
    d = GOLDEN / version
    model = load(str(d / "model.bin"))
    batch = _batch(d)
    expected = np.load(d / "expected_logits.npy")
    for i in range(len(expected)):
        got = model.predict({k: v[i:i + 1] for k, v in batch.items()}, logits=True)
        np.testing.assert_allclose(got, expected[i:i + 1], rtol=1e-5, atol=1e-6)
