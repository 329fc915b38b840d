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
    # The fitted dpn_infer.datasets.Indexer of a user's table (None for the built-in loaders):
    # training saves it beside model.bin so serving indexes new rows the same way.
    indexer: object = None


def split_indices(n: int, fractions, seed: int):
    """Random split of range(n) by fractions (e.g. (0.8, 0.1, 0.1))."""
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    return np.split(order, cuts)


# Files that mark a dataset's own folder (so a path to it is told apart from a path to its parent).
MARKERS = {"movielens-100k": ("u.data", "ml-100k.inter"), "movielens-1m": ("ratings.dat",),
           "criteo-10k": ("train.tsv", "train.txt"), "ml-tag-sample": ("ml-tag-sample.data",),
           "frappe": ("frappe.train.libfm", "frappe.validation.libfm", "frappe.test.libfm")}


def _is_dataset(folder: Path, name: str) -> bool:
    if not folder.is_dir():
        return False
    marks = MARKERS.get(name)
    return any((folder / m).exists() for m in marks) if marks else folder.name == name


def dataset_path(name: str, path=None) -> Path | None:
    """Where dataset ``name`` is: ``path`` (a --data argument) when given — the dataset's folder
    or file itself, or a folder holding ``<name>`` (e.g. ``shared/data``) — else
    :func:`find_shared_data`."""
    if path is None or str(path) == "":
        return find_shared_data(name)
    p = Path(path)
    if p.is_dir() and not _is_dataset(p, name) and _is_dataset(p / name, name):
        return p / name
    return p


def find_shared_data(name: str) -> Path | None:
    """Locate ``shared/data/<name>``: $DPN_DATA (the folder holding ``<name>``, or that dataset's
    folder itself), then ../shared/data beside the cwd or the checkout."""
    roots = []
    env = os.environ.get("DPN_DATA")
    if env:
        if _is_dataset(Path(env), name) and not _is_dataset(Path(env) / name, name):
            return Path(env)
        roots.append(Path(env))
    here = Path(__file__).resolve()
    for base in [Path.cwd(), *Path.cwd().parents[:2], *here.parents[:4]]:
        roots.append(base / "shared" / "data")
        roots.append(base.parent / "shared" / "data")
    for r in roots:
        if (r / name).is_dir():
            return r / name
    return None
