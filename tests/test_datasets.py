"""Dataset loaders: the real files in ../shared/data (skipped when absent), hand-checked Criteo
bucketing, libfm field inference, and the MovieLens-1M layout on a tiny generated file set."""
from __future__ import annotations

import math

import numpy as np
import pytest

from dpn_infer.datasets import (bucket_int, find_shared_data, infer_fields, load_criteo,
                                load_dataset, load_frappe, load_libfm, load_ml_tag,
                                load_movielens_100k, load_movielens_1m)


def shared(name):
    return pytest.mark.skipif(find_shared_data(name) is None,
                              reason=f"../shared/data/{name} not present (set DPN_DATA to its parent)")


def _check_ranges(ds):
    for split in (ds.train, ds.valid, ds.test):
        for f in ds.schema:
            v = split.features[f["name"]]
            assert v.dtype == np.int64 and len(v) == len(split)
            if len(v) == 0:
                continue
            if f["kind"] == "sparse":
                assert v.min() >= 0 and v.max() < f["vocab"], f["name"]
            else:
                assert v.ndim == 2 and v.shape[1] == f["max_len"]
                assert v.min() >= -1 and v.max() < f["vocab"] + (f["policy"] == "oov_bucket")
        assert set(np.unique(split.labels)) <= {0.0, 1.0}


# -- MovieLens ------------------------------------------------------------------------------------

@shared("movielens-100k")
def test_movielens_100k_with_sequences():
    ds = load_movielens_100k(sequences=True, max_seq_len=10)
    plain = load_movielens_100k()
    assert ds.info["rows"] == plain.info["rows"] == 100000 - 27145
    np.testing.assert_array_equal(ds.test.features["movie"], plain.test.features["movie"])
    _check_ranges(ds)
    hm, hg = ds.train.features["hist_movie"], ds.train.features["hist_genre"]
    assert hm.shape == hg.shape == (len(ds.train), 10)
    assert ((hm == -1) == (hg == -1)).all()
    # padding is a suffix: once -1, -1 to the end of the row
    pad = hm == -1
    assert (pad[:, :-1] <= pad[:, 1:]).all()
    assert 0.9 < (~pad[:, 0]).mean() < 1.0       # most rows have history; each user's first rating not
    names = [f["name"] for f in ds.schema]
    assert names[-2:] == ["hist_movie", "hist_genre"]
    assert all(f["kind"] == "multi_hot" for f in ds.schema[-2:])


def _write_ml1m(folder):
    folder.mkdir()
    # UserID::MovieID::Rating::Timestamp (user 1: movie 10 at t=100 (5), 20 at t=200 (3),
    # 30 at t=300 (1), 40 at t=300 (4); user 2: 20 (4) at t=50, 10 (2) at t=60)
    (folder / "ratings.dat").write_text(
        "1::10::5::100\n1::20::3::200\n1::30::1::300\n1::40::4::300\n2::20::4::50\n2::10::2::60\n",
        encoding="latin-1")
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n", encoding="latin-1")
    (folder / "movies.dat").write_text(
        "10::Toy Story (1995)::Animation|Children's|Comedy\n20::Heat (1995)::Action|Crime|Thriller\n"
        "30::Sabrina (1995)::Comedy|Romance\n40::Tom and Huck (1995)::Adventure|Children's\n",
        encoding="latin-1")


def test_movielens_1m_layout_tiny(tmp_path):
    folder = tmp_path / "ml-1m"
    _write_ml1m(folder)
    ds = load_movielens_1m(folder, seed=0, sequences=True, max_seq_len=3)
    assert ds.name == "movielens-1m" and ds.info["rows"] == 5          # the rating 3 is dropped
    rows = {}
    for s in (ds.train, ds.valid, ds.test):
        for k in range(len(s)):
            rows[(int(s.features["user"][k]), int(s.features["movie"][k]))] = (
                float(s.labels[k]), s.features["genres"][k].tolist(), s.features["gender"][k],
                s.features["age"][k], s.features["hist_movie"][k].tolist(),
                s.features["hist_genre"][k].tolist())
    # users 1, 2 -> 0, 1; kept movies 10, 20, 30, 40 -> 0, 1, 2, 3
    assert rows[(0, 0)][0] == 1.0 and rows[(0, 2)][0] == 0.0 and rows[(1, 0)][0] == 0.0
    G = {"Action": 1, "Adventure": 2, "Animation": 3, "Children's": 4, "Comedy": 5, "Crime": 6,
         "Romance": 14, "Thriller": 16}
    assert rows[(0, 0)][1] == [G["Animation"], G["Children's"], G["Comedy"], -1, -1, -1]
    assert rows[(0, 0)][2] != rows[(1, 0)][2]          # F vs M
    assert rows[(0, 0)][3] != rows[(1, 0)][3]          # age 1 vs 56
    # histories: strictly earlier, most recent first; movie 20 (rated 3) is still history
    assert rows[(0, 0)][4] == [-1, -1, -1]
    assert rows[(0, 2)][4] == [1, 0, -1]               # t=300: 20 (t=200), 10 (t=100); 40 ties
    assert rows[(0, 3)][4] == [1, 0, -1]
    assert rows[(0, 2)][5] == [G["Action"], G["Animation"], -1]
    assert rows[(1, 0)][4] == [1, -1, -1]
    _check_ranges(ds)


def test_movielens_missing_says_where(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="ml-1m.zip"):
        load_movielens_1m(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="ml-100k.zip"):
        load_movielens_100k(tmp_path)            # a folder without any known layout


# -- Criteo ---------------------------------------------------------------------------------------

def test_criteo_bucketing_hand_values():
    assert bucket_int("") == "NA"
    assert [bucket_int(v) for v in ("-1", "0", "1", "2")] == ["-1", "0", "1", "2"]
    assert bucket_int("3") == "1"          # ln 3 = 1.0986, ^2 = 1.207
    assert bucket_int("10") == "5"         # ln 10 = 2.3026, ^2 = 5.302
    assert bucket_int("100") == "21"       # 21.21
    assert bucket_int("1000") == "47"      # 47.72
    assert bucket_int("1382") == str(math.floor(math.log(1382) ** 2)) == "52"


def _criteo_row(label, ints, cats):
    return "\t".join([str(label)] + ints + cats) + "\n"


def test_criteo_min_count_and_hash_tiny(tmp_path):
    rows = []
    for i in range(20):
        ints = ["" if i % 5 == 0 else str(i)] + ["1"] * 12
        cats = ["aa" if i < 15 else f"rare{i}"] + [""] + ["x"] * 24
        rows.append(_criteo_row(i % 2, ints, cats))
    p = tmp_path / "train.tsv"
    p.write_text("".join(rows))
    ds = load_criteo(p, min_count=3, seed=1)
    assert len(ds.train) == 14 and len(ds.valid) == 4 and len(ds.test) == 2
    c1 = np.concatenate([s.features["C1"] for s in (ds.train, ds.valid, ds.test)])
    assert set(c1.tolist()) <= {0, 1}             # 'aa' -> 1; every rare value -> the OOV id 0
    assert (np.concatenate([s.features["C2"] for s in (ds.train, ds.valid, ds.test)]) == 0).all()
    f = {f["name"]: f for f in ds.schema}
    assert f["C1"]["vocab"] == 2 and f["C2"]["vocab"] == 1 and f["I2"]["vocab"] == 2
    assert len(ds.schema) == 39 and all(x["kind"] == "sparse" for x in ds.schema)
    h = load_criteo(p, hash_buckets=7, seed=1)
    assert {x["vocab"] for x in h.schema[13:]} == {7} and h.schema[13]["policy"] == "hash"
    _check_ranges(ds)
    _check_ranges(h)
    p.write_text("1\t2\t3\n")
    with pytest.raises(ValueError, match="40 tab-separated"):
        load_criteo(p)


@shared("criteo-10k")
def test_criteo_real_file():
    ds = load_criteo(min_count=10)
    assert ds.info["rows"] == 10000
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (7000, 2000, 1000)
    assert 0.2 < ds.info["positive_rate"] < 0.24
    assert len(ds.schema) == 39
    _check_ranges(ds)
    # with an absurd threshold every category is OOV; integer buckets stay
    ds2 = load_criteo(min_count=10 ** 6)
    assert all(f["vocab"] == 1 for f in ds2.schema[13:])
    assert ds2.schema[0]["vocab"] == ds.schema[0]["vocab"] > 5


def test_criteo_missing_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="criteo-10k/train.tsv"):
        load_criteo(tmp_path / "nothing.tsv")


# -- libfm ----------------------------------------------------------------------------------------

def test_libfm_field_inference(tmp_path):
    p = tmp_path / "a.libfm"
    p.write_text("1 5:1 100:1 7:1\n-1 6:1 101:1 7:1\n-1 5:1 102:1 8:1\n1 6:1 100:1 8:1\n"
                 "1 5:1 101:1 9:1\n-1 6:1 102:1 9:1\n1 5:1 100:1 7:1\n-1 6:1 101:1 8:1\n"
                 "1 5:1 102:1 9:1\n-1 6:1 100:1 7:1\n")
    ds = load_libfm(p, seed=0)
    assert [f["vocab"] for f in ds.schema] == [2, 3, 3]
    assert [f["name"] for f in ds.schema] == ["f0", "f1", "f2"]
    assert (len(ds.train), len(ds.valid), len(ds.test)) == (7, 2, 1)
    raw = np.array([[5, 100, 7], [6, 101, 7], [5, 102, 8]])
    ids, vocabs, luts = infer_fields(raw)
    assert ids.tolist() == [[0, 0, 0], [1, 1, 0], [0, 2, 1]] and vocabs == [2, 3, 2]
    labels = np.concatenate([s.labels for s in (ds.train, ds.valid, ds.test)])
    assert sorted(labels.tolist()) == [0.0] * 5 + [1.0] * 5
    with pytest.raises(ValueError, match="columns 0 and 1"):
        infer_fields(np.array([[1, 2], [2, 3]]))
    q = tmp_path / "b.libfm"
    q.write_text("1 1:0.5 2:1\n")
    with pytest.raises(ValueError, match="one-hot"):
        load_libfm(q)
    q.write_text("1 1:1 2:1\n0 1:1\n")
    with pytest.raises(ValueError, match="one feature per field"):
        load_libfm(q)


@shared("frappe")
def test_frappe_real_files():
    ds = load_frappe(seed=3)
    assert ds.info["rows"] == 28860 + 57722
    assert len(ds.schema) == 10
    assert (len(ds.train), len(ds.valid)) == (round(0.7 * 86582), round(0.2 * 86582))
    assert 0.3 < ds.info["positive_rate"] < 0.36          # NFM's frappe: 1 positive : 2 negatives
    # NFM counts 5,382 features over all three files; 5,328 of them occur in these two
    assert sum(f["vocab"] for f in ds.schema) == 5328
    _check_ranges(ds)


@shared("ml-tag-sample")
def test_ml_tag_real_file():
    ds = load_ml_tag()
    assert ds.info["rows"] == 12800
    assert [f["name"] for f in ds.schema] == ["user", "movie", "tag"]
    assert 0.3 < ds.info["positive_rate"] < 0.37
    _check_ranges(ds)


def test_libfm_missing_says_where(tmp_path):
    with pytest.raises(FileNotFoundError, match="frappe"):
        load_frappe(tmp_path)
    with pytest.raises(FileNotFoundError, match="ml-tag-sample.data"):
        load_ml_tag(tmp_path / "x.data")


def test_load_dataset_dispatch():
    ds = load_dataset("synthetic", rows=500, seed=1)
    assert len(ds.train) == 400
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("avazu")
    with pytest.raises(TypeError, match="does not take"):
        load_dataset("synthetic", min_count=3)
