"""Corrupted model.bin files: the engine refuses each one with ModelFormatError and never crashes.

Every load runs in a child process (helpers/isolated.py), so a segfault or abort in the engine fails
the case that caused it instead of killing the test session. Files are built by helpers/files.py
(the same layout as converters/format.py, with any field overridable) so that most of them are wrong
*past* the checksum; docs/format.md is the contract."""
from __future__ import annotations

import copy
import json
import os
import random
import re
import tempfile

import numpy as np
import pytest

from helpers import files as HF
from helpers.isolated import run_cases

MiB = 1 << 20
U64 = (1 << 64) - 1


def _tiny():
    return HF.tiny_model(0)


def _with_meta(mutate):
    meta, tensors = _tiny()
    mutate(meta, tensors)
    return HF.build(meta, tensors)


def _node(meta, name):
    return next(n for n in meta["graph"]["nodes"] if n.get("name") == name)


def _field(meta, name):
    return next(f for f in meta["schema"]["fields"] if f["name"] == name)


def _rand32(*shape):
    return np.full(shape, 0.25, np.float32)


def _poke(buf, pos, value):
    b = bytearray(buf)
    b[pos] = value
    return b


def _cases():
    """id -> (bytes, expect, message regex or None). expect: "error" (ModelFormatError) or
    "ok_or_error" (must not crash; either outcome allowed by the spec) or "ok"."""
    c = {}
    meta, tensors = _tiny()
    good = HF.build(meta, tensors)
    h = HF.header(good)
    table_off, data_off = h["tensor_table_offset"], h["data_offset"]

    def hdr(fix=True, **kw):
        return HF.set_header(bytearray(good), fix=fix, **kw)

    # ---- controls
    c["valid"] = (good, "ok", None)
    c["valid_unknown_top_level_keys"] = (
        _with_meta(lambda m, t: m.update({"zzz_future": {"a": [1, 2, {"b": None}]},
                                          "extra": {"note": "free-form", "x": [1.5, -2e300]}})),
        "ok", None)

    c["valid_tensors_in_reverse_order"] = (HF.build(meta, tensors, order=list(tensors)[::-1]), "ok", None)

    def reorder_nodes(mt, t):
        nodes = mt["graph"]["nodes"]
        mt["graph"]["nodes"] = nodes[3:5] + nodes[:3] + nodes[5:]      # dense inputs first
    c["valid_nodes_reordered"] = (_with_meta(reorder_nodes), "ok", None)

    # ---- §2 header, in the order the reader checks
    c["empty_file"] = (b"", "error", None)
    c["short_1_byte"] = (good[:1], "error", None)
    c["short_127_bytes"] = (good[:127], "error", None)
    c["header_only"] = (good[:128], "error", None)
    c["bad_magic"] = (hdr(magic=b"DPNINFEX"), "error", r"magic")
    c["bad_magic_zeros"] = (hdr(magic=b"\0" * 8), "error", r"magic")
    c["not_a_model_text"] = (b"hello, I am a text file\n" * 20, "error", r"magic")
    c["big_endian_bom"] = (hdr(byte_order_mark=0x0D0C0B0A), "error", r"(?i)endian|byte.?order")
    c["bad_bom"] = (hdr(byte_order_mark=0x12345678), "error", r"(?i)endian|byte.?order")
    c["future_version_2"] = (hdr(format_version=2), "error", r"(?is)(?=.*\b2\b)(?=.*upgrad)")
    c["future_version_max"] = (hdr(format_version=0xFFFFFFFF), "error", r"(?i)upgrad")
    c["version_0"] = (hdr(format_version=0), "error", r"(?i)version")
    c["flags_bit0"] = (hdr(flags=1), "error", r"(?i)flag")
    c["flags_bit31"] = (hdr(flags=1 << 31), "error", r"(?i)flag")
    c["file_size_bigger_than_file"] = (hdr(file_size=len(good) + 64), "error", r"(?i)size")
    c["file_size_smaller_than_file"] = (hdr(file_size=len(good) - 64), "error", r"(?i)size")
    c["file_size_zero"] = (hdr(file_size=0), "error", r"(?i)size")
    c["trailing_bytes"] = (bytes(good) + b"\0" * 64, "error", r"(?i)size")
    flipped = bytearray(good)
    flipped[len(good) - 70] ^= 0x40            # a byte of tensor data, checksum not refreshed
    c["bad_checksum_data_byte"] = (flipped, "error", r"(?i)checksum|crc")
    flipped = bytearray(good)
    flipped[140] ^= 0x01                       # a metadata byte
    c["bad_checksum_meta_byte"] = (flipped, "error", r"(?i)checksum|crc")
    flipped = bytearray(good)
    flipped[100] = 0x7F                        # a reserved byte (covered by the CRC)
    c["bad_checksum_reserved_byte"] = (flipped, "error", r"(?i)checksum|crc")
    c["reserved_byte_nonzero"] = (HF.fix_checksum(_poke(good, 100, 1)), "error", r"(?i)reserved")
    c["reserved_last_byte_nonzero"] = (HF.fix_checksum(_poke(good, 127, 0x80)), "error", r"(?i)reserved")
    c["bad_checksum_value"] = (hdr(fix=False, checksum=(h["checksum"] + 1) & 0xFFFFFFFF), "error",
                               r"(?i)checksum|crc")
    # offsets and sizes (checksum refreshed so the range checks are what fails)
    c["metadata_offset_136"] = (hdr(metadata_offset=136), "error", None)
    c["metadata_offset_0"] = (hdr(metadata_offset=0), "error", None)
    c["metadata_size_0"] = (hdr(metadata_size=0), "error", None)
    c["metadata_size_over_64MiB"] = (hdr(metadata_size=64 * MiB + 1), "error", None)
    c["metadata_size_u64_max"] = (hdr(metadata_size=U64), "error", None)
    c["metadata_runs_into_table"] = (hdr(metadata_size=table_off - 128 + 16), "error", None)
    c["table_offset_unaligned"] = (hdr(tensor_table_offset=table_off + 4), "error", None)
    c["table_offset_past_end"] = (hdr(tensor_table_offset=len(good) + 8), "error", None)
    c["table_offset_overflow"] = (hdr(tensor_table_offset=U64 - 7), "error", None)
    c["tensor_count_huge"] = (hdr(tensor_count=1 << 62), "error", None)
    c["tensor_count_1000001"] = (hdr(tensor_count=1_000_001), "error", None)
    c["tensor_count_plus_1"] = (hdr(tensor_count=h["tensor_count"] + 1), "error", None)
    c["tensor_count_minus_1"] = (hdr(tensor_count=h["tensor_count"] - 1), "error", None)
    c["tensor_count_0"] = (hdr(tensor_count=0), "error", None)
    c["data_offset_unaligned"] = (hdr(data_offset=data_off + 8, data_size=h["data_size"] - 8),
                                  "error", None)
    c["data_offset_before_table_end"] = (hdr(data_offset=data_off - 64, data_size=h["data_size"] + 64),
                                         "error", None)
    c["data_offset_past_end"] = (hdr(data_offset=len(good) + 64, data_size=0), "error", None)
    c["data_offset_overflow"] = (hdr(data_offset=U64 - 63, data_size=len(good) + 64 & U64), "error",
                                 None)
    c["data_size_wrong"] = (hdr(data_size=h["data_size"] + 64), "error", None)

    # ---- §3 tensor table (checksum refreshed)
    nb_user = tensors["emb.user"].nbytes
    c["tensor_offset_past_data"] = (HF.build(meta, tensors, entries={
        "head.bias": {"offset": h["data_size"] + 64}}), "error", None)
    c["tensor_offset_end_past_data"] = (HF.build(meta, tensors, entries={
        "head.bias": {"offset": h["data_size"] - 0}}), "error", None)
    c["tensor_offset_overflow"] = (HF.build(meta, tensors, entries={
        "emb.item": {"offset": U64 - 63}}), "error", None)
    c["tensor_offset_misaligned"] = (HF.build(meta, tensors, entries={
        "emb.tags": {"offset": 128 + 4}}), "error", None)
    c["tensors_overlap"] = (HF.build(meta, tensors, entries={"emb.tags": {"offset": 0}}), "error", None)
    c["nbytes_too_big"] = (HF.build(meta, tensors, entries={"emb.user": {"nbytes": nb_user + 4}}),
                           "error", None)
    c["nbytes_too_small"] = (HF.build(meta, tensors, entries={"emb.user": {"nbytes": nb_user - 4}}),
                             "error", None)
    c["nbytes_zero"] = (HF.build(meta, tensors, entries={"emb.user": {"nbytes": 0}}), "error", None)
    # dims whose byte count wraps around 2**64 to exactly the real nbytes: 4 * (2**62 + 21) == 84 mod 2**64
    c["dims_overflow_wraps_to_nbytes"] = (HF.build(meta, tensors, entries={
        "emb.user": {"dims": [(1 << 62) + 21]}}), "error", None)
    c["dims_overflow_2d_wraps"] = (HF.build(meta, tensors, entries={
        "emb.user": {"dims": [(1 << 62) + 7, 3]}}), "error", None)
    c["dims_huge_product"] = (HF.build(meta, tensors, entries={
        "emb.user": {"dims": [1 << 40, 1 << 40]}}), "error", None)
    c["dims_u64_max"] = (HF.build(meta, tensors, entries={"emb.user": {"dims": [U64, U64]}}),
                         "error", None)
    junk_t = dict(tensors, junk=np.zeros(1, np.float32))
    c["unreferenced_tensor_dims_overflow"] = (HF.build(meta, junk_t, entries={
        "junk": {"dims": [(1 << 62) + 1]}}), "error", None)
    c["ndim_9"] = (HF.build(meta, junk_t, entries={"junk": {"dims": [1] * 9}}), "error", None)
    c["ndim_9_on_param"] = (HF.build(meta, tensors, entries={
        "emb.user": {"dims": [7, 3, 1, 1, 1, 1, 1, 1, 1]}}), "error", None)
    c["ndim_huge"] = (HF.build(meta, tensors, entries={"emb.user": {"ndim": 0x7FFFFFFF}}), "error", None)
    c["ndim_u32_max"] = (HF.build(meta, tensors, entries={"head.bias": {"ndim": 0xFFFFFFFF}}),
                         "error", None)
    c["dtype_unknown_9"] = (HF.build(meta, tensors, entries={"emb.user": {"dtype": 9}}), "error", None)
    c["dtype_u32_max"] = (HF.build(meta, tensors, entries={"emb.user": {"dtype": 0xFFFFFFFF}}),
                          "error", None)
    c["dtype_int64_param"] = (HF.build(meta, tensors, entries={
        "head.bias": {"dtype": 3, "nbytes": 8}}), "error", None)
    c["dtype_int32_param"] = (HF.build(meta, tensors, entries={"emb.user": {"dtype": 4}}), "error", None)
    c["name_len_0"] = (HF.build(meta, tensors, entries={"head.bias": {"name": b"", "name_len": 0}}),
                       "error", None)
    c["name_len_1025"] = (HF.build(meta, dict(tensors, **{"x" * 1025: np.zeros(1, np.float32)})),
                          "error", None)
    c["name_len_u32_max"] = (HF.build(meta, tensors, entries={"emb.user": {"name_len": 0xFFFFFFFF}}),
                             "error", None)
    c["name_len_past_table"] = (HF.build(meta, tensors, entries={"head.bias": {"name_len": 100000}}),
                                "error", None)
    c["name_not_utf8"] = (HF.build(meta, junk_t, entries={"junk": {"name": b"\xff\xfejunk"}}),
                          "error", None)
    c["duplicate_tensor_names"] = (HF.build(meta, tensors, entries={
        "ln.bias": {"name": b"ln.weight"}}), "error", r"ln\.weight")
    c["table_garbage"] = (HF.build(meta, tensors, raw_table=b"\xff" * 300), "error", None)

    # ---- §4 metadata (checksum refreshed)
    def mb(raw):
        return HF.build(None, tensors, meta_bytes=raw)

    js = json.dumps(meta).encode()
    c["meta_not_json"] = (mb(b"{not json at all"), "error", None)
    c["meta_truncated_json"] = (mb(js[: len(js) // 2]), "error", None)
    c["meta_trailing_garbage"] = (mb(js + b" xyz"), "error", None)
    c["meta_not_utf8"] = (mb(js[:-1] + b',"zz_extra":"\xff\xfe"}'), "error", None)
    c["meta_duplicate_key"] = (mb(js[:-1] + b',"graph":{"nodes":[],"output":"x"}}'), "error", r"(?i)duplicate")
    c["meta_duplicate_key_in_extra"] = (mb(js[:-1] + b',"zz_extra":{"a":1,"a":2}}'), "error", r"(?i)duplicate")
    c["meta_list"] = (mb(b"[]"), "error", None)
    c["meta_string"] = (mb(b'"hello"'), "error", None)
    c["meta_number"] = (mb(b"1"), "error", None)
    c["meta_null"] = (mb(b"null"), "error", None)
    c["meta_empty_object"] = (mb(b"{}"), "error", None)
    c["meta_deep_list_100000"] = (mb(b"[" * 100000), "error", None)
    c["meta_deep_list_closed_100000"] = (mb(b"[" * 100000 + b"]" * 100000), "error", None)
    c["meta_deep_object_100000"] = (mb(b'{"a":' * 100000 + b"1" + b"}" * 100000), "error", None)
    deep_extra = js[:-1] + b',"zz_extra":' + b"[" * 100000 + b"]" * 100000 + b"}"
    c["meta_deep_nesting_in_extra"] = (mb(deep_extra), "error", None)
    # format.md §4: nesting deeper than 64 is refused (the top-level object counts as 1)
    c["meta_nesting_62_ok"] = (mb(js[:-1] + b',"zz_extra":' + b"[" * 61 + b"]" * 61 + b"}"), "ok", None)
    c["meta_nesting_66_refused"] = (mb(js[:-1] + b',"zz_extra":' + b"[" * 65 + b"]" * 65 + b"}"),
                                    "error", None)
    c["meta_huge_number"] = (mb(js[:-1] + b',"zz_extra":1' + b"0" * 5000 + b"}"), "ok_or_error", None)
    c["meta_nul_inside"] = (mb(js[:-1] + b',"zz_extra":"a\x00b"}'), "error", None)
    c["meta_nan_token"] = (mb(js[:-1] + b',"zz_extra":NaN}'), "error", None)
    c["meta_utf8_bom"] = (mb(b"\xef\xbb\xbf" + js), "ok_or_error", None)
    c["meta_bad_escape"] = (mb(js[:-1] + b',"zz_extra":"\\uZZZZ"}'), "error", None)
    c["meta_lone_surrogate"] = (mb(js[:-1] + b',"zz_extra":"\\ud800"}'), "ok_or_error", None)

    def m(fn, expect="error", rx=None, key=None):
        c[key or fn.__name__] = (_with_meta(fn), expect, rx)

    def missing_schema(mt, t): del mt["schema"]
    def missing_graph(mt, t): del mt["graph"]
    def schema_is_list(mt, t): mt["schema"] = mt["schema"]["fields"]
    def schema_fields_missing(mt, t): mt["schema"] = {}
    def fields_not_list(mt, t): mt["schema"]["fields"] = {"user": 1}
    def graph_nodes_missing(mt, t): del mt["graph"]["nodes"]
    def graph_nodes_not_list(mt, t): mt["graph"]["nodes"] = "nodes"
    def graph_output_missing(mt, t): del mt["graph"]["output"]
    def node_not_object(mt, t): mt["graph"]["nodes"].insert(0, 42)
    def node_missing_op(mt, t): del mt["graph"]["nodes"][0]["op"]
    def unknown_op(mt, t): _node(mt, "act")["op"] = "conv2d"
    def opset_future(mt, t): mt["opset"] = 99
    def opset_huge(mt, t): mt["opset"] = 1 << 62
    def opset_string(mt, t): mt["opset"] = "1"
    def unknown_field_kind(mt, t): _field(mt, "price")["kind"] = "hologram"
    for fn in (missing_schema, missing_graph, schema_is_list, schema_fields_missing, fields_not_list,
               graph_nodes_missing, graph_nodes_not_list, graph_output_missing, node_not_object,
               node_missing_op, opset_string):
        m(fn)
    m(unknown_op, rx=r"(?s)(?=.*conv2d)(?=.*(?i:upgrad))")
    m(opset_future, rx=r"(?i)upgrad")
    m(opset_huge, rx=r"(?i)upgrad")
    m(unknown_field_kind, rx=r"hologram")

    # schema fields
    def vocab_zero(mt, t): _field(mt, "user")["vocab"] = 0
    def vocab_negative(mt, t): _field(mt, "user")["vocab"] = -7
    def vocab_float(mt, t): _field(mt, "user")["vocab"] = 7.5
    def dim_zero(mt, t): _field(mt, "ctx")["dim"] = 0
    def dense_dim_huge(mt, t): _field(mt, "ctx")["dim"] = 1 << 62
    def duplicate_field_name(mt, t): _field(mt, "item")["name"] = "user"
    def empty_field_name(mt, t): mt["schema"]["fields"][3]["name"] = ""
    def bad_policy(mt, t): _field(mt, "user")["policy"] = "wrap"
    def bad_pooling(mt, t): _field(mt, "tags")["pooling"] = "max"
    def negative_max_len(mt, t): _field(mt, "tags")["max_len"] = -1
    def field_name_not_string(mt, t): _field(mt, "price")["name"] = 5
    for fn in (vocab_zero, vocab_negative, vocab_float, dim_zero, dense_dim_huge, duplicate_field_name,
               empty_field_name, bad_policy, bad_pooling, negative_max_len, field_name_not_string):
        m(fn)

    # at the engine's documented limits (docs/format.md, "Size bounds"): at a limit, past it, and
    # where arithmetic on the value would wrap (these files run under UBSan in .ci/sanitize)
    def vocab_int64_max_oov(mt, t): _field(mt, "tags")["vocab"] = (1 << 63) - 1   # vocab + 1 wraps
    def vocab_int64_max_hash(mt, t): _field(mt, "user")["vocab"] = (1 << 63) - 1
    def vocab_past_limit(mt, t): _field(mt, "user")["vocab"] = (1 << 48) + 1
    def vocab_at_limit(mt, t): _field(mt, "user")["vocab"] = 1 << 48   # allowed; its table is not there
    def dim_past_limit(mt, t): _field(mt, "user")["dim"] = (1 << 20) + 1
    def dim_at_limit(mt, t): _field(mt, "user")["dim"] = 1 << 20      # allowed; its table is not there
    m(vocab_int64_max_oov, rx=r"vocab")
    m(vocab_int64_max_hash, rx=r"vocab")
    m(vocab_past_limit, rx=r"vocab")
    m(vocab_at_limit, rx=r"shape")
    m(dim_past_limit, rx=r"dim")
    m(dim_at_limit, rx=r"shape")
    def multi_hot_max_len_int64_max(mt, t): _field(mt, "tags")["max_len"] = (1 << 63) - 1
    c["multi_hot_max_len_int64_max"] = (_with_meta(multi_hot_max_len_int64_max), "ok", None)

    # a packed weight shared by two nodes (each would pack its own copy: 1,000 such nodes turned a
    # 4 MB file into 4 GB of memory)
    def packed_weight_shared(mt, t):
        nodes = mt["graph"]["nodes"]
        nodes.insert(len(nodes) - 1, {"op": "linear", "name": "head_twin", "inputs": ["h5"],
                                      "output": "logit_twin", "attrs": {"in": 4, "out": 1},
                                      "params": {"weight": "head.weight", "bias": "head.bias"}})
    m(packed_weight_shared, rx=r"already packed for node \d+ \(linear 'head_twin'\)|head_twin")

    # params
    def param_wrong_shape(mt, t): t["l0.g2.weight"] = _rand32(72, 4)
    def param_transposed(mt, t): t["head.weight"] = _rand32(4, 1)
    def param_wrong_ndim(mt, t): t["ln.weight"] = _rand32(4, 1)
    def decomp_P_wrong(mt, t): t["l1.P"] = _rand32(6, 3)
    def W0_wrong(mt, t): t["l1.W0"] = _rand32(4, 6)
    def g1_bias_wrong(mt, t): t["l0.g1.bias"] = _rand32(4)
    def cross_weight_wrong(mt, t): t["cross.weight"] = _rand32(5)
    def table_dim_wrong(mt, t): t["emb.user"] = _rand32(7, 4)
    def table_rows_ne_vocab_hash(mt, t): t["emb.user"] = _rand32(8, 3)
    def table_rows_ne_vocab_error(mt, t): t["emb.item"] = _rand32(5, 2)
    def table_rows_oov_missing_bucket(mt, t): t["emb.tags"] = _rand32(5, 2)
    def table_rows_oov_too_many(mt, t): t["emb.tags"] = _rand32(7, 2)
    def missing_param_role(mt, t): del _node(mt, "layers.0")["params"]["g2_bias"]
    def param_missing_tensor(mt, t): _node(mt, "head")["params"]["bias"] = "no.such.tensor"
    def missing_W0_when_w0(mt, t): del _node(mt, "layers.1")["params"]["W0"]
    for fn in (param_wrong_shape, param_transposed, param_wrong_ndim, decomp_P_wrong, W0_wrong,
               g1_bias_wrong, cross_weight_wrong, table_dim_wrong, table_rows_ne_vocab_hash,
               table_rows_ne_vocab_error, table_rows_oov_missing_bucket, table_rows_oov_too_many,
               missing_param_role, param_missing_tensor, missing_W0_when_w0):
        m(fn)

    # graph structure
    def undefined_value(mt, t): _node(mt, "norm")["inputs"] = ["nope"]
    def use_before_define(mt, t):
        nodes = mt["graph"]["nodes"]
        x0 = nodes.pop(5)
        nodes.insert(7, x0)
    def value_defined_twice(mt, t): _node(mt, "act")["output"] = "h4"; _node(mt, "head")["inputs"] = ["h4"]
    def output_redefines_input(mt, t): _node(mt, "act")["output"] = "x0"; _node(mt, "head")["inputs"] = ["x0"]
    def output_undefined(mt, t): mt["graph"]["output"] = "zzz"
    def output_width_2(mt, t):
        _node(mt, "head")["attrs"]["out"] = 2
        t["head.weight"] = _rand32(2, 4)
        t["head.bias"] = _rand32(2)
    def output_is_x0(mt, t): mt["graph"]["output"] = "x0"
    def self_loop(mt, t): _node(mt, "act")["inputs"] = ["h5"]
    def embedding_unknown_field(mt, t): _node(mt, "input.user")["attrs"]["field"] = "nope"
    def embedding_on_dense(mt, t): _node(mt, "input.user")["attrs"]["field"] = "price"
    def dense_input_on_sparse(mt, t): _node(mt, "input.price")["attrs"]["field"] = "user"
    def concat_no_inputs(mt, t): _node(mt, "ctx1")["inputs"] = []
    def linear_two_inputs(mt, t): _node(mt, "head")["inputs"] = ["h5", "h5"]
    def linear_in_mismatch(mt, t): _node(mt, "head")["attrs"]["in"] = 5
    def cross_width_mismatch(mt, t): _node(mt, "cross")["inputs"] = ["x0", "h3"]
    def dylinear_one_input(mt, t): _node(mt, "layers.0")["inputs"] = ["x0"]
    def dylinear_in_mismatch(mt, t): _node(mt, "layers.1")["inputs"] = ["x0", "z1"]
    def dylinear_context_mismatch(mt, t): _node(mt, "layers.1")["inputs"] = ["h1", "x0"]
    def inputs_not_list(mt, t): _node(mt, "norm")["inputs"] = "h2"
    for fn in (undefined_value, use_before_define, value_defined_twice, output_redefines_input,
               output_undefined, output_width_2, output_is_x0, self_loop, embedding_unknown_field,
               embedding_on_dense, dense_input_on_sparse, concat_no_inputs, linear_two_inputs,
               linear_in_mismatch, cross_width_mismatch, dylinear_one_input, dylinear_in_mismatch,
               dylinear_context_mismatch, inputs_not_list):
        m(fn)

    # attributes
    def attr_wrong_type(mt, t): _node(mt, "layers.0")["attrs"]["in"] = "11"
    def attr_float_for_int(mt, t): _node(mt, "layers.0")["attrs"]["hidden"] = 3.5
    def attr_missing_out(mt, t): del _node(mt, "layers.0")["attrs"]["out"]
    def attr_missing_field(mt, t): del _node(mt, "input.user")["attrs"]["field"]
    def unknown_sigma(mt, t): _node(mt, "layers.0")["attrs"]["sigma"] = "gelu"
    def unknown_act(mt, t): _node(mt, "act")["attrs"]["act"] = "swish"
    def unknown_form(mt, t): _node(mt, "layers.0")["attrs"]["form"] = "sparse"
    def unknown_generator(mt, t): _node(mt, "layers.0")["attrs"]["generator"] = "conv"
    def heads_not_dividing(mt, t): _node(mt, "layers.0")["attrs"]["heads"] = 4
    def heads_zero(mt, t): _node(mt, "layers.0")["attrs"]["heads"] = 0
    def rank_zero(mt, t): _node(mt, "layers.1")["attrs"]["rank"] = 0
    def rank_mismatch(mt, t): _node(mt, "layers.1")["attrs"]["rank"] = 3
    def w0_not_bool(mt, t): _node(mt, "layers.1")["attrs"]["w0"] = "yes"
    def linear_generator_hidden_ne_context(mt, t): _node(mt, "layers.1")["attrs"]["hidden"] = 4
    def hidden_mismatch(mt, t): _node(mt, "layers.0")["attrs"]["hidden"] = 4
    def layernorm_eps_zero(mt, t): _node(mt, "norm")["attrs"]["eps"] = 0.0
    def layernorm_eps_negative(mt, t): _node(mt, "norm")["attrs"]["eps"] = -1e-5
    def in_zero(mt, t): _node(mt, "head")["attrs"]["in"] = 0
    def out_negative(mt, t): _node(mt, "head")["attrs"]["out"] = -1
    def out_huge(mt, t): _node(mt, "head")["attrs"]["out"] = 1 << 62
    def attrs_not_object(mt, t): _node(mt, "layers.0")["attrs"] = [1, 2]
    def params_not_object(mt, t): _node(mt, "layers.0")["params"] = ["l0.g1.weight"]
    # format.md §4.2 / §5: optional attributes take their defaults; inapplicable and unknown ones are ignored
    def full_without_heads(mt, t): del _node(mt, "layers.0")["attrs"]["heads"]
    def act_defaults_identity(mt, t): del _node(mt, "head")["attrs"]["act"]
    def unknown_attribute_ignored(mt, t): _node(mt, "layers.0")["attrs"]["zz_future_attr"] = [1, {"x": 2}]
    def rank_on_full_ignored(mt, t): _node(mt, "layers.0")["attrs"].update(rank=99, w0=True)
    def name_optional(mt, t): del _node(mt, "layers.0")["name"]
    for fn in (full_without_heads, act_defaults_identity, unknown_attribute_ignored, rank_on_full_ignored,
               name_optional):
        m(fn, expect="ok")

    def decomp_with_heads_2(mt, t): _node(mt, "layers.1")["attrs"]["heads"] = 2
    def decomp_without_rank(mt, t): del _node(mt, "layers.1")["attrs"]["rank"]
    def mlp_without_sigma(mt, t): del _node(mt, "layers.0")["attrs"]["sigma"]
    def w0_false_but_W0_given(mt, t): _node(mt, "layers.1")["attrs"]["w0"] = False
    for fn in (decomp_with_heads_2, decomp_without_rank, mlp_without_sigma):
        m(fn)
    m(w0_false_but_W0_given, expect="ok_or_error")

    for fn in (attr_wrong_type, attr_float_for_int, attr_missing_out, attr_missing_field, unknown_sigma,
               unknown_act, unknown_form, unknown_generator, heads_not_dividing, heads_zero, rank_zero,
               rank_mismatch, w0_not_bool, linear_generator_hidden_ne_context, hidden_mismatch,
               layernorm_eps_zero, layernorm_eps_negative, in_zero, out_negative, out_huge,
               attrs_not_object, params_not_object):
        m(fn)
    return c


_CASES = _cases()


@pytest.fixture(scope="module")
def crafted_results():
    with tempfile.TemporaryDirectory(prefix="dpn_fmt_") as d:
        batch = os.path.join(d, "batch.npz")
        np.savez(batch, **HF.tiny_batch())
        cases = []
        for i, (cid, (buf, _, _)) in enumerate(_CASES.items()):
            p = os.path.join(d, f"{i:04d}.bin")
            with open(p, "wb") as f:
                f.write(bytes(buf))
            cases.append({"id": cid, "path": p, "batch": batch})
        yield run_cases(cases, timeout=240)


@pytest.mark.parametrize("case", list(_CASES))
def test_crafted_file(case, crafted_results):
    _, expect, rx = _CASES[case]
    r = crafted_results[case]
    assert r["load"] not in ("CRASH", "WORKER FAILED", "NOT RUN"), f"{case}: {r['msg']}"
    if expect == "ok":
        assert r["load"] == "ok", f"{case}: valid file refused: {r.get('msg')}"
        assert r.get("predict") == "ok", f"{case}: predict failed: {r}"
        assert r["shape"] == [9] and r["dtype"] == "float32"
    elif expect == "error":
        assert r["load"] == "ModelFormatError", f"{case}: expected ModelFormatError, got {r}"
        assert r["msg"].strip(), f"{case}: empty error message"
        if rx:
            assert re.search(rx, r["msg"]), f"{case}: message {r['msg']!r} does not match {rx!r}"
    else:
        assert r["load"] in ("ok", "ModelFormatError"), f"{case}: {r}"
        if r["load"] == "ok":
            assert r.get("predict") in ("ok", "InputError"), f"{case}: {r}"


def test_builder_matches_writer():
    """helpers/files.build lays files out byte for byte as converters/format.encode does."""
    from dpn_infer.converters import format as F

    meta, tensors = _tiny()
    assert bytes(HF.build(meta, tensors)) == bytes(F.encode(meta, tensors))
    meta2, t2 = F.decode(bytes(HF.build(meta, tensors)))
    assert meta2 == meta
    assert set(t2) == set(tensors)


def test_tiny_model_matches_spec_interpreter(tmp_path):
    """The hand-built model (every opset-1 op) gives what docs/format.md §5 says, computed in numpy."""
    from dpn_infer.engine import load

    from helpers import specref

    meta, tensors = _tiny()
    p = tmp_path / "tiny.bin"
    p.write_bytes(HF.build(meta, tensors))
    model = load(str(p))
    for n, seed in ((1, 3), (9, 1), (300, 2)):
        batch = HF.tiny_batch(n, seed)
        want = specref.run(meta, tensors, batch)
        got = model.predict(batch, logits=True)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(model.predict(batch), 1 / (1 + np.exp(-want)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("case", ["full_without_heads", "act_defaults_identity", "unknown_attribute_ignored",
                                  "rank_on_full_ignored", "name_optional", "valid_unknown_top_level_keys",
                                  "meta_nesting_62_ok", "valid_tensors_in_reverse_order",
                                  "valid_nodes_reordered"])
def test_defaults_and_ignored_keys_give_same_numbers(case, crafted_results, tmp_path):
    """A file relying on attribute defaults or carrying ignorable keys computes what the full file does."""
    from dpn_infer.engine import load

    assert crafted_results[case]["load"] == "ok", crafted_results[case]
    p = tmp_path / "m.bin"
    p.write_bytes(bytes(_CASES[case][0]))
    q = tmp_path / "ref.bin"
    q.write_bytes(bytes(_CASES["valid"][0]))
    b = HF.tiny_batch(40, 4)
    np.testing.assert_array_equal(load(str(p)).predict(b, logits=True), load(str(q)).predict(b, logits=True))


def _run_bulk(tmpdir, bufs, batch=True):
    """Write each (id, bytes) and load them all in child processes."""
    bpath = os.path.join(tmpdir, "batch.npz")
    np.savez(bpath, **HF.tiny_batch())
    cases = []
    for i, (cid, buf) in enumerate(bufs):
        p = os.path.join(tmpdir, f"{i:05d}.bin")
        with open(p, "wb") as f:
            f.write(bytes(buf))
        cases.append({"id": cid, "path": p, "batch": bpath if batch else None})
    return run_cases(cases, timeout=240)


def _fail_report(results, ok):
    bad = [r for r in results.values() if not ok(r)]
    return bad, "\n".join(f"  {r['id']}: {r}" for r in bad[:15])


def test_truncated_everywhere():
    """Every cut through the header, and a spread of cuts through the rest, is refused."""
    good = HF.tiny_bytes()
    n = len(good)
    cuts = sorted(set(range(0, 129)) | set(range(129, n, 11)) | set(range(n - 70, n)))
    with tempfile.TemporaryDirectory(prefix="dpn_trunc_") as d:
        res = _run_bulk(d, [(f"truncated_to_{k}", good[:k]) for k in cuts], batch=False)
    bad, rep = _fail_report(res, lambda r: r["load"] == "ModelFormatError")
    assert not bad, f"{len(bad)} of {len(cuts)} truncations not refused cleanly:\n{rep}"


def test_single_byte_flips_caught_by_checksum():
    """Any one changed byte, anywhere, checksum not refreshed: refused."""
    good = HF.tiny_bytes()
    n = len(good)
    positions = sorted(set(range(0, 128)) | set(range(128, n, 17)) | {n - 1})
    bufs = []
    for pos in positions:
        for x in (0x01, 0x80):
            b = bytearray(good)
            b[pos] ^= x
            bufs.append((f"flip_{pos}_xor_{x:#04x}", b))
    with tempfile.TemporaryDirectory(prefix="dpn_flip_") as d:
        res = _run_bulk(d, bufs, batch=False)
    bad, rep = _fail_report(res, lambda r: r["load"] == "ModelFormatError")
    assert not bad, f"{len(bad)} of {len(bufs)} flipped files not refused:\n{rep}"


def _ok_or_refused(r):
    if r["load"] == "ModelFormatError":
        return True
    return r["load"] == "ok" and r.get("predict") in ("ok", "InputError")


def test_fuzz_byte_mutations_with_valid_checksum():
    """Random byte mutations in every region, checksum refreshed: load succeeds (and predict then works
    or refuses the batch with InputError) or raises ModelFormatError; never a crash or another error."""
    good = HF.tiny_bytes()
    h = HF.header(good)
    regions = [(0, 128), (128, 128 + h["metadata_size"]), (h["tensor_table_offset"], h["data_offset"]),
               (h["data_offset"], len(good))]
    rng = random.Random(20240601)
    special = [0x00, 0xFF, 0x7F, 0x80, 0x01, ord("["), ord("{"), ord('"'), ord("\\"), ord("9")]
    bufs = []
    for i in range(1500):
        b = bytearray(good)
        what = []
        for _ in range(rng.choice((1, 1, 2, 3, 8))):
            lo, hi = regions[rng.choice((0, 1, 1, 2, 2, 2, 3))]
            pos = rng.randrange(lo, hi)
            if pos in range(76, 80):
                continue
            v = rng.choice(special) if rng.random() < 0.5 else rng.randrange(256)
            what.append(f"[{pos}]={v:#04x}")
            b[pos] = v
        HF.fix_checksum(b)
        bufs.append((f"fuzz{i}:" + ",".join(what), b))
    with tempfile.TemporaryDirectory(prefix="dpn_fuzz_") as d:
        res = _run_bulk(d, bufs)
    bad, rep = _fail_report(res, _ok_or_refused)
    assert not bad, (f"{len(bad)} of {len(bufs)} mutated files (tiny_bytes(), byte [pos]=value, checksum "
                     f"refreshed) misbehaved:\n{rep}")


_NASTY = [0, 1, -1, 2, 3, 4, 7, 11, 1 << 31, (1 << 32) + 1, 1 << 62, (1 << 63) - 1, -(1 << 63), 1e308,
          -0.0, 0.5, "", "x0", "h1", "user", "tags", "price", "relu", "softmax", "full", "decomp",
          "linear", "mlp", "hash", "error", "oov_bucket", "multi_hot", "sparse", "dense", "embedding",
          None, True, False, [], {}, ["x0"], ["x0", "x0"], [1, 2]]


def _json_paths(obj, path=()):
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _json_paths(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _json_paths(v, path + (i,))


def test_fuzz_metadata_values():
    """Structure-aware fuzzing: replace, delete or duplicate random JSON values in the metadata (checksum
    valid): load succeeds or raises ModelFormatError; never a crash or another exception."""
    meta, tensors = _tiny()
    paths = [p for p in _json_paths(meta) if p]
    rng = random.Random(777)
    bufs = []
    for i in range(900):
        mt = copy.deepcopy(meta)
        what = []
        for _ in range(rng.choice((1, 1, 2, 3))):
            p = rng.choice(paths)
            parent = mt
            try:
                for k in p[:-1]:
                    parent = parent[k]
                key = p[-1]
                parent[key]
            except (KeyError, IndexError, TypeError):
                continue
            if not isinstance(parent, (dict, list)):
                continue
            op = rng.random()
            if op < 0.15 and isinstance(parent, dict):
                del parent[key]
                what.append(f"del {p}")
            elif op < 0.25 and isinstance(parent, list):
                parent.append(copy.deepcopy(parent[key]))
                what.append(f"dup {p}")
            else:
                v = rng.choice(_NASTY)
                parent[key] = copy.deepcopy(v)
                what.append(f"{p}={v!r}")
        bufs.append((f"jfuzz{i}:" + "; ".join(what), HF.build(mt, tensors)))
    with tempfile.TemporaryDirectory(prefix="dpn_jfuzz_") as d:
        res = _run_bulk(d, bufs)
    bad, rep = _fail_report(res, _ok_or_refused)
    assert not bad, (f"{len(bad)} of {len(bufs)} metadata mutations of helpers.files.tiny_model(0) "
                     f"misbehaved:\n{rep}")


def test_error_is_typed_in_process(tmp_path):
    """In-process check of the exception type (after the child-process checks above proved no crash)."""
    from dpn_infer.engine import ModelFormatError, load

    p = tmp_path / "bad.bin"
    p.write_bytes(HF.set_header(HF.tiny_bytes(), format_version=2))
    with pytest.raises(ModelFormatError, match=r"(?i)upgrade"):
        load(str(p))
    p.write_bytes(b"")
    with pytest.raises(ModelFormatError):
        load(str(p))


def test_load_memory_is_bounded_by_the_file(tmp_path):
    """A file whose packed weights need far more memory than it holds is refused at load with the
    limit named (docs/format.md, "Size bounds"): 300 thin [1, 8192] weights (32 KiB each in the
    file, each packed 16 columns wide: 512 KiB) ask for ~150 MiB from a ~10 MiB file, past the
    default of 64 MiB + 4 x the file. The same file loads when the caller raises the limit."""
    from dpn_infer.engine import ModelFormatError, load

    meta, tensors = _tiny()
    nodes = meta["graph"]["nodes"]
    K = 8192
    tensors["wide.weight"] = _rand32(K, 4)
    extra = [{"op": "linear", "name": "wide", "inputs": ["h5"], "output": "wide",
              "attrs": {"in": 4, "out": K}, "params": {"weight": "wide.weight"}}]
    for i in range(300):
        tensors[f"thin{i}.weight"] = _rand32(1, K)
        extra.append({"op": "linear", "name": f"thin{i}", "inputs": ["wide"], "output": f"thin{i}",
                      "attrs": {"in": K, "out": 1}, "params": {"weight": f"thin{i}.weight"}})
    meta["graph"]["nodes"] = nodes[:-1] + extra + nodes[-1:]
    p = tmp_path / "thin.bin"
    p.write_bytes(HF.build(meta, tensors))
    assert p.stat().st_size < 12 << 20
    with pytest.raises(ModelFormatError, match=r"more than \d+ MiB beyond its file.*max_alloc_bytes"):
        load(p)
    m = load(p, max_alloc_bytes=1 << 30)
    b = HF.tiny_batch()
    ref = tmp_path / "ref.bin"
    ref.write_bytes(HF.build(*_tiny()))
    np.testing.assert_array_equal(m.predict(b), load(ref).predict(b))


@pytest.mark.parametrize("worker,why", [
    ("raise ImportError(\"cannot import name '_engine' from 'dpn_infer'\")\n", "control model"),
    ("import time\nprint('START x', flush=True)\ntime.sleep(60)\n", "hung"),
])
def test_isolation_harness_cannot_pass_by_testing_nothing(tmp_path, monkeypatch, worker, why):
    """The child-process harness behind the corrupted-file tests refuses to report results when
    its child could not have tested anything: a child that cannot import the compiled engine (as
    one started from the checkout root, importing the source tree) would 'refuse' every file; a
    child that hangs is a failure, not a pass."""
    from helpers import isolated

    fake = tmp_path / "worker.py"
    fake.write_text(worker)
    monkeypatch.setattr(isolated, "WORKER", str(fake))
    with pytest.raises(isolated.HarnessError, match=why):
        isolated.run_cases([{"id": "x", "path": str(tmp_path / "any.bin")}], timeout=5)
