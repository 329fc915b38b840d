"""MovieLens in the AutoInt setting: rating >= 4 -> click, <= 2 -> no click, 3 dropped;
random 80/10/10 split; fields user, movie, age, gender, occupation, zip, genres (multi-hot).

Reads these layouts:
- GroupLens ``ml-100k/``: ``u.data`` (tab), ``u.user`` and ``u.item`` ('|', 19 genre flags);
- the RecBole layout of ``shared/data/movielens-100k``: ``ml-100k.inter``/``.user``/``.item``
  (tab-separated, typed header line, genres space-separated);
- GroupLens ``ml-1m/``: ``ratings.dat``, ``users.dat``, ``movies.dat`` ('::' separated, genres '|').

Optional behaviour sequences (``sequences=True``): for each rating, the user's movies rated strictly
earlier (by timestamp; all ratings, 3s included), most recent first, at most ``max_seq_len``:
``hist_movie`` (movie ids, same index as ``movie``; movies only rated 3 go to the OOV row) and
``hist_genre`` (each of those movies' first genre). int64 [N, T] padded with -1, schema kind
"multi_hot" (mean pooling); ``dpn_infer.train``'s ``seq-dpn`` reads them as "sequence" fields.
With ``timestamps=True`` also ``hist_time``: each of those ratings' timestamp (int64 seconds, -1
where hist_movie is -1), which the session models (``dyjoint``) segment into sessions. It is a
feature, not a schema field (the models that read it add their own "timestamps" field); off by
default because a batch holding it is refused by an engine model without that field.
"""
from __future__ import annotations

import hashlib
import os
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from ._common import Dataset, Split, dataset_path, split_indices

GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
          "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
          "Romance", "Sci-Fi", "Thriller", "War", "Western"]
MAX_GENRES = 6
URL_100K = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
# GroupLens publishes an MD5 beside the zip (ml-100k.zip.md5); a SHA-256 is not published.
MD5_100K = "0e33842e24a9c977be4e0107933c0723"
WHERE = ("MovieLens-100K not found. Pass its folder (GroupLens 'ml-100k' with u.data/u.user/u.item, "
         "or the shared/data/movielens-100k layout), or set DPN_DATA to the folder holding "
         "'movielens-100k'. Download: https://files.grouplens.org/datasets/movielens/ml-100k.zip "
         "(or call load_movielens_100k(download=True) on a machine that is online)")
WHERE_1M = ("MovieLens-1M not found. Download https://files.grouplens.org/datasets/movielens/ml-1m.zip, "
            "unzip it and pass the 'ml-1m' folder (ratings.dat, users.dat, movies.dat) as --data / path, "
            "or put it at $DPN_DATA/movielens-1m or ../shared/data/movielens-1m")


def _read_lines(path: Path, sep: str, skip_header: bool):
    with open(path, encoding="latin-1") as f:
        lines = f.read().splitlines()
    if skip_header:
        lines = lines[1:]
    return [ln.split(sep) for ln in lines if ln.strip()]


def _read_raw(folder: Path):
    """-> ratings [N,4] (user, item, rating, timestamp), users {id: (age, gender, occ, zip)},
    genres {item: [genre names]}."""
    if (folder / "u.data").exists():
        r = np.loadtxt(folder / "u.data", dtype=np.int64, usecols=(0, 1, 2, 3))
        users = {int(p[0]): (p[1], p[2], p[3], p[4]) for p in _read_lines(folder / "u.user", "|", False)}
        genres = {}
        for p in _read_lines(folder / "u.item", "|", False):
            flags = p[-19:]
            genres[int(p[0])] = [GENRES[i] for i, v in enumerate(flags) if v == "1"]
        return r, users, genres
    if (folder / "ml-100k.inter").exists():
        rows = _read_lines(folder / "ml-100k.inter", "\t", True)
        r = np.array([[int(p[0]), int(p[1]), int(float(p[2])), int(float(p[3]))] for p in rows],
                     dtype=np.int64)
        users = {int(p[0]): (p[1], p[2], p[3], p[4]) for p in _read_lines(folder / "ml-100k.user", "\t", True)}
        genres = {int(p[0]): p[3].split() if len(p) > 3 else []
                  for p in _read_lines(folder / "ml-100k.item", "\t", True)}
        return r, users, genres
    if (folder / "ratings.dat").exists():
        for name in ("users.dat", "movies.dat"):
            if not (folder / name).exists():
                raise FileNotFoundError(f"{folder / name}: missing. {WHERE_1M}")
        r = np.array([[int(x) for x in p[:4]] for p in _read_lines(folder / "ratings.dat", "::", False)],
                     dtype=np.int64).reshape(-1, 4)
        # users.dat: UserID::Gender::Age::Occupation::Zip-code -> (age, gender, occ, zip)
        users = {int(p[0]): (p[2], p[1], p[3], p[4]) for p in _read_lines(folder / "users.dat", "::", False)}
        genres = {int(p[0]): [g for g in p[2].split("|") if g]
                  for p in _read_lines(folder / "movies.dat", "::", False)}
        return r, users, genres
    raise FileNotFoundError(f"{folder}: no u.data, ml-100k.inter or ratings.dat. {WHERE}")


def _index(values):
    """Map each distinct value to 0..V-1 (sorted, so ids are stable across runs)."""
    uniq = sorted(set(values))
    lut = {v: i for i, v in enumerate(uniq)}
    return np.array([lut[v] for v in values], dtype=np.int64), len(uniq), lut


def _histories(all_ratings, kept_rows, movie_lut, first_genre, n_movie, T):
    """hist_movie / hist_genre / hist_time [len(kept_rows), T] for the rows ``kept_rows`` of
    all_ratings."""
    users, items, ts = all_ratings[:, 0], all_ratings[:, 1], all_ratings[:, 3]
    hm = np.full((len(all_ratings), T), -1, dtype=np.int64)
    hg = np.full((len(all_ratings), T), -1, dtype=np.int64)
    ht = np.full((len(all_ratings), T), -1, dtype=np.int64)
    order = np.lexsort((ts, users))                       # by user, then time
    bounds = np.flatnonzero(np.diff(users[order])) + 1
    for rows in np.split(order, bounds):
        t = ts[rows]
        mids = np.array([movie_lut.get(int(i), n_movie) for i in items[rows]], dtype=np.int64)
        gids = np.array([first_genre.get(int(i), -1) for i in items[rows]], dtype=np.int64)
        # number of this user's ratings strictly earlier than each one (ties are not "earlier")
        n_before = np.searchsorted(t, t, side="left")
        for k, row in enumerate(rows):
            n = n_before[k]
            if n == 0:
                continue
            lo = max(0, n - T)
            hm[row, :n - lo] = mids[lo:n][::-1]
            hg[row, :n - lo] = gids[lo:n][::-1]
            ht[row, :n - lo] = t[lo:n][::-1]
    return hm[kept_rows], hg[kept_rows], ht[kept_rows]


def _build(folder: Path, name: str, seed: int, embed_dim: int, sequences: bool,
           max_seq_len: int, timestamps: bool = False) -> Dataset:
    all_ratings, users, genres = _read_raw(folder)
    keep = all_ratings[:, 2] != 3
    ratings = all_ratings[keep]
    labels = (ratings[:, 2] >= 4).astype(np.float32)

    uid, n_user, _ = _index(ratings[:, 0].tolist())
    mid, n_movie, movie_lut = _index(ratings[:, 1].tolist())
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
    if sequences:
        first_genre = {item: glut[g[0]] for item, g in genres.items() if g and g[0] in glut}
        hm, hg, ht = _histories(all_ratings, np.flatnonzero(keep), movie_lut, first_genre, n_movie,
                                max_seq_len)
        features["hist_movie"] = hm
        features["hist_genre"] = hg
        if timestamps:
            features["hist_time"] = ht
        schema += [
            {"name": "hist_movie", "kind": "multi_hot", "vocab": n_movie, "dim": d, "pooling": "mean",
             "max_len": max_seq_len, "policy": "oov_bucket"},
            {"name": "hist_genre", "kind": "multi_hot", "vocab": len(GENRES), "dim": d,
             "pooling": "mean", "max_len": max_seq_len, "policy": "error"},
        ]
    all_rows = Split(features, labels)
    tr, va, te = split_indices(len(labels), (0.8, 0.1, 0.1), seed)
    return Dataset(name, schema, all_rows.take(tr), all_rows.take(va), all_rows.take(te),
                   info={"path": str(folder), "rows": int(len(labels)),
                         "positive_rate": float(labels.mean()), "seed": seed,
                         "sequences": bool(sequences), "max_seq_len": max_seq_len if sequences else 0,
                         "timestamps": bool(sequences and timestamps)})


def download_movielens_100k(dest=None, timeout: float = 60.0) -> Path:
    """Download ml-100k.zip from GroupLens into ``dest`` (default ~/.cache/dpn_infer), check its
    MD5 against the published one, unzip; -> the ``ml-100k`` folder. Needs network access."""
    dest = Path(dest) if dest else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dpn_infer"
    folder = dest / "ml-100k"
    if (folder / "u.data").exists():
        return folder
    dest.mkdir(parents=True, exist_ok=True)
    zpath = dest / "ml-100k.zip"
    with urllib.request.urlopen(URL_100K, timeout=timeout) as resp:
        data = resp.read()
    digest = hashlib.md5(data).hexdigest()
    if digest != MD5_100K:
        raise OSError(f"{URL_100K}: checksum mismatch (md5 {digest}, expected {MD5_100K}); not used")
    zpath.write_bytes(data)
    with zipfile.ZipFile(zpath) as z:
        z.extractall(dest)
    return folder


def load_movielens_100k(path=None, seed: int = 2022, embed_dim: int = 16, sequences: bool = False,
                        max_seq_len: int = 20, download: bool = False, timestamps: bool = False) -> Dataset:
    """Load MovieLens-100K from ``path`` (or the shared data folder) as a CTR task (``sequences``,
    ``max_seq_len``, ``timestamps``: the module docstring).

    ``download=True``: when no folder is found, fetch it from GroupLens (MD5-checked) into
    ~/.cache/dpn_infer."""
    folder = dataset_path("movielens-100k", path)
    if folder is None and download:
        folder = download_movielens_100k()
    if folder is None or not folder.is_dir():
        raise FileNotFoundError(WHERE if folder is None else f"{folder}: not a folder. {WHERE}")
    return _build(folder, "movielens-100k", seed, embed_dim, sequences, max_seq_len, timestamps)


def load_movielens_1m(path=None, seed: int = 2022, embed_dim: int = 16, sequences: bool = False,
                      max_seq_len: int = 20, timestamps: bool = False) -> Dataset:
    """Load MovieLens-1M (GroupLens ``ml-1m`` layout) in the AutoInt setting."""
    folder = dataset_path("movielens-1m", path)
    if folder is None or not (folder / "ratings.dat").exists():
        raise FileNotFoundError(WHERE_1M if folder is None else f"{folder}: no ratings.dat. {WHERE_1M}")
    return _build(folder, "movielens-1m", seed, embed_dim, sequences, max_seq_len, timestamps)
