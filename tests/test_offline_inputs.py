"""predict on pandas DataFrames and pyarrow Tables / RecordBatches, and cast=True (dpn_infer/_frames.py).

Every input form must give exactly (np.array_equal) the predictions of the dict of numpy arrays it
stands for: on the tiny model (helpers/files.py: sparse, multi_hot, dense fields) and on the golden
opset-2 sequence model (tests/golden/v1/opset2-seq: two sequence fields, one truncating)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pd = pytest.importorskip("pandas")
pa = pytest.importorskip("pyarrow")

from dpn_infer.engine import InputError, load
from helpers import files as HF

SEQ_DIR = Path(__file__).parent / "golden" / "v1" / "opset2-seq"
SIZES = st.one_of(st.sampled_from([1, 2, 3, 7, 31]), st.integers(1, 80))


def expect_input_error(model, data, field, match=None, **kw):
    with pytest.raises(InputError) as ei:
        model.predict(data, **kw)
    msg = str(ei.value)
    assert f"'{field}'" in msg, f"InputError message does not name field {field!r}: {msg!r}"
    if match:
        assert match in msg, msg
    return msg


def lists(padded):
    """The rows of a -1-padded id array as lists, padding dropped (-1 may stand anywhere)."""
    return [r[r >= 0].tolist() for r in padded]


def ragged(padded):
    rows = [r[r >= 0] for r in padded]
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
    return np.concatenate(rows + [np.zeros(0, np.int64)]).astype(np.int64), offsets


def tiny_frame(b):
    """A DataFrame for a tiny batch: list columns for tags and ctx, plus columns that are no field."""
    return pd.DataFrame({"label": np.arange(len(b["user"])) % 2, "user": b["user"], "tags": lists(b["tags"]),
                         "item": b["item"], "price": b["price"], "ctx": list(b["ctx"]), "req_id": "r"})


@pytest.fixture(scope="module")
def seq_model():
    return load(str(SEQ_DIR / "model.bin"))


@pytest.fixture(scope="module")
def seq_batch():
    with np.load(SEQ_DIR / "batch.npz") as z:
        return {k: z[k] for k in z.files}


def seq_table(b, list_type=pa.list_):
    cols = {k: pa.array(lists(v), type=list_type(pa.int64())) if v.ndim == 2 else pa.array(v)
            for k, v in b.items()}
    return pa.table(cols)


# --- the tiny model --------------------------------------------------------------------------------

@settings(max_examples=25, deadline=None)
@given(n=SIZES, seed=st.integers(0, 2**16))
def test_tiny_every_form_equals_dict(tiny_model, n, seed):
    b = HF.tiny_batch(n, seed)
    want = tiny_model.predict(b)
    df = tiny_frame(b)
    t = pa.Table.from_pandas(df, preserve_index=False)
    for data in (df, t, t.to_batches()[0]):
        assert np.array_equal(tiny_model.predict(data), want), type(data).__name__
    # Fixed-size lists for the dense dim-3 field and large_list for the multi-hot field.
    t2 = t.set_column(t.schema.get_field_index("ctx"), "ctx", pa.array(list(b["ctx"]), pa.list_(pa.float32(), 3)))
    t2 = t2.set_column(t2.schema.get_field_index("tags"), "tags", pa.array(lists(b["tags"]), pa.large_list(pa.int64())))
    assert np.array_equal(tiny_model.predict(t2), want)
    assert np.array_equal(tiny_model.predict(b, cast=True), want)


def test_tiny_sliced_and_chunked(tiny_model):
    b = HF.tiny_batch(40, 3)
    want = tiny_model.predict(b)
    t = pa.Table.from_pandas(tiny_frame(b), preserve_index=False)
    for start, length in [(0, 1), (5, 17), (39, 1), (13, 27)]:
        assert np.array_equal(tiny_model.predict(t.slice(start, length)), want[start:start + length])
        rb = t.to_batches()[0].slice(start, length)
        assert np.array_equal(tiny_model.predict(rb), want[start:start + length])
    chunked = pa.concat_tables([t.slice(0, 11), t.slice(11, 20), t.slice(31)])
    assert chunked.column("tags").num_chunks == 3
    assert np.array_equal(tiny_model.predict(chunked), want)


def test_multi_hot_list_column_padding(tiny_model):
    """A multi-hot list column is padded with -1 to the longest row; all-empty rows score as a
    padded row of -1; past max_len (4) is refused as for an array."""
    b = HF.tiny_batch(5, 2)
    b["tags"] = np.full((5, 4), -1, np.int64)
    b["tags"][1, :2] = [3, 1]
    want = tiny_model.predict(b)
    df = tiny_frame(b)
    assert df["tags"].tolist()[0] == []
    assert np.array_equal(tiny_model.predict(df), want)
    b["tags"][1, :2] = -1
    assert np.array_equal(tiny_model.predict(tiny_frame(b)), tiny_model.predict(b))  # every row empty
    df = tiny_frame(b)
    df.at[2, "tags"] = [1, 2, 3, 4, 0]
    expect_input_error(tiny_model, df, "tags")


def test_zero_rows(tiny_model, seq_model, seq_batch, monkeypatch):
    df = tiny_frame(HF.tiny_batch(4)).iloc[:0]
    sdf = seq_table(seq_batch).to_pandas().iloc[:0]
    for model, data in ((tiny_model, df), (tiny_model, pa.Table.from_pandas(df)), (seq_model, sdf),
                        (seq_model, seq_table(seq_batch).slice(0, 0))):
        assert model.predict(data).shape == (0,)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    assert tiny_model.predict(df).shape == (0,) and seq_model.predict(sdf).shape == (0,)


def test_missing_and_extra_columns(tiny_model):
    df = tiny_frame(HF.tiny_batch(4))
    msg = expect_input_error(tiny_model, df.drop(columns=["item"]), "item", "missing")
    assert "'user'" in msg  # names the columns that are there
    expect_input_error(tiny_model, pa.Table.from_pandas(df.drop(columns=["price"])), "price", "missing")
    tiny_model.predict(df.assign(extra=1.5))  # not a field: ignored, unlike a dict's unknown key
    with pytest.raises(InputError, match="'extra'"):
        tiny_model.predict(dict(HF.tiny_batch(4), extra=np.zeros(4)))


def test_dense_list_rows_need_dim_values(tiny_model):
    df = tiny_frame(HF.tiny_batch(4))
    df.at[3, "ctx"] = np.zeros(2, np.float32)
    expect_input_error(tiny_model, df, "ctx", "row 3 has 2 values")
    expect_input_error(tiny_model, tiny_frame(HF.tiny_batch(4)).assign(tags=1), "tags", "list")


def test_nulls_are_refused_naming_the_field(tiny_model, seq_model, seq_batch):
    t = pa.Table.from_pandas(tiny_frame(HF.tiny_batch(4)), preserve_index=False)
    i = t.schema.get_field_index("tags")
    expect_input_error(tiny_model, t.set_column(i, "tags", pa.array([[1], None, [], [2]])), "tags", "null")
    expect_input_error(tiny_model, t.set_column(i, "tags", pa.array([[1], [None], [], [2]])), "tags", "null")
    j = t.schema.get_field_index("user")
    expect_input_error(tiny_model, t.set_column(j, "user", pa.array([1, None, 2, 3])), "user", "null")
    df = tiny_frame(HF.tiny_batch(4))
    df.at[1, "tags"] = None
    expect_input_error(tiny_model, df, "tags")
    df = tiny_frame(HF.tiny_batch(4)).astype({"user": "Int64"})
    df.loc[2, "user"] = pd.NA
    expect_input_error(tiny_model, df, "user", "null")
    st_ = seq_table(seq_batch)
    k = st_.schema.get_field_index("hist_item")
    vals = st_.column("hist_item").to_pylist()
    vals[4] = None
    expect_input_error(seq_model, st_.set_column(k, "hist_item", pa.array(vals)), "hist_item", "null")


def test_pandas_extension_and_arrow_dtypes(tiny_model, seq_model, seq_batch):
    b = HF.tiny_batch(6, 4)
    want = tiny_model.predict(b)
    df = tiny_frame(b).astype({"user": "Int64", "item": pd.ArrowDtype(pa.int64())})
    df["tags"] = pd.Series(lists(b["tags"]), dtype=pd.ArrowDtype(pa.list_(pa.int64())))
    assert np.array_equal(tiny_model.predict(df), want)
    sdf = seq_table(seq_batch).to_pandas(types_mapper=pd.ArrowDtype)
    assert np.array_equal(seq_model.predict(sdf), seq_model.predict(seq_batch))


def test_pandas_object_columns_without_pyarrow(tiny_model, seq_model, seq_batch, monkeypatch):
    """Object columns of lists / arrays are read with numpy when pyarrow cannot be imported."""
    b = HF.tiny_batch(7, 5)
    df = tiny_frame(b)
    sdf = seq_table(seq_batch).to_pandas()
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` raises ImportError
    assert np.array_equal(tiny_model.predict(df), tiny_model.predict(b))
    assert np.array_equal(seq_model.predict(sdf), seq_model.predict(seq_batch))
    df.at[2, "tags"] = None
    expect_input_error(tiny_model, df, "tags", "missing")


# --- sequences -------------------------------------------------------------------------------------

@pytest.mark.parametrize("list_type", [pa.list_, pa.large_list])
def test_sequence_list_columns(seq_model, seq_batch, list_type):
    want = seq_model.predict(seq_batch)
    t = seq_table(seq_batch, list_type)
    for data in (t, t.to_batches()[0], t.to_pandas()):
        assert np.array_equal(seq_model.predict(data), want)
    B = len(want)
    for start, length in [(0, 1), (1, B - 1), (4, 5), (B - 1, 1), (3, 0)]:
        assert np.array_equal(seq_model.predict(t.slice(start, length)), want[start:start + length])


@settings(max_examples=20, deadline=None)
@given(n=SIZES, start=st.integers(0, 9), seed=st.integers(0, 2**16))
def test_sequence_ragged_random(seq_model, n, start, seed):
    """Random histories, empty rows included, from a sliced Arrow array: equal to the dict's ragged
    (values, offsets), and those values are the Arrow buffer itself (no copy)."""
    from dpn_infer import _frames

    rng = np.random.default_rng(seed)
    total = start + n
    rows = [rng.integers(0, 50, size=rng.integers(0, 7)).tolist() for _ in range(total)]  # max_len 6
    cats = [rng.integers(0, 9, size=rng.integers(0, 12)).tolist() for _ in range(total)]
    t = pa.table({"item": rng.integers(0, 40, total), "cat": rng.integers(0, 7, total),
                  "user": rng.integers(0, 25, total), "hist_item": rows, "hist_cat": cats}).slice(start, n)
    d = {k: np.asarray(t.column(k)) for k in ("item", "cat", "user")}
    for k, col in (("hist_item", rows), ("hist_cat", cats)):
        part = col[start:]
        d[k] = (np.array([x for r in part for x in r], np.int64),
                np.concatenate([[0], np.cumsum([len(r) for r in part])]).astype(np.int64))
    want = seq_model.predict(d)
    assert np.array_equal(seq_model.predict(t), want)
    got = _frames.to_batch(seq_model.schema, t, cast=False)["hist_item"]
    arr = t.column("hist_item").chunk(0)
    np.testing.assert_array_equal(got[1], d["hist_item"][1])
    if len(got[0]):
        first = int(np.asarray(arr.offsets)[0])
        address = arr.values.buffers()[1].address + (arr.values.offset + first) * 8
        assert got[0].__array_interface__["data"][0] == address  # a view of the Arrow values


def test_sequence_int32_values(seq_model, seq_batch):
    want = seq_model.predict(seq_batch)
    t = pa.table({k: pa.array(lists(v), pa.list_(pa.int32())) if v.ndim == 2 else pa.array(v.astype(np.int32))
                  for k, v in seq_batch.items()})
    expect_input_error(seq_model, t, "item", "int32")
    assert np.array_equal(seq_model.predict(t, cast=True), want)
    d = {k: ragged(v) if v.ndim == 2 else v for k, v in seq_batch.items()}
    d32 = {k: tuple(p.astype(np.int32) for p in v) if isinstance(v, tuple) else v for k, v in d.items()}
    assert np.array_equal(seq_model.predict(d32, cast=True), want)


# --- cast=True -------------------------------------------------------------------------------------

@pytest.mark.parametrize("id_dtype", [np.int32, np.uint8, np.int16, np.uint64])
def test_cast_ids(tiny_model, id_dtype):
    b = HF.tiny_batch(9)
    b["user"] = np.abs(b["user"])
    b["item"] = b["item"]
    want = tiny_model.predict(b)
    b2 = dict(b, user=b["user"].astype(id_dtype), item=b["item"].astype(id_dtype))
    expect_input_error(tiny_model, b2, "user", np.dtype(id_dtype).name)
    for data in (b2, tiny_frame(b2), pa.Table.from_pandas(tiny_frame(b2))):
        assert np.array_equal(tiny_model.predict(data, cast=True), want)
    expect_input_error(tiny_model, tiny_frame(b2), "user")


def test_cast_values_and_range(tiny_model):
    b = HF.tiny_batch(9)
    want = tiny_model.predict(b)
    b64 = dict(b, price=b["price"].astype(np.float64), ctx=b["ctx"].astype(np.float64))
    expect_input_error(tiny_model, b64, "price", "float64")
    for data in (b64, tiny_frame(b64), pa.Table.from_pandas(tiny_frame(b64))):
        assert np.array_equal(tiny_model.predict(data, cast=True), want)
    big = dict(b64, ctx=b64["ctx"].copy())
    big["ctx"][4, 1] = 1e300
    for data in (big, tiny_frame(big), pa.Table.from_pandas(tiny_frame(big))):
        expect_input_error(tiny_model, data, "ctx", "float32's range", cast=True)
    b16 = dict(b, price=b["price"].astype(np.float16))
    assert np.array_equal(tiny_model.predict(b16, cast=True), tiny_model.predict(
        dict(b, price=b16["price"].astype(np.float32))))


def test_cast_refusals(tiny_model):
    b = HF.tiny_batch(4)
    expect_input_error(tiny_model, dict(b, user=b["user"].astype(np.float64)), "user", cast=True)
    huge = dict(b, item=np.array([0, 1, 2**63 + 5, 3], np.uint64))
    expect_input_error(tiny_model, huge, "item", "int64", cast=True)
    expect_input_error(tiny_model, dict(b, price=b["price"].astype(np.int64)), "price", cast=True)
    expect_input_error(tiny_model, {k: v for k, v in b.items() if k != "ctx"}, "ctx", "missing", cast=True)
    with pytest.raises(InputError, match="'extra'"):
        tiny_model.predict(dict(b, extra=np.zeros(4)), cast=True)


def test_other_objects_are_a_type_error(tiny_model):
    with pytest.raises(TypeError, match="DataFrame"):
        tiny_model.predict([1, 2, 3])
    with pytest.raises(TypeError, match="mapping"):
        tiny_model.predict(pd.Series([1, 2]))


def test_import_does_not_import_pandas_or_pyarrow(tiny_file):
    code = ("import sys, numpy as np, dpn_infer\n"
            "sys.path.insert(0, %r)\n"
            "from helpers import files as HF\n"
            "m = dpn_infer.load(%r); m.predict(HF.tiny_batch(3)); m.predict(HF.tiny_batch(3), cast=True)\n"
            "bad = [k for k in ('pandas', 'pyarrow') if k in sys.modules]\n"
            "assert not bad, bad\n") % (str(Path(__file__).parent), tiny_file.path)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_offline_doc_examples_run(tmp_path, monkeypatch):
    """docs/offline.md's examples run in order, as written; those tagged ```python ray / spark
    need a cluster and run in tests/test_ray.py and tests/test_spark.py (after these)."""
    from helpers import docs

    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    assert docs.run("offline.md") >= 5
    assert {tag for tag, _ in docs.blocks("offline.md")} == {"", "ray", "spark"}
