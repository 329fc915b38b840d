"""Python face of the C++ engine: ``load(path) -> Model`` and ``Model.predict(batch)``.

Thin on purpose: the C++ extension ``dpn_infer._engine`` validates the file and every field of a
batch; this module adds the schema as Python data and accepts path-like objects and mappings.
"""
from __future__ import annotations

import copy
import json
import os
from typing import Any, Mapping

import numpy as np

from . import _engine
from ._engine import InputError, ModelFormatError, NonFiniteScoreError

__all__ = ["load", "Model", "ModelFormatError", "InputError", "NonFiniteScoreError", "cpu_info"]


class Model:
    """A loaded model.bin. Immutable and safe to share between threads."""

    def __init__(self, native: "_engine.Model", path: str = "", threads: int = 1) -> None:
        self._native = native
        self._path = path
        self._threads = _check_threads(threads)
        try:
            self._metadata = json.loads(native.metadata_json)
        except (ValueError, RecursionError) as e:  # e.g. an integer past Python's 4300-digit limit
            raise ModelFormatError(f"invalid model metadata: Python cannot read the JSON: {e}") from None

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

    def predict(self, batch: Mapping[str, Any], *, threads: int | None = None,
                logits: bool = False, allow_nan: bool = False) -> np.ndarray:
        """float32 [B] click probabilities (or logits) for a mapping field name -> array.

        sparse: int64 [B]; multi_hot: int64 [B, T] padded with -1; dense: float32 [B] or [B, dim];
        sequence: int64 [B, T] padded with -1, or a ragged tuple (values int64 [N], offsets int64
        [B + 1]) where row b is values[offsets[b]:offsets[b + 1]].
        Values that are not numpy arrays are converted as ``np.asarray`` would (dtypes are not cast).
        ``threads``: intra-op threads for this call (default: the model's); 1 runs on the calling
        thread only. Large batches are split by rows, small ones by the GEMMs' output columns.
        Raises InputError (a ValueError) naming the field at fault. A NaN score (a value that
        overflowed float32 inside the model, where PyTorch gives NaN too) raises
        NonFiniteScoreError, an InputError with ``.rows`` (the first rows at fault) and
        ``.num_rows``; ``allow_nan=True`` returns NaN for those rows instead.
        """
        threads = self._threads if threads is None else _check_threads(threads)
        if not isinstance(batch, Mapping):
            raise TypeError(f"batch must be a mapping field name -> array, got {type(batch).__name__}")
        if type(batch) is not dict:
            batch = dict(batch)
        return self._native.predict(batch, threads, bool(logits), bool(allow_nan))

    def __repr__(self) -> str:
        fields = ", ".join(f"{f.get('name')}:{f.get('kind')}" for f in self._metadata["schema"]["fields"])
        where = f" from {self._path!r}" if self._path else ""
        return (f"<dpn_infer.Model{where} {self._metadata.get('model_type', '?')}, "
                f"{len(self._metadata['graph']['nodes'])} nodes, fields [{fields}]>")


def _check_threads(threads) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= 1024:
        raise ValueError(f"threads must be an integer in [1, 1024], got {threads!r}")
    return int(threads)


def load(path: str | os.PathLike, *, threads: int = 1, copy: bool = False,
         max_alloc_bytes: int | None = None) -> Model:
    """Load and validate a model.bin file.

    ``threads``: the default intra-op thread count of ``predict`` (1 = the calling thread only).
    ``copy``: read the file into memory instead of mapping it, so that it may be rewritten in place
    (``cp new.bin live.bin``) while loaded; by default it is mapped, and must be replaced by rename.
    ``max_alloc_bytes``: what the load may allocate beyond the file (packed weights); the default,
    64 MiB + 4 x the file's size, refuses files that ask for far more memory than they hold.
    Raises ModelFormatError for a bad file, OSError (FileNotFoundError, ...) when it cannot be
    opened or is not a regular file, ValueError for a path with a NUL byte (as ``open`` does)."""
    p = os.fspath(path)
    raw = os.fsencode(p)  # bytes: any file name, UTF-8 or not
    if b"\0" in raw:
        raise ValueError("embedded null byte in the model path")
    if max_alloc_bytes is None:
        max_alloc_bytes = 0
    elif isinstance(max_alloc_bytes, bool) or not isinstance(max_alloc_bytes, (int, np.integer)) \
            or not 1 <= max_alloc_bytes < 2**64:
        raise ValueError(f"max_alloc_bytes must be a positive integer, got {max_alloc_bytes!r}")
    native = _engine.Model.load(raw, bool(copy), int(max_alloc_bytes))
    return Model(native, os.fsdecode(p), threads)


def cpu_info() -> dict:
    """CPU features and the kernel ISA this process uses.

    Keys: vendor, brand, avx2, fma, avx512f, avx512bw, avx512vl, avx512dq, avx512_bf16,
    avx512_vnni, available (ISAs this machine can run, best first), selected ("avx512" | "avx2" |
    "ref"), override (the DPN_ISA value, or None), note (why an override was not honoured, or "").
    The ISA is chosen once per process, at first use; set DPN_ISA before importing the engine.
    """
    return _engine.cpu_info()
