"""Hand-built model.bin files for format and API tests (no torch, no converter involved).

``build`` lays a file out exactly as ``converters/format.py`` does, but lets a test override any
table entry or header field and then (optionally) fix the checksum, so a file can be wrong past the CRC.
``tiny_model`` is a small valid model that uses every opset-1 operator."""
from __future__ import annotations

import copy
import json
import struct
import zlib
from typing import Mapping, Optional

import numpy as np

HEADER = struct.Struct("<8sIIQQQQQQQII")
HEADER_FIELDS = ("magic", "format_version", "byte_order_mark", "file_size", "metadata_offset",
                 "metadata_size", "tensor_table_offset", "tensor_count", "data_offset", "data_size",
                 "flags", "checksum")
CHECKSUM_OFFSET = 76
# byte offset and struct code of every header field
HEADER_POS = {"magic": (0, "8s"), "format_version": (8, "<I"), "byte_order_mark": (12, "<I"),
              "file_size": (16, "<Q"), "metadata_offset": (24, "<Q"), "metadata_size": (32, "<Q"),
              "tensor_table_offset": (40, "<Q"), "tensor_count": (48, "<Q"), "data_offset": (56, "<Q"),
              "data_size": (64, "<Q"), "flags": (72, "<I"), "checksum": (76, "<I")}


def _align(n, a):
    return (n + a - 1) // a * a


def crc(buf) -> int:
    mv = memoryview(buf)
    return zlib.crc32(mv[CHECKSUM_OFFSET + 4:], zlib.crc32(mv[:CHECKSUM_OFFSET])) & 0xFFFFFFFF


def fix_checksum(buf: bytearray) -> bytearray:
    struct.pack_into("<I", buf, CHECKSUM_OFFSET, crc(buf))
    return buf


def header(buf) -> dict:
    return dict(zip(HEADER_FIELDS, HEADER.unpack_from(bytes(buf[:128]), 0)))


def set_header(buf: bytearray, fix=True, **fields) -> bytearray:
    for k, v in fields.items():
        off, code = HEADER_POS[k]
        struct.pack_into(code, buf, off, v)
    if fix and "checksum" not in fields:
        fix_checksum(buf)
    return buf


def build(meta, tensors: Mapping[str, np.ndarray], *, meta_bytes: Optional[bytes] = None,
          entries: Optional[Mapping[str, dict]] = None, extra_entries=(), raw_table: Optional[bytes] = None,
          order=None, fix=True) -> bytearray:
    """Lay out a model.bin like converters/format.encode.

    entries: per-tensor overrides of what the table *records* (keys: name (bytes), name_len, dtype,
      ndim, dims, offset, nbytes); the data bytes still go where the real tensor would.
    extra_entries: additional table entries (dicts with all keys) that have no data of their own.
    raw_table: replaces the whole table.
    """
    entries = entries or {}
    if meta_bytes is None:
        meta_bytes = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    names = list(order) if order is not None else list(tensors)
    table = bytearray()
    blobs = []
    data_len = 0
    for name in names:
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        e = {"name": name.encode("utf-8"), "dtype": 0, "ndim": a.ndim, "dims": list(a.shape),
             "offset": data_len, "nbytes": a.nbytes}
        blobs.append((data_len, a.tobytes()))
        data_len = _align(data_len + a.nbytes, 64)
        ov = dict(entries.get(name, {}))
        if "dims" in ov and "ndim" not in ov:
            ov["ndim"] = len(ov["dims"])
        e.update(ov)
        table += encode_entry(e)
    for e in extra_entries:
        table += encode_entry(e)
    if raw_table is not None:
        table = bytearray(raw_table)
    count = len(names) + len(extra_entries)
    table_off = _align(128 + len(meta_bytes), 8)
    data_off = _align(table_off + len(table), 64)
    size = data_off + data_len
    buf = bytearray(size)
    buf[128:128 + len(meta_bytes)] = meta_bytes
    buf[table_off:table_off + len(table)] = table
    for off, b in blobs:
        buf[data_off + off:data_off + off + len(b)] = b
    HEADER.pack_into(buf, 0, b"DPNINFER", 1, 0x0A0B0C0D, size, 128, len(meta_bytes), table_off, count,
                     data_off, size - data_off, 0, 0)
    if fix:
        fix_checksum(buf)
    return buf


def encode_entry(e: dict) -> bytes:
    name = e["name"]
    dims = list(e["dims"])
    out = struct.pack("<I", e.get("name_len", len(name))) + name
    out += struct.pack("<II", e["dtype"], e.get("ndim", len(dims)))
    out += b"".join(struct.pack("<Q", d & 0xFFFFFFFFFFFFFFFF) for d in dims)
    out += struct.pack("<QQ", e["offset"] & 0xFFFFFFFFFFFFFFFF, e["nbytes"] & 0xFFFFFFFFFFFFFFFF)
    return out


def table_span(buf) -> tuple:
    h = header(buf)
    return h["tensor_table_offset"], h["data_offset"]


# ---------------------------------------------------------------------------------------------
# A tiny valid model using every opset-1 operator.

TINY_FIELDS = [
    {"name": "user", "kind": "sparse", "dim": 3, "vocab": 7, "policy": "hash"},
    {"name": "tags", "kind": "multi_hot", "dim": 2, "vocab": 5, "policy": "oov_bucket",
     "pooling": "mean", "max_len": 4},
    {"name": "item", "kind": "sparse", "dim": 2, "vocab": 4, "policy": "error"},
    {"name": "price", "kind": "dense", "dim": 1},
    {"name": "ctx", "kind": "dense", "dim": 3},
]


def tiny_model(seed: int = 0):
    """(metadata, tensors) of a small valid model.bin that uses every opset-1 operator."""
    rng = np.random.default_rng(seed)

    def r(*shape, s=0.5):
        return (rng.standard_normal(shape) * s).astype(np.float32)

    m1, c1, l1 = 11, 6, 3
    m2, c2, r2, n2 = 6, 4, 2, 5
    tensors = {
        "emb.user": r(7, 3), "emb.tags": r(6, 2), "emb.item": r(4, 2),
        "l0.g1.weight": r(l1, m1), "l0.g1.bias": r(l1),
        "l0.g2.weight": r(m1 * c1 + c1, l1, s=0.3), "l0.g2.bias": r(m1 * c1 + c1, s=0.3),
        "l1.g2.weight": r(r2 * r2 + c2, n2), "l1.g2.bias": r(r2 * r2 + c2),
        "l1.P": r(m2, r2), "l1.Q": r(r2, c2), "l1.W0": r(m2, c2),
        "ln.weight": 1 + r(c2, s=0.2), "ln.bias": r(c2, s=0.2),
        "cross.weight": r(c2), "cross.bias": r(c2),
        "head.weight": r(1, c2, s=1.0), "head.bias": r(1),
    }
    nodes = [
        {"op": "embedding", "name": "input.user", "inputs": [], "output": "e_user",
         "attrs": {"field": "user"}, "params": {"table": "emb.user"}},
        {"op": "embedding", "name": "input.tags", "inputs": [], "output": "e_tags",
         "attrs": {"field": "tags"}, "params": {"table": "emb.tags"}},
        {"op": "embedding", "name": "input.item", "inputs": [], "output": "e_item",
         "attrs": {"field": "item"}, "params": {"table": "emb.item"}},
        {"op": "dense_input", "name": "input.price", "inputs": [], "output": "d_price",
         "attrs": {"field": "price"}, "params": {}},
        {"op": "dense_input", "name": "input.ctx", "inputs": [], "output": "d_ctx",
         "attrs": {"field": "ctx"}, "params": {}},
        {"op": "concat", "name": "x0", "inputs": ["e_user", "e_tags", "e_item", "d_price", "d_ctx"],
         "output": "x0", "attrs": {}, "params": {}},
        {"op": "dylinear", "name": "layers.0", "inputs": ["x0", "x0"], "output": "h1",
         "attrs": {"in": m1, "out": c1, "context": m1, "generator": "mlp", "hidden": l1,
                   "sigma": "relu", "form": "full", "heads": 1, "act": "relu"},
         "params": {"g1_weight": "l0.g1.weight", "g1_bias": "l0.g1.bias",
                    "g2_weight": "l0.g2.weight", "g2_bias": "l0.g2.bias"}},
        {"op": "concat", "name": "ctx1", "inputs": ["e_tags", "d_ctx"], "output": "z1",
         "attrs": {}, "params": {}},
        {"op": "dylinear", "name": "layers.1", "inputs": ["h1", "z1"], "output": "h2",
         "attrs": {"in": m2, "out": c2, "context": n2, "generator": "linear", "hidden": n2,
                   "form": "decomp", "rank": r2, "w0": True, "act": "tanh"},
         "params": {"g2_weight": "l1.g2.weight", "g2_bias": "l1.g2.bias",
                    "P": "l1.P", "Q": "l1.Q", "W0": "l1.W0"}},
        {"op": "layernorm", "name": "norm", "inputs": ["h2"], "output": "h3",
         "attrs": {"eps": 1e-5, "act": "identity"}, "params": {"weight": "ln.weight", "bias": "ln.bias"}},
        {"op": "cross", "name": "cross", "inputs": ["h3", "h3"], "output": "h4",
         "attrs": {}, "params": {"weight": "cross.weight", "bias": "cross.bias"}},
        {"op": "act", "name": "act", "inputs": ["h4"], "output": "h5", "attrs": {"act": "sigmoid"},
         "params": {}},
        {"op": "linear", "name": "head", "inputs": ["h5"], "output": "logit",
         "attrs": {"in": c2, "out": 1, "act": "identity"},
         "params": {"weight": "head.weight", "bias": "head.bias"}},
    ]
    meta = {"producer": "dpn_infer tests", "opset": 1, "model_type": "FeatureDPN",
            "schema": {"fields": copy.deepcopy(TINY_FIELDS)},
            "graph": {"nodes": nodes, "output": "logit"}, "extra": {}}
    return meta, tensors


def tiny_batch(n: int = 9, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    tags = rng.integers(-1, 7, size=(n, 4))          # -1 padding anywhere, ids 5, 6 out of range
    if n:
        tags[0] = -1
    return {
        "user": rng.integers(-10, 20, size=n).astype(np.int64),
        "tags": tags.astype(np.int64),
        "item": rng.integers(0, 4, size=n).astype(np.int64),
        "price": rng.standard_normal(n).astype(np.float32),
        "ctx": rng.standard_normal((n, 3)).astype(np.float32),
    }


def tiny_bytes(seed: int = 0) -> bytearray:
    meta, tensors = tiny_model(seed)
    return build(meta, tensors)
