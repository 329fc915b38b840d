"""model.bin writer and (debug) reader, exactly as docs/format.md specifies.

This is the only writer of the format. It knows nothing about PyTorch: it takes a metadata dict and
named numpy arrays. The reader here exists for tools and tests (the engine has its own, in C++).
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from typing import Mapping

import numpy as np

MAGIC = b"DPNINFER"
FORMAT_VERSION = 1
OPSET = 5  # the newest opset this writer knows (docs/format.md §5)
# float16 / bfloat16 tensors came with opset 3 (docs/format.md §3), int8 ones with opset 4 (§3.2).
HALF_OPSET = 3
INT8_OPSET = 4
# An int8 tensor's float32 scales are the tensor of this name (docs/format.md §3.2).
SCALE_SUFFIX = ".scale"
# The opset that introduced each operator and field kind: a file records the lowest opset that holds
# it, so a model that uses only old operators stays loadable by older engines.
OP_OPSET = {"embedding": 1, "dense_input": 1, "concat": 1, "linear": 1, "dylinear": 1,
            "layernorm": 1, "cross": 1, "act": 1,
            "field_dylinear": 2,
            # sequence operators (docs/format.md §5, opset 2)
            "seq_embedding": 2, "seq_length": 2, "seq_concat": 2, "seq_pool": 2, "seq_add": 2,
            "homo_dpo": 2, "self_attention": 2, "target_attention": 2,
            # the separable-convolution generator's context and the Conv1D encoder (§5b, opset 5)
            "seq_sepconv_pool": 5, "conv1d": 5,
            # DIEN's recurrent operators (docs/format.md §5c, opset 5)
            "gru": 5, "dien_attention": 5, "augru": 5,
            # session operators (docs/format.md §5d, opset 5)
            "session_embedding": 5, "session_length": 5, "kfatt": 5}
FIELD_KIND_OPSET = {"sparse": 1, "multi_hot": 1, "dense": 1, "sequence": 2, "timestamps": 5}
# Attributes added to older operators: a node that sets one needs that opset (sessions > 1 runs a
# sequence operator per session, docs/format.md §5d).
ATTR_OPSET = {"sessions": 5}
BYTE_ORDER_MARK = 0x0A0B0C0D
HEADER_SIZE = 128
ALIGN = 64
CHECKSUM_OFFSET = 76

# numpy has no bfloat16: its tensors are arrays of this one-field record of the raw 16 bits (a dtype
# of its own, so it is never mistaken for uint16 data). to_float32() widens them.
BFLOAT16 = np.dtype([("bf16", "<u2")])
DTYPES = {0: np.dtype("<f4"), 1: np.dtype("<f2"), 2: BFLOAT16, 3: np.dtype("<i8"), 4: np.dtype("<i4"),
          5: np.dtype("i1")}
_CODE = {np.dtype("float32"): 0, np.dtype("float16"): 1, BFLOAT16: 2, np.dtype("int64"): 3,
         np.dtype("int32"): 4, np.dtype("int8"): 5}
DTYPE_NAMES = {0: "float32", 1: "float16", 2: "bfloat16", 3: "int64", 4: "int32", 5: "int8"}


def to_bfloat16(a: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (BFLOAT16 records), rounded to nearest even; NaN stays a quiet NaN."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    r = ((u + np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    r[nan] = ((u[nan] >> np.uint32(16)) | np.uint32(0x40)).astype(np.uint16)
    return r.view(BFLOAT16)


def to_float32(a: np.ndarray) -> np.ndarray:
    """A float tensor of any of the format's dtypes as float32 (exact for float16 and bfloat16)."""
    if a.dtype == BFLOAT16:
        return (a.view(np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)
    return a.astype(np.float32)


def dequantize(q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """An int8 tensor's float32 values: ``scale · q`` (scale per row or per column, broadcast; §3.2)."""
    return q.astype(np.float32) * np.asarray(scale, dtype=np.float32)


def dtype_name(a: np.ndarray) -> str:
    return DTYPE_NAMES[_CODE[a.dtype.newbyteorder("=")]]

# Header: magic, version, bom, file_size, meta_off, meta_size, table_off, count, data_off,
# data_size, flags, checksum; then 48 reserved bytes.
_HEADER = struct.Struct("<8sIIQQQQQQQII")


def _node_opset(node: Mapping) -> int:
    """The opset of a node: its operator's, or later when it uses a later form of it."""
    if node["op"] == "homo_dpo" and len(node["inputs"]) == 3:   # context input z (opset 5)
        return 5
    return OP_OPSET[node["op"]]


def required_opset(metadata: Mapping) -> int:
    """The lowest opset that holds ``metadata``'s graph and schema."""
    need = [_node_opset(n) for n in metadata["graph"]["nodes"]]
    need += [ATTR_OPSET[a] for n in metadata["graph"]["nodes"] for a in n.get("attrs", {})
             if a in ATTR_OPSET]
    need += [FIELD_KIND_OPSET[f["kind"]] for f in metadata["schema"]["fields"]]
    return max(need + [1])


class FormatError(ValueError):
    """A file that is not a valid model.bin (raised by the Python debug reader)."""


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def checksum(buf: bytes | bytearray | memoryview) -> int:
    """CRC-32 of the file with the checksum field (bytes 76..80) left out."""
    mv = memoryview(buf)
    return zlib.crc32(mv[CHECKSUM_OFFSET + 4:], zlib.crc32(mv[:CHECKSUM_OFFSET])) & 0xFFFFFFFF


def encode(metadata: Mapping, tensors: Mapping[str, np.ndarray]) -> bytearray:
    """Serialize metadata and tensors into the bytes of a model.bin file."""
    meta = json.dumps(metadata, separators=(",", ":"), allow_nan=False).encode("utf-8")
    table = bytearray()
    offsets = []
    data_len = 0
    arrays = []
    for name, arr in tensors.items():
        a = np.ascontiguousarray(arr)
        if a.dtype not in _CODE:
            raise TypeError(f"tensor {name!r}: unsupported dtype {a.dtype}")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        nb = name.encode("utf-8")
        table += struct.pack("<I", len(nb)) + nb
        table += struct.pack("<II", _CODE[a.dtype.newbyteorder("=")], a.ndim)
        table += struct.pack(f"<{a.ndim}Q", *a.shape)
        offsets.append(data_len)
        table += struct.pack("<QQ", data_len, a.nbytes)
        data_len = _align(data_len + a.nbytes, ALIGN)
        arrays.append(a)
    table_off = _align(HEADER_SIZE + len(meta), 8)
    data_off = _align(table_off + len(table), ALIGN)
    file_size = data_off + data_len
    buf = bytearray(file_size)
    buf[HEADER_SIZE:HEADER_SIZE + len(meta)] = meta
    buf[table_off:table_off + len(table)] = table
    for off, a in zip(offsets, arrays):
        buf[data_off + off:data_off + off + a.nbytes] = a.tobytes()
    _HEADER.pack_into(buf, 0, MAGIC, FORMAT_VERSION, BYTE_ORDER_MARK, file_size, HEADER_SIZE,
                      len(meta), table_off, len(tensors), data_off, file_size - data_off, 0, 0)
    struct.pack_into("<I", buf, CHECKSUM_OFFSET, checksum(buf))
    return buf


def write(path, metadata: Mapping, tensors: Mapping[str, np.ndarray]) -> None:
    write_bytes(path, encode(metadata, tensors))


def write_bytes(path, data) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, then a rename. A process
    that has the old file loaded (memory-mapped) keeps reading the old bytes; rewriting the file in
    place would change them under it (SIGBUS when it shrinks, wrong scores otherwise)."""
    path = os.fspath(path)
    d, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode())  # mkstemp's 0600 -> what open() would have given
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _new_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def refresh_checksum(buf: bytearray) -> bytearray:
    """Recompute the checksum in place (tests use it to build files that are wrong past the CRC)."""
    struct.pack_into("<I", buf, CHECKSUM_OFFSET, checksum(buf))
    return buf


def decode(buf: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """Parse a model.bin image: (metadata, {name: array}). Validates like the engine, in brief."""
    if len(buf) < HEADER_SIZE:
        raise FormatError("file shorter than the 128-byte header")
    (magic, ver, bom, fsize, moff, msize, toff, count, doff, dsize, flags, crc) = \
        _HEADER.unpack_from(buf, 0)
    if magic != MAGIC:
        raise FormatError("bad magic: not a dpn_infer model.bin")
    if bom != BYTE_ORDER_MARK:
        raise FormatError("bad byte-order mark")
    if ver > FORMAT_VERSION:
        raise FormatError(f"format version {ver} is newer than supported ({FORMAT_VERSION})")
    if fsize != len(buf):
        raise FormatError("file_size does not match the file")
    if crc != checksum(buf):
        raise FormatError("checksum mismatch")
    meta = json.loads(bytes(buf[moff:moff + msize]).decode("utf-8"))
    tensors = {}
    p = toff
    for _ in range(count):
        (n,) = struct.unpack_from("<I", buf, p)
        name = bytes(buf[p + 4:p + 4 + n]).decode("utf-8")
        p += 4 + n
        dt, nd = struct.unpack_from("<II", buf, p)
        p += 8
        dims = struct.unpack_from(f"<{nd}Q", buf, p)
        p += 8 * nd
        off, nbytes = struct.unpack_from("<QQ", buf, p)
        p += 16
        arr = np.frombuffer(buf, dtype=DTYPES[dt], count=int(np.prod(dims, dtype=np.int64)),
                            offset=doff + off).reshape(dims)
        tensors[name] = arr
    return meta, tensors


def read(path) -> tuple[dict, dict[str, np.ndarray]]:
    with open(path, "rb") as f:
        return decode(f.read())
