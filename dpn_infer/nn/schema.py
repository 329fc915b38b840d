"""Input schema: the fields a model reads, exactly as docs/format.md §4.1 records them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, List, Mapping, Optional, Sequence, Union

POLICIES = ("hash", "oov_bucket", "error")
POOLINGS = ("sum", "mean")


def _check_common(name, dim, what):
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what}: field name must be a non-empty string, got {name!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"field {name!r}: dim must be an integer >= 1, got {dim!r}")


def _check_vocab_policy(name, vocab, policy):
    if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1:
        raise ValueError(f"field {name!r}: vocab must be an integer >= 1, got {vocab!r}")
    if policy not in POLICIES:
        raise ValueError(f"field {name!r}: policy must be one of {POLICIES}, got {policy!r}")


@dataclass
class SparseField:
    """One categorical id per row (int64 ``[B]``), looked up in a ``[rows, dim]`` table."""
    name: str
    vocab: int
    dim: int
    policy: str = "hash"
    kind = "sparse"

    def __post_init__(self):
        _check_common(self.name, self.dim, "SparseField")
        _check_vocab_policy(self.name, self.vocab, self.policy)

    @property
    def rows(self) -> int:
        return self.vocab + 1 if self.policy == "oov_bucket" else self.vocab

    def to_json(self) -> dict:
        return {"name": self.name, "kind": "sparse", "dim": self.dim, "vocab": self.vocab,
                "policy": self.policy}


@dataclass
class MultiHotField:
    """Several ids per row (int64 ``[B, T]`` padded with -1), pooled by sum or mean."""
    name: str
    vocab: int
    dim: int
    pooling: str = "mean"
    max_len: int = 0
    policy: str = "hash"
    kind = "multi_hot"

    def __post_init__(self):
        _check_common(self.name, self.dim, "MultiHotField")
        _check_vocab_policy(self.name, self.vocab, self.policy)
        if self.pooling not in POOLINGS:
            raise ValueError(f"field {self.name!r}: pooling must be one of {POOLINGS}, "
                             f"got {self.pooling!r}")
        if isinstance(self.max_len, bool) or not isinstance(self.max_len, int) or self.max_len < 0:
            raise ValueError(f"field {self.name!r}: max_len must be an integer >= 0 "
                             f"(0 = no limit), got {self.max_len!r}")

    @property
    def rows(self) -> int:
        return self.vocab + 1 if self.policy == "oov_bucket" else self.vocab

    def to_json(self) -> dict:
        return {"name": self.name, "kind": "multi_hot", "dim": self.dim, "vocab": self.vocab,
                "policy": self.policy, "pooling": self.pooling, "max_len": self.max_len}


@dataclass
class DenseField:
    """Float values given as-is (float32 ``[B]`` when dim is 1, or ``[B, dim]``)."""
    name: str
    dim: int = 1
    kind = "dense"

    def __post_init__(self):
        _check_common(self.name, self.dim, "DenseField")

    def to_json(self) -> dict:
        return {"name": self.name, "kind": "dense", "dim": self.dim}


@dataclass
class SequenceField:
    """A behaviour sequence (int64 ``[B, T]`` padded with -1), kept as a sequence of ``max_len``
    positions for the sequence operators (docs/format.md §4.1, opset 2).

    A row's valid ids are its entries other than -1, in order (padding may stand anywhere); its
    length is their count. ``T > max_len`` is refused, naming the field, unless ``truncate`` is
    true: then each row keeps its last (most recent) ``max_len`` valid ids. ``table`` names a
    ``sparse`` field whose embedding table this field shares (stored once; vocab, dim and policy
    must be equal)."""
    name: str
    vocab: int
    dim: int
    max_len: int
    policy: str = "hash"
    truncate: bool = False
    table: Optional[str] = None
    kind = "sequence"

    def __post_init__(self):
        _check_common(self.name, self.dim, "SequenceField")
        _check_vocab_policy(self.name, self.vocab, self.policy)
        if isinstance(self.max_len, bool) or not isinstance(self.max_len, int) or self.max_len < 1:
            raise ValueError(f"field {self.name!r}: max_len must be an integer >= 1, got {self.max_len!r}")
        if not isinstance(self.truncate, bool):
            raise ValueError(f"field {self.name!r}: truncate must be a bool, got {self.truncate!r}")
        if self.table is not None and (not isinstance(self.table, str) or not self.table):
            raise ValueError(f"field {self.name!r}: table must be a field name, got {self.table!r}")

    @property
    def rows(self) -> int:
        return self.vocab + 1 if self.policy == "oov_bucket" else self.vocab

    def to_json(self) -> dict:
        d = {"name": self.name, "kind": "sequence", "dim": self.dim, "vocab": self.vocab,
             "policy": self.policy, "max_len": self.max_len, "truncate": self.truncate}
        if self.table is not None:
            d["table"] = self.table
        return d


@dataclass
class TimestampField:
    """The timestamps of a sequence field's behaviours (int64 seconds ``[B, T]``, one per id of
    ``sequence``, -1 where its id is -1), read by the session models (dpn_infer.nn.sessions).

    Sessions: the behaviours sorted by time; a new session starts where the gap to the previous
    behaviour is strictly greater than ``gap`` seconds (a gap of exactly ``gap`` stays in the
    session; the paper's production model uses 30 minutes, App. B.5). The most recent
    ``max_sessions`` sessions are kept, each with its most recent ``session_len`` behaviours (the
    paper's 10 x 25). Not part of x0: ``dim`` is 0."""
    name: str
    sequence: str
    gap: int = 1800
    max_sessions: int = 10
    session_len: int = 25
    kind = "timestamps"
    dim = 0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"TimestampField: field name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.sequence, str) or not self.sequence:
            raise ValueError(f"field {self.name!r}: sequence must be a field name, got {self.sequence!r}")
        if isinstance(self.gap, bool) or not isinstance(self.gap, int) or self.gap < 0:
            raise ValueError(f"field {self.name!r}: gap must be an integer >= 0 (seconds), got {self.gap!r}")
        for k in ("max_sessions", "session_len"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"field {self.name!r}: {k} must be an integer >= 1, got {v!r}")

    def to_json(self) -> dict:
        return {"name": self.name, "kind": "timestamps", "sequence": self.sequence, "gap": self.gap,
                "max_sessions": self.max_sessions, "session_len": self.session_len}


Field = Union[SparseField, MultiHotField, DenseField, SequenceField, TimestampField]
_FIELD_TYPES = (SparseField, MultiHotField, DenseField, SequenceField, TimestampField)
_KEYS = {"sparse": {"name", "kind", "dim", "vocab", "policy"},
         "multi_hot": {"name", "kind", "dim", "vocab", "policy", "pooling", "max_len"},
         "dense": {"name", "kind", "dim"},
         "sequence": {"name", "kind", "dim", "vocab", "policy", "max_len", "truncate", "table"},
         "timestamps": {"name", "kind", "sequence", "gap", "max_sessions", "session_len"}}


def field_from_json(d: Mapping) -> Field:
    if not isinstance(d, Mapping):
        raise ValueError(f"schema field must be a JSON object, got {d!r}")
    kind = d.get("kind")
    if kind not in _KEYS:
        raise ValueError(f"field {d.get('name')!r}: unknown kind {kind!r} "
                         f"(expected one of {sorted(_KEYS)})")
    extra = set(d) - _KEYS[kind]
    if extra:
        raise ValueError(f"field {d.get('name')!r}: unexpected keys {sorted(extra)} for kind {kind!r}")
    try:
        if kind == "sparse":
            return SparseField(d["name"], d["vocab"], d["dim"], d.get("policy", "hash"))
        if kind == "multi_hot":
            return MultiHotField(d["name"], d["vocab"], d["dim"], d.get("pooling", "mean"),
                                 d.get("max_len", 0), d.get("policy", "hash"))
        if kind == "sequence":
            return SequenceField(d["name"], d["vocab"], d["dim"], d["max_len"], d.get("policy", "hash"),
                                 d.get("truncate", False), d.get("table"))
        if kind == "timestamps":
            return TimestampField(d["name"], d["sequence"], d.get("gap", 1800),
                                  d.get("max_sessions", 10), d.get("session_len", 25))
        return DenseField(d["name"], d.get("dim", 1))
    except KeyError as e:
        raise ValueError(f"field {d.get('name')!r}: missing key {e.args[0]!r}") from None


class Schema:
    """An ordered list of uniquely named fields. The order is the order ``x0`` concatenates them in."""

    def __init__(self, fields: Iterable[Field]):
        fields = list(fields)
        if not fields:
            raise ValueError("Schema needs at least one field")
        seen = set()
        for f in fields:
            if not isinstance(f, _FIELD_TYPES):
                raise TypeError(f"Schema fields must be SparseField, MultiHotField, DenseField, "
                                f"SequenceField or TimestampField, got {type(f).__name__}")
            if f.name in seen:
                raise ValueError(f"duplicate field name {f.name!r} in schema")
            seen.add(f.name)
        by_name = {f.name: f for f in fields}
        for f in fields:
            if isinstance(f, SequenceField) and f.table is not None:
                o = by_name.get(f.table)
                if not isinstance(o, SparseField):
                    raise ValueError(f"field {f.name!r}: table {f.table!r} must name a sparse field "
                                     f"of the schema")
                if (o.vocab, o.dim, o.policy) != (f.vocab, f.dim, f.policy):
                    raise ValueError(f"field {f.name!r}: shares the table of {o.name!r}, so vocab, dim "
                                     f"and policy must equal its ({o.vocab}, {o.dim}, {o.policy!r}), got "
                                     f"({f.vocab}, {f.dim}, {f.policy!r})")
        timed = set()
        for f in fields:
            if isinstance(f, TimestampField):
                if not isinstance(by_name.get(f.sequence), SequenceField):
                    raise ValueError(f"field {f.name!r}: sequence {f.sequence!r} must name a sequence "
                                     f"field of the schema")
                if f.sequence in timed:
                    raise ValueError(f"field {f.name!r}: sequence {f.sequence!r} already has timestamps")
                timed.add(f.sequence)
        self.fields: List[Field] = fields
        self._by_name = {f.name: f for f in fields}

    @property
    def names(self) -> List[str]:
        return [f.name for f in self.fields]

    def __getitem__(self, name: str) -> Field:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no field {name!r} in schema (fields: {self.names})") from None

    def __contains__(self, name) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Field]:
        return iter(self.fields)

    def __len__(self) -> int:
        return len(self.fields)

    def __eq__(self, other) -> bool:
        return isinstance(other, Schema) and self.to_json() == other.to_json()

    def __repr__(self) -> str:
        return f"Schema({self.fields!r})"

    def width(self, names: Sequence[str] = None) -> int:
        """Total width of the given fields (all fields when ``names`` is None)."""
        names = self.names if names is None else names
        return sum(self[n].dim for n in names)

    def to_json(self) -> list:
        return [f.to_json() for f in self.fields]

    @classmethod
    def from_json(cls, data) -> "Schema":
        if isinstance(data, Mapping) and "fields" in data:
            data = data["fields"]
        if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
            raise ValueError("Schema.from_json expects a list of field objects")
        return cls([field_from_json(d) for d in data])
