"""MovieLens-100K in the AutoInt setting: rating >= 4 -> click, <= 2 -> no click, 3 dropped;
random 80/10/10 split; fields user, movie, age, gender, occupation, zip, genres (multi-hot).

Reads either layout:
- GroupLens ``ml-100k/``: ``u.data`` (tab), ``u.user`` and ``u.item`` ('|', 19 genre flags);
- the RecBole layout of ``shared/data/movielens-100k``: ``ml-100k.inter``/``.user``/``.item``
  (tab-separated, typed header line, genres space-separated).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ._common import Dataset, Split, find_shared_data, split_indices

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]
MAX_GENRES = 6
WHERE = ("MovieLens-100K not found. Pass its folder (GroupLens 'ml-100k' with u.data/u.user/u.item, "
         "or the shared/data/movielens-100k layout), or set DPN_DATA to the folder holding "
         "'movielens-100k'. Download: https://files.grouplens.org/datasets/movielens/ml-100k.zip")


def _read_lines(path: Path, sep: str, skip_header: bool):
    with open(path, encoding="latin-1") as f:
        lines = f.read().splitlines()
    if skip_header:
        lines = lines[1:]
    return [ln.split(sep) for ln in lines if ln.strip()]


def _read_raw(folder: Path):
    """-> ratings [N,3] (user, item, rating), users {id: (age, gender, occ, zip)}, genres {item: [..]}."""
    if (folder / "u.data").exists():
        r = np.loadtxt(folder / "u.data", dtype=np.int64, usecols=(0, 1, 2))
        users = {int(p[0]): (p[1], p[2], p[3], p[4]) for p in _read_lines(folder / "u.user", "|", False)}
        genres = {}
        for p in _read_lines(folder / "u.item", "|", False):
            flags = p[-19:]
            genres[int(p[0])] = [GENRES[i] for i, v in enumerate(flags) if v == "1"]
        return r, users, genres
    if (folder / "ml-100k.inter").exists():
        rows = _read_lines(folder / "ml-100k.inter", "\t", True)
        r = np.array([[int(p[0]), int(p[1]), int(float(p[2]))] for p in rows], dtype=np.int64)
        users = {int(p[0]): (p[1], p[2], p[3], p[4]) for p in _read_lines(folder / "ml-100k.user", "\t", True)}
        genres = {int(p[0]): p[3].split() if len(p) > 3 else []
                  for p in _read_lines(folder / "ml-100k.item", "\t", True)}
        return r, users, genres
    raise FileNotFoundError(f"{folder}: {WHERE}")


def _index(values):
    """Map each distinct value to 0..V-1 (sorted, so ids are stable across runs)."""
    uniq = sorted(set(values))
    lut = {v: i for i, v in enumerate(uniq)}
    return np.array([lut[v] for v in values], dtype=np.int64), len(uniq), lut


def load_movielens_100k(path=None, seed: int = 2022, embed_dim: int = 16) -> Dataset:
    """Load MovieLens-100K from ``path`` (or the shared data folder) as a CTR task."""
    folder = Path(path) if path else find_shared_data("movielens-100k")
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(WHERE)
    ratings, users, genres = _read_raw(folder)
    keep = ratings[:, 2] != 3
    ratings = ratings[keep]
    labels = (ratings[:, 2] >= 4).astype(np.float32)

    uid, n_user, _ = _index(ratings[:, 0].tolist())
    mid, n_movie, _ = _index(ratings[:, 1].tolist())
    prof = [users[int(u)] for u in ratings[:, 0]]
    age, n_age, _ = _index([p[0] for p in prof])
    gender, n_gender, _ = _index([p[1] for p in prof])
    occ, n_occ, _ = _index([p[2] for p in prof])
    zips, n_zip, _ = _index([p[3] for p in prof])
    glut = {g: i for i, g in enumerate(GENRES)}
    gen = np.full((len(ratings), MAX_GENRES), -1, dtype=np.int64)
    for row, item in enumerate(ratings[:, 1]):
        ids = [glut[g] for g in genres.get(int(item), []) if g in glut][:MAX_GENRES]
        gen[row, :len(ids)] = ids

    features = {"user": uid, "movie": mid, "age": age, "gender": gender,
                "occupation": occ, "zip": zips, "genres": gen}
    d = embed_dim
    schema = [
        {"name": "user", "kind": "sparse", "vocab": n_user, "dim": d, "policy": "oov_bucket"},
        {"name": "movie", "kind": "sparse", "vocab": n_movie, "dim": d, "policy": "oov_bucket"},
        {"name": "age", "kind": "sparse", "vocab": n_age, "dim": d, "policy": "oov_bucket"},
        {"name": "gender", "kind": "sparse", "vocab": n_gender, "dim": d, "policy": "oov_bucket"},
        {"name": "occupation", "kind": "sparse", "vocab": n_occ, "dim": d, "policy": "oov_bucket"},
        {"name": "zip", "kind": "sparse", "vocab": n_zip, "dim": d, "policy": "oov_bucket"},
        {"name": "genres", "kind": "multi_hot", "vocab": len(GENRES), "dim": d, "pooling": "mean",
         "max_len": MAX_GENRES, "policy": "error"},
    ]
    all_rows = Split(features, labels)
    tr, va, te = split_indices(len(labels), (0.8, 0.1, 0.1), seed)
    return Dataset("movielens-100k", schema, all_rows.take(tr), all_rows.take(va), all_rows.take(te),
                   info={"path": str(folder), "rows": int(len(labels)),
                         "positive_rate": float(labels.mean())})
