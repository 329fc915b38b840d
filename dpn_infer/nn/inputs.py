"""Input layer: batch mapping -> one float32 ``[B, dim]`` tensor per field (docs/format.md §4.1, §5)."""
from __future__ import annotations

from typing import Dict, Mapping

import numpy as np
import torch
from torch import nn

from .schema import DenseField, MultiHotField, Schema, SequenceField, SparseField, TimestampField


def to_torch_batch(batch: Mapping) -> Dict[str, torch.Tensor]:
    """Convert a mapping name -> numpy array / list / tensor into name -> torch tensor (no copy
    where torch.as_tensor can avoid one)."""
    if not isinstance(batch, Mapping):
        raise TypeError(f"batch must be a mapping from field name to array, got {type(batch).__name__}")
    return {k: v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
            for k, v in batch.items()}


def _module_key(name: str, index: int, taken: set) -> str:
    """A key usable in nn.ModuleDict for field ``name`` (field names are free-form strings)."""
    probe = nn.ModuleDict()
    ok = (name.isidentifier() and not hasattr(probe, name) and name not in taken)
    key = name if ok else f"field{index}"
    while key in taken:
        key = "_" + key
    taken.add(key)
    return key


def exporting() -> bool:
    """True while torch.export traces the module (the ONNX exporter, converters/onnx_export.py): a
    check that reads the values cannot be traced, so the exported graph leaves it out (docs/onnx.md)."""
    return torch.compiler.is_exporting()


def apply_policy(field, ids: torch.Tensor) -> torch.Tensor:
    """Map raw ids (int64, any shape) to table rows according to the field's policy."""
    v = field.vocab
    if field.policy == "hash":
        return torch.remainder(ids, v)
    bad = (ids < 0) | (ids >= v)
    if field.policy == "oov_bucket" or exporting():
        # "error" while exporting: row `vocab` is past the table (rows == vocab), so the runtime's
        # lookup refuses it; a negative id would otherwise count from the table's end (ONNX Gather)
        return torch.where(bad, torch.full_like(ids, v), ids)
    # "error"
    if bool(bad.any()):
        x = int(ids[bad].reshape(-1)[0])
        raise ValueError(f"field '{field.name}': id {x} out of range [0, {v})")
    return ids


def ragged_to_padded(field, value) -> torch.Tensor:
    """A ragged sequence (values [N], offsets [B + 1]) as int64 [B, T] padded with -1, T the longest
    row (docs/format.md §4.1: row b is values[offsets[b]:offsets[b + 1]])."""
    if len(value) != 2:
        raise ValueError(f"field '{field.name}': a ragged sequence is a tuple (values, offsets), "
                         f"got a tuple of {len(value)}")
    vals, offs = (torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v for v in value)
    for what, a in (("values", vals), ("offsets", offs)):
        if a.dtype != torch.int64 or a.dim() != 1:
            raise ValueError(f"field '{field.name}': ragged {what} must be a 1-d int64 array, "
                             f"got {a.dtype} {list(a.shape)}")
    if offs.numel() < 1 or int(offs[0]) != 0 or int(offs[-1]) != vals.numel() or \
            bool((offs[1:] < offs[:-1]).any()):
        raise ValueError(f"field '{field.name}': ragged offsets must rise from 0 to the number of "
                         f"values ({vals.numel()})")
    counts = offs[1:] - offs[:-1]
    B, T = counts.numel(), int(counts.max()) if counts.numel() else 0
    out = torch.full((B, T), -1, dtype=torch.int64)
    pos = torch.arange(T).unsqueeze(0)
    mask = pos < counts.unsqueeze(1)
    out[mask] = vals
    return out


def sequence_rows(field, ids: torch.Tensor):
    """(table rows [B, max_len], lengths [B]) of a sequence field's ids [B, T] (docs/format.md §4.1):
    the valid (non -1) ids of a row in order, the last ``max_len`` of them when ``truncate``; rows
    past a row's length are 0 (masked by the caller). Every valid id goes through the policy, the
    truncated ones included (an out-of-range id under "error" is refused wherever it stands)."""
    if ids.dim() != 2:
        raise ValueError(f"field '{field.name}': expected ids of shape [B, T] (padded with -1), "
                         f"got {list(ids.shape)}")
    B, T = ids.shape
    if T > field.max_len and not field.truncate:
        raise ValueError(f"field '{field.name}': {T} ids per row, more than max_len {field.max_len} "
                         f"(the schema does not truncate)")
    L_max = field.max_len
    valid = ids != -1
    rows = apply_policy(field, torch.where(valid, ids, torch.zeros_like(ids)))
    vi = valid.to(torch.int64)          # (ONNX has no CumSum / ReduceSum over bool)
    n = vi.sum(1, keepdim=True)
    lengths = n.clamp(max=L_max)
    # position among the row's kept ids (the oldest n - L are dropped); scatter, not sort, so the
    # ONNX export holds no Sort: everything not kept lands in a spare column that is cut off
    target = vi.cumsum(1) - 1 - (n - lengths)
    keep = valid & (target >= 0)
    target = torch.where(keep, target, torch.full_like(target, L_max))
    out = torch.zeros(B, L_max + 1, dtype=torch.int64, device=ids.device)
    rows = out.scatter(1, target, torch.where(keep, rows, torch.zeros_like(rows)))[:, :L_max]
    lengths = lengths.squeeze(1)
    return rows, lengths


def sequence_value(field, ids: torch.Tensor, emb: nn.Embedding):
    """(embeddings [B, max_len, dim], zeros past each row's length; lengths [B] int64)."""
    rows, lengths = sequence_rows(field, ids)
    keep = torch.arange(field.max_len).unsqueeze(0) < lengths.unsqueeze(1)
    return emb(rows) * keep.unsqueeze(-1).to(emb.weight.dtype), lengths


class InputLayer(nn.Module):
    """One ``nn.Embedding`` per sparse / multi-hot / sequence field (``vocab`` rows, ``vocab + 1``
    for ``oov_bucket``; a sequence field with ``table`` uses that field's); dense fields pass through.
    ``forward(batch)`` -> dict name -> float32 ``[B, dim]``; a sequence field gives a pair
    (float32 ``[B, max_len, dim]`` zero past each row's length, lengths int64 ``[B]``).

    Fields missing from the batch raise ``ValueError``; keys that are not fields are ignored
    (so a batch may carry its label)."""

    def __init__(self, schema: Schema):
        super().__init__()
        if not isinstance(schema, Schema):
            raise TypeError(f"InputLayer expects a Schema, got {type(schema).__name__}")
        self.schema = schema
        self.embeddings = nn.ModuleDict()
        self.keys: Dict[str, str] = {}          # field name -> key in self.embeddings
        taken: set = set()
        for i, f in enumerate(schema.fields):
            if isinstance(f, SequenceField) and f.table is not None:
                continue        # shares the table of a sparse field: keyed below, stored once
            if isinstance(f, (SparseField, MultiHotField, SequenceField)):
                key = _module_key(f.name, i, taken)
                self.keys[f.name] = key
                emb = nn.Embedding(f.rows, f.dim)
                nn.init.normal_(emb.weight, std=0.05)
                self.embeddings[key] = emb
        for f in schema.fields:
            if isinstance(f, SequenceField) and f.table is not None:
                self.keys[f.name] = self.keys[f.table]

    def embedding(self, name: str) -> nn.Embedding:
        return self.embeddings[self.keys[name]]

    def _field_value(self, f, value) -> torch.Tensor:
        if isinstance(f, SequenceField) and isinstance(value, tuple):
            value = ragged_to_padded(f, value)
        t = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
        if isinstance(f, DenseField):
            if not (t.is_floating_point() or t.dtype in (torch.int32, torch.int64)):
                raise ValueError(f"field '{f.name}': expected float32 values, got {t.dtype}")
            t = t.to(torch.float32)
            if t.dim() == 1 and f.dim == 1:
                t = t.unsqueeze(1)
            if t.dim() != 2 or t.shape[1] != f.dim:
                raise ValueError(f"field '{f.name}': expected shape [B, {f.dim}]"
                                 f"{' or [B]' if f.dim == 1 else ''}, got {list(t.shape)}")
            if not exporting() and not bool(torch.isfinite(t).all()):
                raise ValueError(f"field '{f.name}': NaN or infinite value")
            return t
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise ValueError(f"field '{f.name}': expected int64 ids, got {t.dtype}")
        ids = t.to(torch.int64)
        if isinstance(f, TimestampField):     # raw seconds, segmented by the session models
            if ids.dim() not in (2, 3):
                raise ValueError(f"field '{f.name}': expected timestamps of shape [B, T], got "
                                 f"{list(ids.shape)}")
            return ids
        emb = self.embedding(f.name)
        if isinstance(f, SparseField):
            if ids.dim() != 1:
                raise ValueError(f"field '{f.name}': expected ids of shape [B], got {list(ids.shape)}")
            return emb(apply_policy(f, ids))
        if isinstance(f, SequenceField):
            return sequence_value(f, ids, emb)
        # multi_hot
        if ids.dim() != 2:
            raise ValueError(f"field '{f.name}': expected ids of shape [B, T], got {list(ids.shape)}")
        if f.max_len and ids.shape[1] > f.max_len:
            raise ValueError(f"field '{f.name}': {ids.shape[1]} ids per row, more than max_len "
                             f"{f.max_len}")
        valid = ids != -1
        rows = apply_policy(f, torch.where(valid, ids, torch.zeros_like(ids)))   # padding -> row 0, masked
        vecs = emb(rows) * valid.unsqueeze(-1).to(emb.weight.dtype)   # [B, T, dim]
        out = vecs.sum(1)
        if f.pooling == "mean":
            out = out / valid.sum(1, keepdim=True).clamp(min=1).to(out.dtype)
        return out

    def forward(self, batch: Mapping) -> Dict[str, torch.Tensor]:
        if not isinstance(batch, Mapping):
            raise TypeError(f"batch must be a mapping from field name to array, "
                            f"got {type(batch).__name__}")
        out = {}
        rows = None
        for f in self.schema.fields:
            if f.name not in batch:
                raise ValueError(f"field '{f.name}': missing from the batch")
            v = self._field_value(f, batch[f.name])
            r = v[0].shape[0] if isinstance(v, tuple) else v.shape[0]
            if rows is None:
                rows = r
            elif r != rows:
                raise ValueError(f"field '{f.name}': {r} rows, but earlier fields have {rows}")
            out[f.name] = v
        return out
