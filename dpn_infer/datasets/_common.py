from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Split:
    features: dict
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx) -> "Split":
        return Split({k: v[idx] for k, v in self.features.items()}, self.labels[idx])

    def batches(self, size: int, shuffle: bool = False, rng=None):
        order = np.arange(len(self))
        if shuffle:
            (rng or np.random.default_rng()).shuffle(order)
        for start in range(0, len(order), size):
            yield self.take(order[start:start + size])


@dataclass
class Dataset:
    name: str
    schema: list
    train: Split
    valid: Split
    test: Split
    info: dict = field(default_factory=dict)


def split_indices(n: int, fractions, seed: int):
    """Random split of range(n) by fractions (e.g. (0.8, 0.1, 0.1))."""
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    return np.split(order, cuts)


def find_shared_data(name: str) -> Path | None:
    """Locate ``shared/data/<name>``: $DPN_DATA, then ../shared/data beside the cwd or the checkout."""
    roots = []
    if os.environ.get("DPN_DATA"):
        roots.append(Path(os.environ["DPN_DATA"]))
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *Path.cwd().parents[:2], *here.parents[:4]]:
        roots.append(base / "shared" / "data")
        roots.append(base.parent / "shared" / "data")
    for r in roots:
        if (r / name).is_dir():
            return r / name
    return None
