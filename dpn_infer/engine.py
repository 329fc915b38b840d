"""Python face of the C++ engine: ``load(path | bytes) -> Model`` and ``Model.predict(batch)``.

Thin on purpose: the C++ extension ``dpn_infer._engine`` validates the file and every field of a
batch; this module adds the schema as Python data, accepts path-like objects, bytes, mappings and
data frames (dpn_infer/_frames.py), and makes models pickle.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import pickle
import threading
import weakref
from typing import Any, Mapping

import numpy as np

from . import _engine, _sessions
from ._engine import InputError, ModelFormatError, NonFiniteScoreError

__all__ = ["load", "Model", "ModelFormatError", "InputError", "NonFiniteScoreError", "cpu_info"]


class Model:
    """A loaded model.bin. Immutable and safe to share between threads."""

    def __init__(self, native: "_engine.Model", path: str = "", threads: int = 1,
                 bf16_gemm: bool | None = None, int8_gemm: bool | None = None) -> None:
        # Model(...) is made by load() and unpickling; users never call it.
        self._native = native
        self._path = path
        self._bf16_gemm = _check_gemm("bf16_gemm", bf16_gemm)
        self._int8_gemm = _check_gemm("int8_gemm", int8_gemm)
        self._threads = _check_threads(threads)
        try:
            self._metadata = json.loads(native.metadata_json)
        except (ValueError, RecursionError) as e:  # e.g. an integer past Python's 4300-digit limit
            raise ModelFormatError(f"invalid model metadata: Python cannot read the JSON: {e}") from None
        # session models: the fields a pre-segmented [B, S, L] batch may give (dpn_infer/_sessions.py)
        self._layouts = _sessions.session_layouts(self._metadata)

    @property
    def metadata(self) -> dict:
        """The model's metadata (docs/format.md §4), as a fresh dict."""
        return copy.deepcopy(self._metadata)

    @property
    def schema(self) -> list[dict]:
        """The input fields, in order, as dicts (docs/format.md §4.1)."""
        return copy.deepcopy(self._metadata["schema"]["fields"])

    @property
    def threads(self) -> int:
        """Default intra-op thread count of predict (set by ``load(path, threads=...)``)."""
        return self._threads

    def predict(self, batch: Any, *, threads: int | None = None, logits: bool = False,
                allow_nan: bool = False, cast: bool = False, shared: Mapping | None = None,
                groups: Any = None) -> np.ndarray:
        """float32 [B] click probabilities (or logits) for a mapping field name -> array, a
        ``pandas.DataFrame`` or a ``pyarrow.Table`` / ``RecordBatch``.

        sparse: int64 [B]; multi_hot: int64 [B, T] padded with -1; dense: float32 [B] or [B, dim];
        sequence: int64 [B, T] padded with -1, or a ragged tuple (values int64 [N], offsets int64
        [B + 1]) where row b is values[offsets[b]:offsets[b + 1]]; timestamps: int64 seconds laid
        out as its sequence's ids. A session model's sequence fields may instead be given
        pre-segmented, int64 [B, S, L] (the timestamps then left out; docs/dyjoint.md).
        Values that are not numpy arrays are converted as ``np.asarray`` would (dtypes are not cast).
        A data frame or Arrow table gives one column per field (columns that are not fields are
        ignored; a mapping's unknown keys are an error): numeric columns for sparse and dense
        fields; list columns for multi_hot (padded to the longest row with -1), sequence (read as
        ragged rows, ids not copied) and dense fields of dim > 1 (rows of exactly dim values).
        A null in a field's column (a null list included) is an InputError naming the field.
        ``cast=True``: the safe casts — any integer dtype to int64 ids (uint64 past int64 refused),
        float64/float16 (and 8-/16-bit integers) to float32 values; a finite value beyond float32's
        range is an InputError, never inf. Without it a wrong dtype is an InputError.
        ``threads``: intra-op threads for this call (default: the model's); 1 runs on the calling
        thread only. Large batches are split by rows, small ones by the GEMMs' output columns.
        Raises InputError (a ValueError) naming the field at fault. A NaN score (a value that
        overflowed float32 inside the model, where PyTorch gives NaN too) raises
        NonFiniteScoreError, an InputError with ``.rows`` (the first rows at fault) and
        ``.num_rows``; ``allow_nan=True`` returns NaN for those rows instead.

        A ranking request (one user, many candidates): ``shared`` maps the fields common to every
        row to 1-row arrays (the same forms as in a batch), and ``batch`` holds only the other
        fields, one row per candidate; the scores are those of the batch that repeats the shared
        values on every row, computed with the shared fields' part of the model once.
        ``groups`` (int64 [U + 1] offsets from 0 to B) makes it U users in one call: user u's
        candidates are rows ``groups[u]:groups[u + 1]`` and ``shared`` has U rows. Any field may be
        shared; one given both ways, groups that do not cover the rows or shared rows that are not
        U raise InputError. With a data frame or Arrow table of candidates, a shared field's
        column, if it has one, is not read.
        """
        threads = self._threads if threads is None else _check_threads(threads)
        if self._layouts:
            batch = _sessions.flatten_presegmented(batch, self._layouts) if isinstance(batch, dict) \
                else batch
            shared = _sessions.flatten_presegmented(shared, self._layouts) if isinstance(shared, dict) \
                else shared
        if shared is not None or groups is not None:
            if type(batch) is dict and type(shared) is dict and not cast:  # the server's hot path
                return self._native.predict(batch, threads, bool(logits), bool(allow_nan), shared, groups)
            return self._predict_request(batch, threads, logits, allow_nan, cast, shared, groups)
        if type(batch) is not dict or cast:
            if not isinstance(batch, Mapping):
                from . import _frames  # imports pandas / pyarrow only for their objects

                if not (_frames.is_pandas(batch) or _frames.is_arrow(batch)):
                    raise TypeError("batch must be a mapping field name -> array, a pandas.DataFrame "
                                    f"or a pyarrow.Table / RecordBatch, got {type(batch).__name__}")
                batch = _frames.to_batch(self._metadata["schema"]["fields"], batch, bool(cast))
            elif cast:
                from . import _frames

                batch = _frames.to_batch(self._metadata["schema"]["fields"], batch, True)
            elif type(batch) is not dict:
                batch = dict(batch)
        return self._native.predict(batch, threads, bool(logits), bool(allow_nan))

    def _predict_request(self, batch, threads, logits, allow_nan, cast, shared, groups) -> np.ndarray:
        shared = {} if shared is None else shared
        if not isinstance(shared, Mapping):
            raise TypeError(f"shared must be a mapping field name -> array, got {type(shared).__name__}")
        fields = self._metadata["schema"]["fields"]
        if not isinstance(batch, Mapping) or cast:
            from . import _frames

            if not isinstance(batch, Mapping) and not (_frames.is_pandas(batch) or _frames.is_arrow(batch)):
                raise TypeError("batch must be a mapping field name -> array, a pandas.DataFrame "
                                f"or a pyarrow.Table / RecordBatch, got {type(batch).__name__}")
            # A frame's columns for the fields not shared (a shared one left there is ignored, as
            # any column that is not a field).
            batch = _frames.to_batch([f for f in fields if f["name"] not in shared], batch, bool(cast))
            if cast:
                shared = _frames.to_batch(fields, shared, True)
        return self._native.predict(dict(batch), threads, bool(logits), bool(allow_nan),
                                    dict(shared), groups)

    def file_bytes(self) -> memoryview:
        """The model file's content, read-only and not copied (what ``load(bytes)`` takes)."""
        return self._native.file_bytes()

    def __reduce_ex__(self, protocol):
        # A Model pickles as its file's bytes (pickle protocol 5 sends them out of band without a
        # copy, as Ray does); unpickling loads them once per process (_restore).
        data = self._native.file_bytes()
        data = pickle.PickleBuffer(data) if protocol >= 5 else bytes(data)
        return _restore, (data, self._threads, self._path, self._bf16_gemm, self._int8_gemm)

    def __copy__(self) -> "Model":
        return self  # immutable

    def __deepcopy__(self, memo) -> "Model":
        return self

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.get('name')}:{f.get('kind')}" for f in self._metadata["schema"]["fields"])
        where = f" from {self._path!r}" if self._path else ""
        return (f"<dpn_infer.Model{where} {self._metadata.get('model_type', '?')}, "
                f"{len(self._metadata['graph']['nodes'])} nodes, fields [{fields}]>")


def _check_threads(threads) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= 1024:
        raise ValueError(f"threads must be an integer in [1, 1024], got {threads!r}")
    return int(threads)


def load(path: str | os.PathLike | bytes | bytearray | memoryview, *, threads: int = 1,
         copy: bool = False, max_alloc_bytes: int | None = None, bf16_gemm: bool | None = None,
         int8_gemm: bool | None = None) -> Model:
    """Load and validate a model.bin file, or a model file's content (bytes, bytearray,
    memoryview or any C-contiguous buffer: read once into memory the Model owns; a path given as
    bytes is no longer accepted — pass ``os.fsdecode(name)``).

    ``threads``: the default intra-op thread count of ``predict`` (1 = the calling thread only).
    ``copy``: read the file into memory instead of mapping it, so that it may be rewritten in place
    (``cp new.bin live.bin``) while loaded; by default it is mapped, and must be replaced by rename.
    ``max_alloc_bytes``: what the load may allocate beyond the file (packed weights); the default,
    64 MiB + 4 x the file's size, refuses files that ask for far more memory than they hold.
    ``bf16_gemm``: how the linear and dynamic linear layers of a file with bfloat16 weights compute.
    ``True``: bfloat16 GEMMs (inputs rounded to bfloat16, float32 accumulation; AVX512_BF16 where
    the CPU has it, the same arithmetic in float32 elsewhere), about twice the float32 speed.
    ``False``: every op widens bfloat16 weights to float32 and computes in float32 (outputs within
    bfloat16 rounding of True's). ``None`` (default): as the file records — ``save(precision="bf16")``
    records bfloat16 GEMMs (metadata ``"arithmetic": "bf16"``); files without the key compute in
    float32. ``int8_gemm``: the same for a file with int8 weights. ``True``: int8 GEMMs (each weight
    quantized per output column at load, each layer's input quantized per row at run time, exact
    int32 sums; AVX512_VNNI where the CPU has it, the same integer arithmetic in plain C++
    elsewhere). ``False``: int8 weights dequantized to float32 at load, float32 arithmetic. ``None``
    (default): as the file records — ``save(precision="int8")`` records int8 GEMMs (``"arithmetic":
    "int8"``); older int8 files compute in float32. ``cpu_info()["reduced_precision"]`` says which
    code runs.
    Raises ModelFormatError for a bad file, OSError (FileNotFoundError, ...) when it cannot be
    opened or is not a regular file, ValueError for a path with a NUL byte (as ``open`` does)."""
    _check_threads(threads)  # before a load that may take a while
    if max_alloc_bytes is None:
        max_alloc_bytes = 0
    elif isinstance(max_alloc_bytes, bool) or not isinstance(max_alloc_bytes, (int, np.integer)) \
            or not 1 <= max_alloc_bytes < 2**64:
        raise ValueError(f"max_alloc_bytes must be a positive integer, got {max_alloc_bytes!r}")
    if _is_buffer(path):  # bytes, bytearray, memoryview, mmap, numpy arrays: a model's content
        return Model(_engine.Model.load_memory(path, int(max_alloc_bytes), _check_gemm("bf16_gemm", bf16_gemm),
                                               _check_gemm("int8_gemm", int8_gemm)),
                     "", threads, bf16_gemm, int8_gemm)
    p = os.fspath(path)
    if not isinstance(p, str):  # a PathLike whose __fspath__ gives bytes
        raise TypeError("a model path must be a str or an os.PathLike giving str (bytes are the "
                        "model's content; os.fsdecode(name) gives a str for any file name)")
    raw = os.fsencode(p)  # bytes: any file name, UTF-8 or not
    if b"\0" in raw:
        raise ValueError("embedded null byte in the model path")
    native = _engine.Model.load(raw, bool(copy), int(max_alloc_bytes), _check_gemm("bf16_gemm", bf16_gemm),
                                _check_gemm("int8_gemm", int8_gemm))
    return Model(native, p, threads, bf16_gemm, int8_gemm)


def _is_buffer(obj) -> bool:
    # numpy arrays, mmap.mmap, ...: anything with the buffer protocol that is not a path.
    if isinstance(obj, (str, os.PathLike)):
        return False
    try:
        memoryview(obj).release()
    except TypeError:
        return False
    return True


# Unpickled models by content hash: a process that unpickles the same model many times (a Ray
# task's or Spark closure's argument) loads it once, while any Model made from it is alive.
_LOADED: "weakref.WeakValueDictionary[bytes, _engine.Model]" = weakref.WeakValueDictionary()
_LOADED_LOCK = threading.Lock()


def _check_gemm(name, v):
    if v is not None and not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be None, True or False, got {v!r}")
    return None if v is None else bool(v)


def _restore(data, threads: int, path: str = "", bf16_gemm: bool | None = None,
             int8_gemm: bool | None = None) -> Model:
    code = {None: 2, False: 0, True: 1}
    key = hashlib.blake2b(data, digest_size=32).digest() + bytes([code[bf16_gemm], code[int8_gemm]])
    with _LOADED_LOCK:  # held through the load, so concurrent unpickles of one model load it once
        native = _LOADED.get(key)
        if native is None:
            native = _engine.Model.load_memory(data, 0, bf16_gemm, int8_gemm)
            _LOADED[key] = native
    return Model(native, path, threads, bf16_gemm, int8_gemm)


def cpu_info() -> dict:
    """CPU features and the kernel ISA this process uses.

    Keys: vendor, brand, avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512dq, avx512_bf16,
    avx512_vnni, amx_bf16 (AMX-BF16 tiles usable: CPU, OS and the process's permission), amx_int8 (AMX-INT8 too),
    l1d_bytes / l2_bytes (per-core data caches from CPUID, 0 if not reported), available (ISAs this
    machine can run, best first), selected ("avx512amx" | "avx512bf16" | "avx512" | "avx2" | "ref"), override (the DPN_ISA value, or None), note (why an override was not honoured, or ""),
    reduced_precision ({"embeddings": ..., "weights": ..., "int8": ..., "int8_gemm": "avx512amx" |
    "avx512vnni" | "ref"}: which code runs a float16/bfloat16 or int8 file; int8_gemm: the int8 GEMMs' kernels, the
    AVX512_VNNI ones or the portable C++ ones, with the same results), gemm_blocks ({"fp32_avx512",
    "fp32_avx2", "bf16_avx512"}: {"kc", "mc", "source"}, the GEMM block sizes in use and whether
    they came from "cpuid", "default" or DPN_GEMM_BLOCKS).
    The ISA is chosen once per process, at first use; set DPN_ISA before importing the engine.
    """
    return _engine.cpu_info()
