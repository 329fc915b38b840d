"""`dpn-infer score` (dpn_infer/_stream.py): Parquet / CSV files and directories in, one Parquet / CSV
file out, equal row for row (np.array_equal: the same engine on the same rows) to in-process
``predict``, in bounded memory.

The command runs in a child process started in an empty folder, so it imports the installed package
(never the checkout's source tree); each test first checks its output against ``predict``, so a child
that scored nothing cannot pass."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pacsv = pytest.importorskip("pyarrow.csv")

from dpn_infer.engine import load

SEQ_DIR = Path(__file__).parent / "golden" / "v1" / "opset2-seq"


# The child imports what scoring needs, then resets its peak RSS (Linux: clear_refs 5), so the peak
# it reports is that of the scoring alone, not of the imports.
CHILD = """import sys
import numpy, pyarrow.parquet, dpn_infer.engine, dpn_infer._stream
from dpn_infer.cli import main
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
rc = main(ARGS)
peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print("PEAK", peak[0].split()[1])
sys.exit(rc)
"""


def score(cwd, *args):
    """Run `dpn-infer score ARGS` in a child in ``cwd``; returns (rc, stderr, the scoring's peak RSS
    in kB)."""
    code = CHILD.replace("ARGS", repr(["score", *map(str, args)]))
    p = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)
    rss = [int(line.split()[1]) for line in p.stdout.splitlines() if line.startswith("PEAK")]
    return p.returncode, p.stderr, (rss[0] if rss else None)


def lists(padded):
    return [r[r >= 0].tolist() for r in padded]


@pytest.fixture(scope="module")
def seq():
    """The golden opset-2 sequence model (two sequence fields) and a 600-row table of its fields as
    Arrow list columns, with a row id."""
    model = load(str(SEQ_DIR / "model.bin"))
    with np.load(SEQ_DIR / "batch.npz") as z:
        base = {k: z[k] for k in z.files}
    n0 = len(next(iter(base.values())))
    idx = np.random.default_rng(0).integers(0, n0, 600)
    batch = {k: v[idx] for k, v in base.items()}
    cols = {k: pa.array(lists(v), pa.list_(pa.int64())) if v.ndim == 2 else pa.array(v) for k, v in batch.items()}
    table = pa.table({**cols, "rid": np.arange(600, dtype=np.int64)})
    return model, table, model.predict(table)


def test_parquet_file_with_list_columns(tmp_path, seq):
    model, table, want = seq
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=128)
    rc, err, _ = score(tmp_path, SEQ_DIR / "model.bin", "--input", "in.parquet", "--output", "out.parquet",
                       "--batch-rows", 50, "--keep-columns", "rid", "--threads", 2)
    assert rc == 0, err
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.names == ["rid", "score"] and out.schema.field("score").type == pa.float32()
    assert np.array_equal(out.column("rid").to_numpy(), np.arange(600))
    assert np.array_equal(out.column("score").to_numpy(), want)
    assert "scored 600 rows from 1 file(s)" in err
    assert sorted(os.listdir(tmp_path)) == ["in.parquet", "out.parquet"]  # no temporary file left


def test_directory_of_parquet_files_in_name_order(tmp_path, seq):
    """A directory (Hive partition folders included) is read in path order; _SUCCESS and dot files
    are skipped; logits, a custom score column and several kept columns work."""
    model, table, want = seq
    d = tmp_path / "log"
    (d / "day=1").mkdir(parents=True)
    (d / "day=2").mkdir()
    pq.write_table(table.slice(0, 250), d / "day=1" / "part-0.parquet")
    pq.write_table(table.slice(250, 1), d / "day=1" / "part-1.parquet")
    pq.write_table(table.slice(251, 0), d / "day=2" / "empty.parquet")
    pq.write_table(table.slice(251), d / "day=2" / "part-0.parquet")
    (d / "_SUCCESS").write_text("")
    (d / ".part-0.parquet.crc").write_text("x")
    rc, err, _ = score(tmp_path, SEQ_DIR / "model.bin", "-i", "log", "-o", "s.parquet", "--logits",
                       "--output-column", "logit", "--keep-columns", "rid,item", "--no-progress")
    assert rc == 0, err
    out = pq.read_table(tmp_path / "s.parquet")
    assert out.schema.names == ["rid", "item", "logit"]
    assert np.array_equal(out.column("rid").to_numpy(), np.arange(600))
    assert np.array_equal(out.column("logit").to_numpy(), model.predict(table, logits=True))
    assert "from 4 file(s)" in err


def small_model(path):
    """A DNN over two sparse fields and a dense scalar: the fields a CSV column can hold."""
    torch = pytest.importorskip("torch")
    import dpn_infer
    from dpn_infer.nn import DNN, DenseField, Schema, SparseField

    torch.manual_seed(0)
    schema = Schema([SparseField("user", vocab=50, dim=4), SparseField("item", vocab=30, dim=4),
                     DenseField("price", dim=1)])
    dpn_infer.save(DNN(schema, hidden=[8]).eval(), str(path))
    return load(str(path))


def test_csv_in_and_out(tmp_path):
    model = small_model(tmp_path / "m.bin")
    rng = np.random.default_rng(1)
    n = 2000
    t = pa.table({"user": rng.integers(0, 50, n), "note": ["a,b"] * n, "item": rng.integers(0, 30, n),
                  "price": rng.standard_normal(n)})           # float64 in the CSV: read as float32
    pacsv.write_csv(t, tmp_path / "in.csv")
    rc, err, _ = score(tmp_path, "m.bin", "-i", "in.csv", "-o", "out.csv", "--batch-rows", 300,
                       "--keep-columns", "note")
    assert rc == 0, err
    out = pacsv.read_csv(tmp_path / "out.csv")
    back = pacsv.read_csv(tmp_path / "in.csv", convert_options=pacsv.ConvertOptions(
        column_types={"user": pa.int64(), "item": pa.int64(), "price": pa.float32()}))
    want = model.predict(back)
    # CSV prints float32 scores with enough digits to round-trip (shortest repr).
    assert np.array_equal(out.column("score").to_numpy().astype(np.float32), want)
    assert out.column("note").to_pylist() == ["a,b"] * n


def test_errors_name_the_problem_and_leave_no_file(tmp_path, seq):
    model, table, _ = seq
    pq.write_table(table.drop_columns(["hist_cat"]), tmp_path / "nohist.parquet")
    pq.write_table(table, tmp_path / "ok.parquet")
    bad = table.set_column(table.schema.get_field_index("item"), "item",
                           pa.array(table.column("item").to_numpy().astype(np.float64)))
    pq.write_table(bad, tmp_path / "badtype.parquet")
    cases = [
        (["-i", "nohist.parquet", "-o", "o.parquet"], "hist_cat"),
        (["-i", "ok.parquet", "-o", "o.parquet", "--keep-columns", "nope"], "nope"),
        (["-i", "ok.parquet", "-o", "o.parquet", "--keep-columns", "rid", "--output-column", "rid"], "'rid'"),
        (["-i", "badtype.parquet", "-o", "o.parquet"], "'item'"),
        (["-i", "missing.parquet", "-o", "o.parquet"], "missing.parquet"),
        (["-i", "ok.parquet", "-o", "o.txt"], "--output-format"),
        (["-i", "damaged.parquet", "-o", "o.parquet"], "damaged.parquet"),
        (["-i", "ok.parquet", "-o", "o.csv", "--keep-columns", "hist_item"], "CSV cannot hold"),
    ]
    (tmp_path / "damaged.parquet").write_bytes((tmp_path / "ok.parquet").read_bytes()[:-100])
    for args, needle in cases:
        rc, err, _ = score(tmp_path, SEQ_DIR / "model.bin", *args)
        assert rc == 1, (args, err)
        assert "Traceback" not in err, (args, err)
        assert needle in err, (args, err)
        left = sorted(f for f in os.listdir(tmp_path) if not f.endswith(".parquet") or f == "o.parquet")
        assert left == [], (args, left)
    for bad in ("0", "-2"):  # usage errors: argparse's status 2
        rc, err, _ = score(tmp_path, SEQ_DIR / "model.bin", "-i", "ok.parquet", "-o", "o.parquet", "--threads", bad)
        assert rc == 2 and "at least 1" in err, err


def test_error_rows_count_within_the_file(tmp_path):
    """The message names the file and the batch's rows in that file; the engine's row counts from
    the batch's first row."""
    small_model(tmp_path / "m.bin")
    rng = np.random.default_rng(2)
    n = 300
    t = pa.table({"user": rng.integers(0, 50, n), "item": rng.integers(0, 30, n),
                  "price": rng.standard_normal(n).astype(np.float32)})
    d = tmp_path / "log"
    d.mkdir()
    pq.write_table(t, d / "a.parquet")
    price = t.column("price").to_numpy().copy()
    price[107] = np.nan                                    # a NaN dense value is refused
    pq.write_table(t.set_column(2, "price", pa.array(price)), d / "b.parquet")
    rc, err, _ = score(tmp_path, "m.bin", "-i", "log", "-o", "o.parquet", "--batch-rows", 50)
    assert rc == 1 and "b.parquet, rows 100..149 of the file" in err and "row 7" in err, err


def test_rerun_into_the_input_directory_does_not_read_its_output(tmp_path, seq):
    model, table, want = seq
    d = tmp_path / "log"
    d.mkdir()
    pq.write_table(table, d / "part-0.parquet")
    for _ in range(2):
        rc, err, _ = score(tmp_path, SEQ_DIR / "model.bin", "-i", "log", "-o", "log/scores.parquet",
                           "--keep-columns", "rid,item,cat,user,hist_item,hist_cat")
        assert rc == 0, err
        assert "scored 600 rows from 1 file(s)" in err, err
    assert np.array_equal(pq.read_table(d / "scores.parquet").column("score").to_numpy(), want)


def test_csv_kept_columns_are_copied_as_text_and_errors_name_the_column(tmp_path):
    small_model(tmp_path / "m.bin")
    (tmp_path / "a.csv").write_text("user,item,price,zip\n1,2,0.5,01234\n3,4,1.5,00042\n")
    rc, err, _ = score(tmp_path, "m.bin", "-i", "a.csv", "-o", "o.csv", "--keep-columns", "zip")
    assert rc == 0, err
    assert pacsv.read_csv(tmp_path / "o.csv", convert_options=pacsv.ConvertOptions(
        column_types={"zip": pa.string()})).column("zip").to_pylist() == ["01234", "00042"]
    (tmp_path / "b.csv").write_text("user,item,price\n1,2,0.5\n3,x4,1.5\n")
    rc, err, _ = score(tmp_path, "m.bin", "-i", "b.csv", "-o", "o.csv")
    assert rc == 1 and "b.csv" in err and "'item'" in err and "Traceback" not in err, err
    (tmp_path / "c.csv").write_text("user,item,price,user\n1,2,0.5,7\n")
    rc, err, _ = score(tmp_path, "m.bin", "-i", "c.csv", "-o", "o.csv")
    assert rc == 1 and "more than one column named ['user']" in err, err
    (tmp_path / "e.csv").write_text("user,item,price,zip\n")
    rc, err, _ = score(tmp_path, "m.bin", "-i", "e.csv", "-o", "e_out.csv", "--keep-columns", "zip")
    assert rc == 0, err
    assert (tmp_path / "e_out.csv").read_text().splitlines()[0] == '"zip","score"'


def test_memory_is_bounded_by_the_batch_not_the_input(tmp_path):
    """Peak RSS of the child scoring 3.2M rows vs 0.2M rows (8 int64 columns: 190 MB more as Arrow
    arrays) at 16384 rows per batch and row group: it may grow by the output file's footer and
    allocator noise (measured: 1-7 MB), not with the input. Bound: 16 MB. Reading 1.6M rows whole
    grew it by 142 MB; pyarrow's default pre_buffer (its read cache lives until the file is done)
    by 40 MB at 3.2M rows."""
    torch = pytest.importorskip("torch")
    import dpn_infer
    from dpn_infer.nn import DNN, Schema, SparseField

    torch.manual_seed(0)
    schema = Schema([SparseField(f"f{i}", vocab=1000, dim=4) for i in range(8)])
    dpn_infer.save(DNN(schema, hidden=[16]).eval(), str(tmp_path / "m.bin"))
    rng = np.random.default_rng(0)
    chunk = pa.table({f"f{i}": rng.integers(0, 1000, 200_000) for i in range(8)})
    for name, chunks in (("small.parquet", 1), ("large.parquet", 16)):
        with pq.ParquetWriter(tmp_path / name, chunk.schema) as w:
            for _ in range(chunks):
                w.write_table(chunk, row_group_size=16384)
    peaks = {}
    for name in ("small.parquet", "large.parquet"):
        rc, err, rss = score(tmp_path, "m.bin", "-i", name, "-o", f"out-{name}", "--batch-rows", 16384,
                             "--threads", 1)
        assert rc == 0, err
        peaks[name] = rss
    rows = pq.read_metadata(tmp_path / "out-large.parquet").num_rows
    assert rows == 3_200_000
    out = pq.read_table(tmp_path / "out-large.parquet").column("score").to_numpy()
    model = load(str(tmp_path / "m.bin"))
    assert np.array_equal(out[-200_000:], model.predict(chunk))
    print("peak RSS (kB):", peaks)
    grown_mb = (peaks["large.parquet"] - peaks["small.parquet"]) / 1024
    assert grown_mb < 16, f"peak RSS grew by {grown_mb:.1f} MB with the input: {peaks}"


def test_progress_bar_and_empty_input(tmp_path, seq):
    model, table, _ = seq
    pq.write_table(table.slice(0, 0), tmp_path / "empty.parquet")
    rc, err, _ = score(tmp_path, SEQ_DIR / "model.bin", "-i", "empty.parquet", "-o", "e.parquet",
                       "--keep-columns", "rid", "--progress")
    assert rc == 0, err
    out = pq.read_table(tmp_path / "e.parquet")
    assert out.num_rows == 0 and out.schema.names == ["rid", "score"]
    assert "scoring" in err  # the progress bar, forced on although stderr is a pipe
