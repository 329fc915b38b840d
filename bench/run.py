"""Throughput and latency of dpn_infer against its peers, measured in one run.

    python bench/run.py [--quick] [--json PATH] [--markdown PATH]
    python bench/run.py --request [--quick] [--json PATH] ...   (ranking requests: bench/request.py)
                        [--configs ml1m,criteo,prod,field,feature+field,seq,dien] [--batches 1,16,256,2048]
                        [--threads 1,2] [--runners engine,engine-bf16,engine-int8,torch,ort-paper,ort-kron,
                                             ort-kron-int8,ov-kron,ov-kron-bf16]
                        [--seconds 1.0]

For every (config x batch x threads x runner): samples/s, p50 and p99 latency of one predict call,
and achieved GFLOP/s (the dynamic layers' 2*m*c*(l+1) FLOP per row plus generators and static
layers). It also probes the machine: the FMA peak (dpn_infer's probe when the engine has one, else a
large numpy sgemm) and the read bandwidth over each config's weight working set. Ratios between runners in the
same run are the numbers to quote; absolute times move between runs on shared machines.

Runner engine-bf16 is the engine on the same model saved with precision="bf16", embeddings="bf16"
(docs/format.md §3.1; the file asks for bfloat16 GEMMs: AVX512_BF16 where the CPU has it);
engine-int8 the same model saved with precision="int8", embeddings="int8"
(§3.2: int8 tables gathered as they are; the file asks for int8 GEMMs: AVX512_VNNI where the CPU
has it, §4). The table gives their ratios to the engine's fp32 samples/s
and every file's size.
Peers: PyTorch eager on the dpn_infer.nn module (paper form), ONNX Runtime on its ONNX export
(paper form), and ONNX Runtime on the Kronecker-form export (converters/onnx_export.py). On that same
Kronecker-form export: ort-kron-int8 (onnxruntime.quantization.quantize_dynamic, int8 weights,
activations quantized at run time), ov-kron (OpenVINO, float32 inference precision) and ov-kron-bf16
(OpenVINO's bf16 inference precision hint; skipped where the CPU lacks AVX512_BF16). OpenVINO is
optional (pip install dpn_infer[bench]): without it the ov-* runners are reported as skipped.
Every record also has the bytes of the file its runner loads (model_bytes) and the seconds from that
file to the first score of a one-row batch (load_s).
The paper form materializes a B x m x c weight per layer; runs whose materialized weights would
exceed --paper-mem-gb are reported as skipped instead of run into an out-of-memory kill.
"""
from __future__ import annotations

import argparse
import json
import importlib
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

CONFIGS = {
    # name: (fields, embedding dim, dynamic layer widths, generator hidden l)
    "ml1m": (6, 16, [64, 64], 4),
    "criteo": (39, 16, [400, 400, 400], 4),
    "prod": (96, 16, [1024, 512, 256], 4),
    # Field-based DPO (a dict: see FIELD_* below). MovieLens-1M shape of Table 11: 7 fields x 16,
    # field layers 64-64 (attention aggregation, per-field generators, hidden 4, residual), classifier
    # on the 7 x 64 field outputs; and the parallel combination with the ml1m feature-based layers.
    "field": {"fields": 7, "dim": 16, "field_widths": [64, 64], "l": 4, "att": 16, "feature": []},
    "feature+field": {"fields": 7, "dim": 16, "field_widths": [64, 64], "l": 4, "att": 16,
                      "feature": [64, 64]},
}
RUNNERS = ["engine", "engine-bf16", "engine-int8", "torch", "ort-paper", "ort-kron", "ort-kron-int8",
           "ov-kron", "ov-kron-bf16"]
# Peers on the Kronecker-form ONNX export and the precision they run at (the engine runner each one is
# compared with in the precision table).
KRON_PEERS = {"ort-kron": "engine", "ov-kron": "engine", "ov-kron-bf16": "engine-bf16",
              "ort-kron-int8": "engine-int8"}
# Engine runners: the file each one loads (dpn_infer.save keywords).
ENGINE_FILES = {"engine": {}, "engine-bf16": {"precision": "bf16", "embeddings": "bf16"},
                "engine-int8": {"precision": "int8", "embeddings": "int8"}}
# ort-kron-int8: one weight scale per tensor. Per channel, ORT 1.32 refuses to run the Kronecker GEMM
# (a MatMul on a [1, K, N] initializer): "MatmulInteger : b zero point is not valid".
PER_CHANNEL_INT8 = False
VOCAB = 10000
# Sequence configs (SeqDPN): candidate item + category, profile fields, a history of T items and
# their categories (tables shared with the candidate's), dim each; encoder HomoDPO (kernel k) +
# self-attention, decoder HeteroDPO + target attention, MLP head. History lengths are uniform in
# [0, T] per row, so FLOP counts use the mean length T/2. seq-gen and seq-conv1d are Table 15's
# generator rows at that shape: SE bottleneck (d / ratio) generators over the mean of a separable
# convolution for HomoDPO and HeteroDPO, or a static Conv1D encoder in HomoDPO's place.
_SEQ = {"T": 50, "dim": 16, "cat_vocab": 100, "profile": 4, "kernel": 3, "heads": 2,
        "att_hidden": 36, "hidden": 4, "mlp": [200, 80]}
SEQ_CONFIGS = {
    "seq": _SEQ,
    "seq-gen": dict(_SEQ, homo_generator="sep", hetero_generator="sep", ratio=4),
    "seq-conv1d": dict(_SEQ, encoder=["self_attention", "conv1d"], hetero_generator="sep", ratio=4),
    # DIEN (dpn_infer.nn.dien) at a production shape: the same inputs, GRU extractor + attention +
    # AUGRU over the 32-wide behaviours (hidden 32), head 200-80.
    "dien": {"model": "dien", "T": 50, "dim": 16, "cat_vocab": 100, "profile": 4, "mlp": [200, 80]},
}
_SEQ_ENCODER = ["self_attention", "homo_dpo"]


def build_seq(config, seed=0):
    import torch

    from dpn_infer.nn import Schema, SeqDPN, SequenceField, SparseField

    c = SEQ_CONFIGS[config]
    d, T = c["dim"], c["T"]
    torch.manual_seed(seed)
    fields = [SparseField("item", VOCAB, d), SparseField("cat", c["cat_vocab"], d)]
    fields += [SparseField(f"p{i}", VOCAB, d) for i in range(c["profile"])]
    fields += [SequenceField("hist_item", VOCAB, d, T, table="item", truncate=True),
               SequenceField("hist_cat", c["cat_vocab"], d, T, table="cat", truncate=True)]
    if c.get("model") == "dien":
        from dpn_infer.nn import DIEN

        return DIEN(Schema(fields), ["hist_item", "hist_cat"], ["item", "cat"], layers=c["mlp"]).eval()
    return SeqDPN(Schema(fields), ["hist_item", "hist_cat"], ["item", "cat"],
                  encoder=c.get("encoder", _SEQ_ENCODER), decoder=["target_attention", "hetero_dpo"],
                  heads=c["heads"], kernel_size=c["kernel"], homo_hidden=c["hidden"],
                  att_hidden=c["att_hidden"], hetero_hidden=c["hidden"], layers=c["mlp"],
                  homo_generator=c.get("homo_generator", "mlp"),
                  hetero_generator=c.get("hetero_generator", "mlp"), se_ratio=c.get("ratio", 4)).eval()


def _seq_parts(c):
    """(d, k, homo hidden, hetero hidden, encoder parts) of a sequence config."""
    d = 2 * c["dim"]
    hidden = {g: max(1, d // c.get("ratio", 4)) if c.get(f"{g}_generator", "mlp") != "mlp" else c["hidden"]
              for g in ("homo", "hetero")}
    return d, c["kernel"], hidden["homo"], hidden["hetero"], c.get("encoder", _SEQ_ENCODER)


def _mlp_flops(c, x0):
    mlp, w = 0, x0
    for m in c["mlp"]:
        mlp += 2 * w * m
        w = m
    return mlp + 2 * w


def _mlp_weights(c, x0):
    n, w = 0, x0
    for m in c["mlp"]:
        n += w * m + m
        w = m
    return n + w + 1


def dien_flops_per_row(config):
    """GRU and AUGRU: input and hidden projections (2·d·3d each per step) and ~12d gate FLOP per
    step; attention: Wᵀq and L dot products; the head."""
    c = SEQ_CONFIGS[config]
    d, L = 2 * c["dim"], c["T"] / 2
    rnn = 2 * L * (2 * d * 3 * d + 2 * d * 3 * d + 12 * d)
    att = 2 * d * d + 2 * L * d + 5 * L
    return int(rnn + att + _mlp_flops(c, 2 * d + d + c["profile"] * c["dim"]))


def dien_weight_bytes(config):
    c = SEQ_CONFIGS[config]
    d = 2 * c["dim"]
    return 4 * (2 * (6 * d * d + 6 * d) + d * d + _mlp_weights(c, 2 * d + d + c["profile"] * c["dim"]))


def seq_flops_per_row(config):
    c = SEQ_CONFIGS[config]
    if c.get("model") == "dien":
        return dien_flops_per_row(config)
    d, k, lo, le, enc = _seq_parts(c)
    h, L = c["att_hidden"], c["T"] / 2
    sep = 2 * L * d + 4 * k * d + 2 * d * d                              # seq_sepconv_pool
    attn = 2 * L * d * 3 * d + 4 * L * L * d + 2 * L * d * d           # QKV, scores + AV, output
    homo = 2 * d * lo + 2 * lo * k * d + 2 * L * k * d                  # generator, kernel, conv
    homo += sep if c.get("homo_generator") == "sep" else 0
    conv = 2 * L * k * d * d
    target = 2 * d * h + 2 * L * 2 * d * h + L * (2 * h + 2 * d)        # folded activation unit
    hetero = 2 * d * d * (le + 1) + 2 * d * le + 2 * le * d
    hetero += sep if c.get("hetero_generator") == "sep" else 0
    x0 = 2 * d + d + c["profile"] * c["dim"]
    mlp, w = 0, x0
    for m in c["mlp"]:
        mlp += 2 * w * m
        w = m
    enc_flops = ("homo_dpo" in enc) * homo + ("conv1d" in enc) * conv
    return int(attn + enc_flops + target + hetero + mlp + 2 * w)


def seq_weight_bytes(config):
    c = SEQ_CONFIGS[config]
    if c.get("model") == "dien":
        return dien_weight_bytes(config)
    d, k, lo, le, enc = _seq_parts(c)
    h = c["att_hidden"]
    sep = d * k + d + d * d + d
    n = 4 * d * d + 4 * d + 4 * d * h + 2 * h + 1
    if "homo_dpo" in enc:
        n += d * lo + lo + lo * k * d + k * d + (sep if c.get("homo_generator") == "sep" else 0)
    if "conv1d" in enc:
        n += d * d * k + d
    n += ((le + 1) * d + le) * d + d * le + le + d + (sep if c.get("hetero_generator") == "sep" else 0)
    w = 2 * d + d + c["profile"] * c["dim"]
    for m in c["mlp"]:
        n += w * m + m
        w = m
    return 4 * (n + w + 1)


def build_field(config, seed=0):
    import torch

    from dpn_infer.nn import FieldDPN, FieldLayerSpec, LayerSpec, Schema, SparseField

    c = CONFIGS[config]
    torch.manual_seed(seed)
    schema = Schema([SparseField(f"f{i}", vocab=VOCAB, dim=c["dim"], policy="hash")
                     for i in range(c["fields"])])
    fl = [FieldLayerSpec(w, aggregation="attention", hidden=c["l"], sigma="relu",
                         attention_hidden=c["att"]) for w in c["field_widths"]]
    feat = [LayerSpec(w, dynamic=True, context="x0", hidden=c["l"], sigma="relu") for w in c["feature"]]
    return FieldDPN(schema, fl, feat, combine="parallel" if feat else "stacked", activation="relu",
                    residual=True).eval()


def _field_layers(config):
    """(t, m, c, l, attention hidden) of each field layer."""
    c = CONFIGS[config]
    m, out = c["dim"], []
    for w in c["field_widths"]:
        out.append((c["fields"], m, w, c["l"], c["att"]))
        m = w
    return out


def field_flops_per_row(config):
    c = CONFIGS[config]
    total = 0
    for t, m, w, l, da in _field_layers(config):
        n = c["dim"]                                             # context: the field embeddings
        total += t * (2 * m * w * (l + 1) + 2 * n * l + 2 * l * w)   # per field: Kron GEMM, g1, dyn bias
        total += 2 * t * n * da + 2 * t * da * t + 2 * t * t * n     # attention: u, scores, weighted sum
    x0 = m = c["fields"] * c["dim"]
    for w in c["feature"]:
        total += 2 * m * w * (c["l"] + 1) + 2 * x0 * c["l"] + 2 * c["l"] * w
        m = w
    width = c["fields"] * c["field_widths"][-1] + (m if c["feature"] else 0)
    return total + 2 * width


def field_weight_bytes(config):
    c = CONFIGS[config]
    total = 0
    for t, m, w, l, da in _field_layers(config):
        n = c["dim"]
        total += t * (((l + 1) * m + l) * w + n * l + l + w) + n * da + da + t * da
    x0 = m = c["fields"] * c["dim"]
    for w in c["feature"]:
        total += ((c["l"] + 1) * m + c["l"]) * w + x0 * c["l"] + c["l"] + w
        m = w
    return 4 * (total + c["fields"] * c["field_widths"][-1] + (m if c["feature"] else 0) + 1)


def field_paper_bytes(config, batch):
    worst = 0
    for t, m, w, l, da in _field_layers(config):
        worst = max(worst, batch * t * m * w * 4)
    c = CONFIGS[config]
    m = c["fields"] * c["dim"]
    for w in c["feature"]:
        worst = max(worst, batch * m * w * 4)
        m = w
    return worst


def build(config, seed=0):
    import torch

    if config in SEQ_CONFIGS:
        return build_seq(config, seed)

    from dpn_infer.nn import FeatureDPN, LayerSpec, Schema, SparseField

    if isinstance(CONFIGS[config], dict):
        return build_field(config, seed)
    n_fields, dim, widths, l = CONFIGS[config]
    torch.manual_seed(seed)
    schema = Schema([SparseField(f"f{i}", vocab=VOCAB, dim=dim, policy="hash") for i in range(n_fields)])
    layers = [LayerSpec(w, dynamic=True, context="x0", hidden=l, sigma="relu") for w in widths]
    return FeatureDPN(schema, layers, activation="relu").eval()


def flops_per_row(config):
    if config in SEQ_CONFIGS:
        return seq_flops_per_row(config)
    if isinstance(CONFIGS[config], dict):
        return field_flops_per_row(config)
    n_fields, dim, widths, l = CONFIGS[config]
    x0 = n_fields * dim
    m, total = x0, 0
    for c in widths:
        total += 2 * m * c * (l + 1) + 2 * x0 * l + 2 * l * c    # Kronecker GEMM + generator + dyn bias
        m = c
    return total + 2 * m                                          # classifier


def weight_bytes(config):
    """Bytes of packed weights the engine reads per call (every one of them, even at batch 1)."""
    if config in SEQ_CONFIGS:
        return seq_weight_bytes(config)
    if isinstance(CONFIGS[config], dict):
        return field_weight_bytes(config)
    n_fields, dim, widths, l = CONFIGS[config]
    x0 = n_fields * dim
    m, total = x0, 0
    for c in widths:
        total += ((l + 1) * m + l) * c + x0 * l + l + c   # A' (+ dyn-bias rows), g1, static bias
        m = c
    return 4 * (total + m + 1)


def paper_bytes(config, batch):
    """Bytes the paper form materializes for its largest per-row weight tensor."""
    if SEQ_CONFIGS.get(config, {}).get("model") == "dien":     # no generated weights
        return 0
    if config in SEQ_CONFIGS:                      # HeteroDPO's W_g: [B, 2·dim, 2·dim]
        return batch * (2 * SEQ_CONFIGS[config]["dim"]) ** 2 * 4
    if isinstance(CONFIGS[config], dict):
        return field_paper_bytes(config, batch)
    n_fields, dim, widths, _ = CONFIGS[config]
    m, worst = n_fields * dim, 0
    for c in widths:
        worst = max(worst, batch * m * c * 4)
        m = c
    return worst


def make_batch(config, batch, rng):
    if config in SEQ_CONFIGS:
        c = SEQ_CONFIGS[config]
        T, cv = c["T"], c["cat_vocab"]
        out = {"item": rng.integers(0, VOCAB, batch, dtype=np.int64),
               "cat": rng.integers(0, cv, batch, dtype=np.int64)}
        out.update({f"p{i}": rng.integers(0, VOCAB, batch, dtype=np.int64) for i in range(c["profile"])})
        hist = rng.integers(0, VOCAB, (batch, T), dtype=np.int64)
        lengths = rng.integers(0, T + 1, batch)
        pad = np.arange(T)[None, :] >= lengths[:, None]
        out["hist_item"] = np.where(pad, -1, hist)
        out["hist_cat"] = np.where(pad, -1, hist % cv)
        return out
    n_fields = CONFIGS[config]["fields"] if isinstance(CONFIGS[config], dict) else CONFIGS[config][0]
    return {f"f{i}": rng.integers(0, VOCAB, batch, dtype=np.int64) for i in range(n_fields)}


def _engine_probe(name):
    """The engine's probe `name`: in dpn_infer._testing, or in _engine in builds from before that
    module existed (so an A/B run can probe either build); None without one."""
    for module in ("_testing", "_engine"):
        try:
            mod = importlib.import_module("dpn_infer." + module)
        except ImportError:
            continue
        if hasattr(mod, name):
            return getattr(mod, name)
    return None


def probe_fma_peak(threads):
    """GFLOP/s peak: the engine's FMA-loop probe if it has one, else a large numpy sgemm."""
    probe = _engine_probe("probe_fma_gflops")
    if probe is not None:
        return probe(threads), "engine FMA loop"
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    a @ a
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048 ** 3 / (time.perf_counter() - t0) / 1e9)
    return best, "numpy sgemm 2048^3 (all BLAS threads)"


def probe_read_bandwidth(threads, mbytes):
    """GB/s reading a buffer of `mbytes` MiB: the engine's vector-load probe if it has one."""
    probe = _engine_probe("probe_read_gbps")
    if probe is not None:
        return probe(threads, mbytes)
    a = np.ones(mbytes * 1024 * 1024 // 4, dtype=np.float32)
    a.sum()
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        a.sum()
        best = max(best, a.nbytes / (time.perf_counter() - t0) / 1e9)
    return best


def measure(fn, batch, seconds, min_calls, max_calls, rows=None):
    """rows: the rows one call scores (default: the batch's; a ranking request's batch holds only
    its candidates' fields, bench/request.py)."""
    fn(batch)                                           # warm-up (allocations, lazy init)
    lat = []
    start = time.perf_counter()
    while len(lat) < max_calls and (len(lat) < min_calls or time.perf_counter() - start < seconds):
        t0 = time.perf_counter()
        fn(batch)
        lat.append(time.perf_counter() - t0)
    lat = np.array(lat)
    rows = len(next(iter(batch.values()))) if rows is None else rows
    # Throughput of the best of 3 consecutive windows of calls, like the probes' best-of-5: on a
    # shared VM a neighbour's burst otherwise lowers whichever point it lands on. Every runner is
    # measured the same way; the all-calls mean is kept too, and p50/p99 cover every call.
    windows = np.array_split(lat, min(3, len(lat)))
    return {"samples_per_s": float(max(rows * len(w) / w.sum() for w in windows)),
            "samples_per_s_all": float(rows * len(lat) / lat.sum()),
            "p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
            "calls": int(len(lat))}


class Runners:
    """Writes each runner's file once per config and hands out predict callables, each with the
    seconds its runner took from that file to a first score."""

    def __init__(self, config, tmp, names):
        import torch

        import dpn_infer
        from dpn_infer.converters.onnx_export import export_onnx
        from dpn_infer.nn import set_impl

        self.model = build(config)
        set_impl(self.model, "paper")      # the "torch" peer is the paper form (the exports ignore impl)
        self.names = names
        self.files, self.skipped = {}, {}  # runner -> the file it loads; runner -> why it cannot run
        for name, kw in ENGINE_FILES.items():
            if name in names:
                self.files[name] = Path(tmp) / f"{config}.{name}.bin"
                dpn_infer.save(self.model, self.files[name], **kw)
        example = make_batch(config, 2, np.random.default_rng(1))
        self.first = make_batch(config, 1, np.random.default_rng(2))   # the load time's first score
        for form, users in (("paper", ["ort-paper"]), ("kron", list(KRON_PEERS))):
            users = [u for u in users if u in names]
            if users:
                path = Path(tmp) / f"{config}.{form}.onnx"
                export_onnx(self.model, path, example, form=form)
                self.files.update({u: path for u in users})
        if "ort-kron-int8" in names:
            self.files["ort-kron-int8"] = quantize_int8(self.files["ort-kron-int8"],
                                                        Path(tmp) / f"{config}.kron.int8.onnx")
        for name in names:
            if name.startswith("ov-"):
                why = openvino_missing(name)
                if why:
                    self.skipped[name] = why
        self.torch = torch

    def model_bytes(self, name):
        """Bytes of the file(s) `name` loads (an ONNX file's external data included); None for torch."""
        path = self.files.get(name)
        if path is None:
            return None
        data = Path(str(path) + ".data")
        return path.stat().st_size + (data.stat().st_size if data.exists() else 0)

    def get(self, name, threads):
        """(predict callable, seconds from the file to the first score of a one-row batch)."""
        t0 = time.perf_counter()
        fn = self._open(name, threads)
        fn(self.first)
        return fn, time.perf_counter() - t0

    def _open(self, name, threads):
        if name in ENGINE_FILES:
            import dpn_infer

            engine = dpn_infer.load(self.files[name])
            return lambda b: engine.predict(b, threads=threads)
        if name == "torch":
            torch = self.torch

            def run(b):
                torch.set_num_threads(threads)
                with torch.no_grad():
                    return self.model(b)
            return run
        if name.startswith("ov-"):
            return openvino_predict(self.files[name], threads, bf16=name.endswith("-bf16"))
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(self.files[name]), so, providers=["CPUExecutionProvider"])
        return lambda b: sess.run(None, b)


def quantize_int8(src, dst, per_channel=PER_CHANNEL_INT8):
    """ONNX Runtime's dynamic int8 quantization of the export at `src`, written to `dst`: int8 weights
    (per output channel or per tensor), activations quantized per call; no calibration data."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel)
    return Path(dst)


def openvino_missing(name):
    """Why runner `name` (ov-kron, ov-kron-bf16) cannot run here, or None."""
    try:
        import openvino as ov
    except ImportError:
        return "openvino is not installed (pip install dpn_infer[bench])"
    if name.endswith("-bf16"):
        caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if "BF16" not in caps:
            return f"the CPU has no bfloat16 arithmetic (AVX512_BF16); OpenVINO's CPU capabilities: {' '.join(caps)}"
    return None


def openvino_predict(path, threads, bf16):
    """A predict callable of OpenVINO's CPU plugin on the ONNX file at `path`, like the other runners:
    `threads` inference threads in one stream, not bound to cores (neither the engine's pool nor ONNX
    Runtime's binds them; bound, OpenVINO ran 2-3x slower here whenever another process held one of
    its cores). The LATENCY hint, because each call is one request that must finish before the next
    (THROUGHPUT would split the threads over streams meant for concurrent requests). The precision
    is set both ways: on a CPU with AVX512_BF16 or AMX OpenVINO picks bf16 unless told f32."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {
        "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
        "ENABLE_CPU_PINNING": False, "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32"})
    req = compiled.create_infer_request()
    return lambda b: req.infer(b)


def measure_config(config, runners, batches, threads_list, seconds, min_calls, max_calls,
                   paper_mem_gb, peaks, bw):
    """Records of every (threads x batch x runner) point of one config, measured in this process."""
    records = []
    fpr = flops_per_row(config)
    with tempfile.TemporaryDirectory() as tmp:
        rs = Runners(config, tmp, runners)
        for r, why in rs.skipped.items():
            print(f"{config:<14}{r:<14} skipped: {why}")
        for threads in threads_list:
            fns = {r: rs.get(r, threads) for r in runners if r not in rs.skipped}
            for batch in batches:
                # Same rows for every runner, also across child processes.
                b = make_batch(config, batch, np.random.default_rng(batch))
                for r in runners:
                    rec = {"config": config, "batch": batch, "threads": threads, "runner": r,
                           "flops_per_row": fpr}
                    if rs.model_bytes(r) is not None:
                        rec["model_bytes"] = rs.model_bytes(r)
                    if r in rs.skipped:
                        rec.update(skipped=rs.skipped[r])
                    elif r in ("torch", "ort-paper") and paper_bytes(config, batch) > paper_mem_gb * 2**30:
                        rec.update(skipped=f"paper form would materialize "
                                           f"{paper_bytes(config, batch) / 2**30:.1f} GiB per layer")
                        print(f"{config:<14}{batch:>6}{threads:>4}  {r:<14}{'skipped (memory)':>12}")
                    else:
                        time.sleep(0.05)   # let the previous runner's spinning threads go idle
                        fn, rec["load_s"] = fns[r]
                        rec.update(measure(fn, b, seconds, min_calls, max_calls))
                        rec["gflops"] = rec["samples_per_s"] * fpr / 1e9
                        rec["pct_fma_peak"] = 100 * rec["gflops"] / peaks[threads]
                        # calls/s if every call had to stream all weights at the probed bandwidth
                        read_limit = bw[(config, threads)] * 1e9 / weight_bytes(config) * batch
                        rec["pct_read_limit"] = 100 * rec["samples_per_s"] / read_limit
                        print(f"{config:<14}{batch:>6}{threads:>4}  {r:<14}{rec['samples_per_s']:>12,.0f}"
                              f"{rec['p50_ms']:>10.3f}{rec['p99_ms']:>10.3f}{rec['gflops']:>9.1f}"
                              f"{rec['pct_fma_peak']:>6.1f}%")
                    records.append(rec)
                    sys.stdout.flush()
    return records


def measure_in_child(config, runner, point):
    """measure_config for one runner in a fresh Python process; the child prints its own rows."""
    import pickle
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        job, out = Path(tmp) / "job.pkl", Path(tmp) / "out.pkl"
        job.write_bytes(pickle.dumps((config, [runner], point)))
        subprocess.run([sys.executable, __file__, "--child", str(job), str(out)], check=True)
        return pickle.loads(out.read_bytes())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--request" in argv:  # ranking requests: bench/request.py
        sys.path.insert(0, str(Path(__file__).parent))
        import request

        return request.main([a for a in argv if a != "--request"])
    if argv[:1] == ["--child"]:
        config, runners, point = __import__("pickle").loads(Path(argv[1]).read_bytes())
        Path(argv[2]).write_bytes(__import__("pickle").dumps(measure_config(config, runners, **point)))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short run: fewer calls per point")
    ap.add_argument("--json", help="write the records to this JSON file")
    ap.add_argument("--markdown", help="write the summary table (markdown) to this file")
    ap.add_argument("--configs", default=",".join(list(CONFIGS) + list(SEQ_CONFIGS)))
    ap.add_argument("--batches", default="1,16,256,2048")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--runners", default=",".join(RUNNERS))
    ap.add_argument("--seconds", type=float, default=None, help="time budget per point")
    ap.add_argument("--paper-mem-gb", type=float, default=3.0,
                    help="skip paper-form runs that would materialize more than this per layer")
    ap.add_argument("--in-process", action="store_true",
                    help="measure every runner in this process (default: one child process per runner)")
    args = ap.parse_args(argv)
    configs = args.configs.split(",")
    batches = [int(b) for b in args.batches.split(",")]
    threads_list = [int(t) for t in args.threads.split(",")]
    runners = checked_names(args.runners, RUNNERS, "runner")
    checked_names(args.configs, list(CONFIGS) + list(SEQ_CONFIGS), "config")
    seconds, min_calls, max_calls = call_budget(args)

    machine = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
               "python": platform.python_version(), "date": datetime.now(timezone.utc).isoformat()}
    try:
        import dpn_infer
        if hasattr(dpn_infer, "cpu_info"):
            machine["dpn_cpu_info"] = dpn_infer.cpu_info()
    except Exception:  # noqa: BLE001 - informational only
        pass
    peaks = {}
    for t in threads_list:
        peaks[t], how = probe_fma_peak(t)
        print(f"FMA peak probe ({how}), {t} thread(s): {peaks[t]:.1f} GFLOP/s")
    # Batch 1 must read every weight once per call: the read-bandwidth limit for a config is
    # bandwidth(working set = its weights) / weight bytes calls per second.
    bw = {}
    for config in configs:
        mb = max(1, int(np.ceil(weight_bytes(config) / 2**20)))
        for t in threads_list:
            bw[(config, t)] = probe_read_bandwidth(t, mb)
        print(f"read bandwidth probe, {config} working set {mb} MiB: " +
              ", ".join(f"{bw[(config, t)]:.1f} GB/s ({t} thr)" for t in threads_list))

    header = f"{'config':<14}{'batch':>6}{'thr':>4}  {'runner':<14}{'samples/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'GFLOP/s':>9}{'%peak':>7}"
    print(header)
    point = dict(batches=batches, threads_list=threads_list, seconds=seconds, min_calls=min_calls,
                 max_calls=max_calls, paper_mem_gb=args.paper_mem_gb, peaks=peaks, bw=bw)
    records = []
    for config in configs:
        if args.in_process:
            records += measure_config(config, runners, **point)
        else:
            # One child process per runner: another runtime's thread pool (torch's OpenMP, ONNX
            # Runtime's spinning workers) then cannot take cores from the runner being measured.
            for r in runners:
                records += measure_in_child(config, r, point)
    summary = summarize(records)
    print()
    print(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"machine": machine, "fma_peak_gflops": peaks,
             "read_gb_per_s": {f"{c}/{t}": v for (c, t), v in bw.items()},
             "weight_bytes": {c: weight_bytes(c) for c in configs}, "records": records}, indent=1))
        print(f"wrote {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(summary + "\n")
        print(f"wrote {args.markdown}")


def checked_names(arg, known, what):
    """The comma-separated names of `arg`; exits naming the first one not in `known`."""
    names = arg.split(",")
    for n in names:
        if n not in known:
            sys.exit(f"unknown {what} {n!r}; known: {', '.join(known)}")
    return names


def call_budget(args):
    """(seconds per point, min calls, max calls) from --seconds and --quick."""
    seconds = args.seconds if args.seconds is not None else (0.3 if args.quick else 1.5)
    return (seconds, *((3, 200) if args.quick else (10, 2000)))


def summarize(records):
    """Markdown table: engine samples/s, its ratio to each peer, % of FMA peak and of read limit."""
    by = {(r["config"], r["batch"], r["threads"], r["runner"]): r for r in records}
    peers = [p for p in ("ort-kron", "ort-paper", "torch") if any(k[3] == p for k in by)]
    # the reduced-precision engine runners of the run (engine-bf16, engine-int8)
    reduced = [e for e in ENGINE_FILES if e != "engine" and any(k[3] == e for k in by)]
    extra = peers + reduced
    cells = [f"× {p}" for p in peers] + [f"{e} ÷ engine" for e in reduced] + \
        ["model MiB " + " / ".join(["fp32"] + [e[len("engine-"):] for e in reduced])]
    head = ("| config | batch | threads | engine samples/s | p50 ms | p99 ms | " + " | ".join(cells) +
            " | % FMA peak | % read limit |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (config, batch, threads, runner), r in by.items():
        if runner != "engine" or "samples_per_s" not in r:
            continue
        ratios = []
        for p in extra:
            q = by.get((config, batch, threads, p))
            ok = q and "samples_per_s" in q
            if p in reduced:   # the other way round: the speed-up of the reduced-precision file
                ratios.append(f"{q['samples_per_s'] / r['samples_per_s']:.2f}" if ok else "skipped")
            else:
                ratios.append(f"{r['samples_per_s'] / q['samples_per_s']:.2f}" if ok else "skipped")
        sizes = [(by.get((config, batch, threads, e)) or {}).get("model_bytes", 0) for e in ["engine"] + reduced]
        ratios.append(" / ".join(f"{n / 2**20:.1f}" for n in sizes))
        lines.append(f"| {config} | {batch} | {threads} | {r['samples_per_s']:,.0f} | {r['p50_ms']:.3f} | "
                     f"{r['p99_ms']:.3f} | " + " | ".join(ratios) +
                     f" | {r['pct_fma_peak']:.0f}% | {r['pct_read_limit']:.0f}% |")
    return "\n".join(lines + precision_table(by) + files_table(by))


def precision_table(by):
    """Markdown lines (none unless a run has an int8 or OpenVINO peer): samples/s of each engine
    precision beside the Kronecker-form peers at the same precision, and engine ÷ peer."""
    present = {k[3] for k in by}
    if not present & {"ort-kron-int8", "ov-kron", "ov-kron-bf16"}:
        return []
    order = ["engine", "ort-kron", "ov-kron", "engine-bf16", "ov-kron-bf16", "engine-int8", "ort-kron-int8"]
    cols = [r for r in order if r in present]
    pairs = [(KRON_PEERS[p], p) for p in cols if p in KRON_PEERS and KRON_PEERS[p] in present]
    head = ("| config | batch | threads | " + " | ".join(f"{r} samples/s" for r in cols) + " | " +
            " | ".join(f"{e} ÷ {p}" for e, p in pairs) + " |")
    lines = ["", head, "|" + "---|" * (head.count("|") - 1)]

    def rate(key):
        r = by.get(key) or {}
        return r.get("samples_per_s")
    for config, batch, threads in dict.fromkeys(k[:3] for k in by):
        cells = [f"{v:,.0f}" if v else "skipped" for v in (rate((config, batch, threads, r)) for r in cols)]
        for e, p in pairs:
            a, b = rate((config, batch, threads, e)), rate((config, batch, threads, p))
            cells.append(f"{a / b:.2f}" if a and b else "skipped")
        lines.append(f"| {config} | {batch} | {threads} | " + " | ".join(cells) + " |")
    return lines


def files_table(by):
    """Markdown lines: per config, threads and runner, the bytes of the file it loads and the
    seconds from that file to its first score (none for a run without such records)."""
    rows = {}
    for (config, batch, threads, runner), r in by.items():
        key = (config, threads, runner)
        if ("load_s" in r or "model_bytes" in r) and "load_s" not in rows.get(key, {}):
            rows[key] = r
    if not rows:
        return []
    lines = ["", "| config | threads | runner | model MiB | load s |", "|---|---|---|---|---|"]
    for (config, threads, runner), r in rows.items():
        size = f"{r['model_bytes'] / 2**20:.2f}" if "model_bytes" in r else "(in memory)"
        load = f"{r['load_s']:.3f}" if "load_s" in r else r.get("skipped", "")
        lines.append(f"| {config} | {threads} | {runner} | {size} | {load} |")
    return lines


if __name__ == "__main__":
    main()
