"""The Python input contract of Model.predict (docs/architecture.md, "Contracts" and "Python API").

Most tests use the hand-built model of helpers/files.py (fields user: sparse/hash/vocab 7,
tags: multi_hot/oov_bucket/mean/max_len 4, item: sparse/error/vocab 4, price: dense dim 1,
ctx: dense dim 3), so they do not depend on the PyTorch converter."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from dpn_infer.engine import InputError, ModelFormatError, load
from helpers import files as HF
from helpers import specref

FIELDS = [f["name"] for f in HF.TINY_FIELDS]


def batch(n=9, seed=1):
    return HF.tiny_batch(n, seed)


def expect_input_error(model, b, field, **kw):
    with pytest.raises(InputError) as ei:
        model.predict(b, **kw)
    msg = str(ei.value)
    assert f"'{field}'" in msg, f"InputError message does not name field {field!r}: {msg!r}"
    return msg


def test_input_error_is_value_error():
    assert issubclass(InputError, ValueError)
    assert issubclass(ModelFormatError, Exception)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 300])
def test_output_dtype_shape_and_values(tiny_model, tiny_file, n):
    b = batch(n, seed=n)
    p = tiny_model.predict(b)
    z = tiny_model.predict(b, logits=True)
    for out in (p, z):
        assert isinstance(out, np.ndarray)
        assert out.dtype == np.float32
        assert out.shape == (n,)
    assert np.all((p >= 0) & (p <= 1))
    np.testing.assert_allclose(p, 1 / (1 + np.exp(-z.astype(np.float64))), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(tiny_model.predict(b, logits=False), p)
    want = specref.run(tiny_file.meta, tiny_file.tensors, b)
    np.testing.assert_allclose(z, want, rtol=1e-4, atol=1e-5)


def test_zero_rows(tiny_model):
    b = {"user": np.zeros(0, np.int64), "tags": np.zeros((0, 4), np.int64),
         "item": np.zeros(0, np.int64), "price": np.zeros(0, np.float32),
         "ctx": np.zeros((0, 3), np.float32)}
    for kw in ({}, {"logits": True}):
        out = tiny_model.predict(b, **kw)
        assert isinstance(out, np.ndarray)
        assert out.dtype == np.float32 and out.shape == (0,)


def test_schema_round_trips(tiny_model):
    s = tiny_model.schema
    assert [f["name"] for f in s] == FIELDS
    for got, want in zip(s, HF.TINY_FIELDS):
        for k, v in want.items():
            assert got[k] == v, f"schema field {want['name']!r} key {k!r}: {got[k]!r} != {v!r}"


def test_schema_round_trips_through_torch_export(tmp_path):
    dnn = pytest.importorskip("dpn_infer.nn")
    from dpn_infer.converters import torch_export

    schema = dnn.Schema([dnn.SparseField("u", vocab=10, dim=4, policy="hash"),
                         dnn.MultiHotField("g", vocab=6, dim=3, pooling="sum", max_len=5, policy="error"),
                         dnn.SparseField("i", vocab=1, dim=1, policy="oov_bucket"),
                         dnn.DenseField("d", dim=2), dnn.DenseField("e", dim=1)])
    model = dnn.FeatureDPN(schema, [dnn.LayerSpec(4, dynamic=True, context="x0", hidden=2), dnn.LayerSpec(3)])
    p = tmp_path / "m.bin"
    torch_export.save(model.eval(), str(p))
    s = load(str(p)).schema
    assert [f["name"] for f in s] == ["u", "g", "i", "d", "e"]
    for got, want in zip(s, schema.to_json()):
        for k, v in want.items():
            assert got[k] == v, f"field {want['name']!r} key {k!r}: {got[k]!r} != {v!r}"


@pytest.mark.parametrize("field", FIELDS)
def test_missing_field(tiny_model, field):
    b = batch()
    del b[field]
    expect_input_error(tiny_model, b, field)


def test_unknown_field(tiny_model):
    b = batch()
    b["bogus_field"] = np.zeros(9, np.int64)
    expect_input_error(tiny_model, b, "bogus_field")


def test_message_format(tiny_model):
    """docs/architecture.md, "Errors": the message starts with the field name in quotes, e.g.
    field 'user': ..."""
    b = batch()
    b["user"] = b["user"].astype(np.float64)
    msg = expect_input_error(tiny_model, b, "user")
    assert msg.startswith("field 'user'"), msg


@pytest.mark.parametrize("field,dtype", [
    ("user", np.int32), ("user", np.float64), ("user", np.uint64), ("user", np.float32), ("user", bool),
    ("tags", np.int32), ("tags", np.float32), ("item", np.int16),
    ("price", np.float64), ("price", np.float16), ("price", np.int64),
    ("ctx", np.float64), ("ctx", np.int32),
])
def test_wrong_dtype(tiny_model, field, dtype):
    b = batch()
    b[field] = b[field].astype(dtype)
    expect_input_error(tiny_model, b, field)


def test_object_array_refused(tiny_model):
    b = batch()
    b["user"] = np.array([1, "a"] * 4 + [2], dtype=object)
    expect_input_error(tiny_model, b, "user")


@pytest.mark.parametrize("field,shape", [
    ("user", (9, 2)), ("user", ()), ("user", (9, 1, 1)),
    ("tags", (9,)), ("tags", (9, 2, 2)), ("tags", ()),
    ("item", (9, 3)),
    ("price", (9, 2)), ("price", (9, 1, 1)), ("price", ()),
    ("ctx", (9,)), ("ctx", (9, 2)), ("ctx", (9, 4)), ("ctx", (9, 3, 1)), ("ctx", (3, 9)),
])
def test_wrong_shape(tiny_model, field, shape):
    b = batch()
    dtype = b[field].dtype
    b[field] = np.zeros(shape, dtype) if dtype.kind == "f" else np.ones(shape, dtype)
    expect_input_error(tiny_model, b, field)


def test_dense_dim1_as_column(tiny_model):
    b = batch()
    col = dict(b, price=b["price"].reshape(-1, 1))
    np.testing.assert_array_equal(tiny_model.predict(col), tiny_model.predict(b))


@pytest.mark.parametrize("field", ["tags", "item", "price", "ctx"])
@pytest.mark.parametrize("delta", [-1, 1])
def test_mismatched_rows(tiny_model, field, delta):
    b = batch(9)
    other = batch(9 + delta, seed=5)
    b[field] = other[field]
    expect_input_error(tiny_model, b, field)


def test_multi_hot_longer_than_max_len(tiny_model):
    b = batch()
    b["tags"] = np.concatenate([b["tags"], np.full((9, 1), -1, np.int64)], axis=1)   # T=5 > 4
    expect_input_error(tiny_model, b, "tags")


@pytest.mark.parametrize("T", [1, 2, 4])
def test_multi_hot_up_to_max_len(tiny_model, tiny_file, T):
    b = batch()
    b["tags"] = np.ascontiguousarray(b["tags"][:, :T])
    np.testing.assert_allclose(tiny_model.predict(b, logits=True),
                               specref.run(tiny_file.meta, tiny_file.tensors, b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("field", ["price", "ctx"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("row", [0, 8])
def test_non_finite_dense(tiny_model, field, bad, row):
    b = batch()
    v = b[field].copy()
    v.reshape(9, -1)[row, -1] = bad
    b[field] = v
    expect_input_error(tiny_model, b, field)


@pytest.mark.parametrize("bad_id", [4, 5, -1, -2, 1 << 40, (1 << 63) - 1, -(1 << 63)])
def test_out_of_range_sparse_id_under_error_policy(tiny_model, bad_id):
    b = batch()
    b["item"] = b["item"].copy()
    b["item"][3] = bad_id
    expect_input_error(tiny_model, b, "item")


@pytest.mark.parametrize("bad_id", [5, 6, -2, 1 << 40, (1 << 63) - 1, -(1 << 63)])
def test_out_of_range_multi_hot_id_under_error_policy(tiny_err_model, tiny_err_file, bad_id):
    b = batch()
    tags = np.array(b["tags"])
    tags[tags >= 5] = -1                                   # make the batch valid first
    b["tags"] = tags
    np.testing.assert_allclose(tiny_err_model.predict(b, logits=True),
                               specref.run(tiny_err_file.meta, tiny_err_file.tensors, b),
                               rtol=1e-4, atol=1e-5)
    tags = tags.copy()
    tags[4, 2] = bad_id
    b["tags"] = tags
    expect_input_error(tiny_err_model, b, "tags")


def test_extreme_ids_under_hash_and_oov(tiny_model, tiny_file):
    """Ids far out of range are mapped by the policy, never read out of bounds."""
    ext = np.array([-(1 << 63), (1 << 63) - 1, -1, -7, 7, 8, 1 << 40, -(1 << 40), 0], np.int64)
    b = batch()
    b["user"] = ext
    tags = np.full((9, 4), -1, np.int64)
    tags[:, 0] = ext
    tags[:, 2] = ext[::-1]
    b["tags"] = tags
    np.testing.assert_allclose(tiny_model.predict(b, logits=True),
                               specref.run(tiny_file.meta, tiny_file.tensors, b), rtol=1e-4, atol=1e-5)


def test_non_contiguous_inputs(tiny_model):
    n = 9
    b = batch(n)
    rng = np.random.default_rng(3)
    big_user = np.zeros(3 * n, np.int64)
    big_user[::3] = b["user"]
    big_tags = np.zeros((n, 8), np.int64)
    big_tags[:, ::2] = b["tags"]
    big_ctx = rng.standard_normal((n, 6)).astype(np.float32)
    big_ctx[:, ::2] = b["ctx"]
    big_price = np.zeros(2 * n, np.float32)
    big_price[::2] = b["price"]
    variants = [
        {"user": big_user[::3], "tags": big_tags[:, ::2], "ctx": big_ctx[:, ::2], "price": big_price[::2]},
        {"tags": np.asfortranarray(b["tags"]), "ctx": np.asfortranarray(b["ctx"])},
        {"user": b["user"][::-1].copy()[::-1], "tags": b["tags"][::-1].copy()[::-1],
         "ctx": b["ctx"][::-1, ::-1].copy()[::-1, ::-1], "price": b["price"][::-1].copy()[::-1]},
        {"ctx": np.ascontiguousarray(b["ctx"].T).T, "tags": np.ascontiguousarray(b["tags"].T).T},
    ]
    want = tiny_model.predict(b, logits=True)
    for i, v in enumerate(variants):
        bb = dict(b, **v)
        for k in v:
            np.testing.assert_array_equal(bb[k], b[k])
        np.testing.assert_array_equal(tiny_model.predict(bb, logits=True), want, err_msg=f"variant {i}")


def test_read_only_inputs_and_inputs_untouched(tiny_model):
    b = batch()
    copies = {k: v.copy() for k, v in b.items()}
    for v in b.values():
        v.setflags(write=False)
    out = tiny_model.predict(b)
    for k in b:
        np.testing.assert_array_equal(b[k], copies[k])
    np.testing.assert_array_equal(out, tiny_model.predict(copies))


def test_non_native_byte_order(tiny_model):
    """A big-endian int64 / float32 array is either read correctly or refused, never misread."""
    b = batch()
    want = tiny_model.predict(b)
    for field in ("user", "ctx"):
        bb = dict(b, **{field: b[field].astype(b[field].dtype.newbyteorder(">"))})
        try:
            got = tiny_model.predict(bb)
        except InputError as e:
            assert f"'{field}'" in str(e)
        else:
            np.testing.assert_array_equal(got, want)


def test_batch_not_a_mapping(tiny_model):
    with pytest.raises((TypeError, ValueError)):
        tiny_model.predict([np.zeros(3)])


def test_threads_share_one_model(tiny_model):
    """8 threads call predict on one model at once, each with its own batches; every answer equals the
    single-threaded one (predict keeps its scratch per call, and releases the GIL)."""
    sizes = [1, 3, 64, 255, 256, 257, 513, 1000]
    batches = [[batch(n, seed=100 * t + j) for j, n in enumerate(sizes[t:] + sizes[:t])] for t in range(8)]
    want = [[(tiny_model.predict(b), tiny_model.predict(b, logits=True)) for b in bs] for bs in batches]
    barrier = threading.Barrier(8)
    errors = []

    def worker(t):
        try:
            barrier.wait()
            for rep in range(6):
                for j, b in enumerate(batches[t]):
                    logits = (rep + j) % 2 == 1
                    got = tiny_model.predict(b, logits=logits)
                    exp = want[t][j][1 if logits else 0]
                    if not np.array_equal(got, exp):
                        errors.append(f"thread {t} rep {rep} batch {j} (B={len(exp)}) logits={logits}: "
                                      f"max diff {np.max(np.abs(got - exp))}")
        except BaseException as e:  # noqa: BLE001
            errors.append(f"thread {t}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not any(th.is_alive() for th in threads), "a predict thread hung"
    assert not errors, "\n".join(errors[:10])


def test_threads_with_errors_mixed_in(tiny_model):
    """Bad requests in some threads do not disturb good ones in others."""
    good = batch(200, seed=9)
    want = tiny_model.predict(good)
    bad = dict(good, price=np.full(200, np.nan, np.float32))
    errors = []

    def worker(t):
        for _ in range(20):
            if t % 2:
                try:
                    tiny_model.predict(bad)
                    errors.append("NaN batch accepted")
                except InputError:
                    pass
            elif not np.array_equal(tiny_model.predict(good), want):
                errors.append("wrong result")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors[:5]


def test_file_not_found(tmp_path):
    missing = str(tmp_path / "no_such_dir" / "model.bin")
    with pytest.raises((OSError, ModelFormatError)) as ei:
        load(missing)
    assert "model.bin" in str(ei.value) or isinstance(ei.value, FileNotFoundError)
    if isinstance(ei.value, OSError):
        assert isinstance(ei.value, FileNotFoundError), f"expected FileNotFoundError, got {ei.value!r}"


def test_load_a_directory(tmp_path):
    with pytest.raises((OSError, ModelFormatError)):
        load(str(tmp_path))


def test_load_accepts_pathlike(tiny_file, tmp_path):
    import pathlib

    m = load(pathlib.Path(tiny_file.path))
    b = batch()
    np.testing.assert_array_equal(m.predict(b), load(tiny_file.path).predict(b))


def test_model_outlives_file(tiny_file, tmp_path):
    """Deleting (unlinking) the file after load does not break a loaded model."""
    p = tmp_path / "gone.bin"
    p.write_bytes(open(tiny_file.path, "rb").read())
    m = load(str(p))
    os.unlink(p)
    b = batch()
    np.testing.assert_array_equal(m.predict(b), load(tiny_file.path).predict(b))


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_intra_op_threads_same_result(tiny_model, threads):
    """predict(threads=N) splits one call over N threads; each row's answer does not change."""
    for n, seed in ((1, 1), (257, 2), (1000, 3)):
        b = batch(n, seed)
        one = tiny_model.predict(b, logits=True)
        many = tiny_model.predict(b, logits=True, threads=threads)
        np.testing.assert_allclose(many, one, rtol=1e-6, atol=1e-7)


def test_multi_hot_with_zero_columns(tiny_model, tiny_file):
    """T = 0 ([B, 0]): no valid id in any row, so the field pools to zeros (docs/format.md §4.1)."""
    b = batch()
    b["tags"] = np.zeros((9, 0), np.int64)
    np.testing.assert_allclose(tiny_model.predict(b, logits=True),
                               specref.run(tiny_file.meta, tiny_file.tensors, b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_large_batch(tiny_model, tiny_file, threads):
    b = batch(70_001, seed=8)
    np.testing.assert_allclose(tiny_model.predict(b, logits=True, threads=threads),
                               specref.run(tiny_file.meta, tiny_file.tensors, b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("threads", [0, -1])
def test_bad_thread_count(tiny_model, threads):
    with pytest.raises(ValueError):
        tiny_model.predict(batch(), threads=threads)


def test_python_threads_with_intra_op_threads(tiny_model):
    """Concurrent callers that each ask for several intra-op threads."""
    bs = [batch(n, seed=n) for n in (5, 300, 1000, 2049)]
    want = [tiny_model.predict(b) for b in bs]
    errors = []

    def worker(t):
        for rep in range(5):
            j = (t + rep) % len(bs)
            got = tiny_model.predict(bs[j], threads=1 + (t + rep) % 3)
            if not np.allclose(got, want[j], rtol=1e-6, atol=1e-7):
                errors.append((t, rep, j))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert not errors, errors[:5]


def test_predict_releases_the_gil(tiny_model):
    """While one thread runs a long predict, another Python thread keeps running (the GIL is released
    for the native work). Counts loop iterations of the main thread during the predict against the same
    loop run alone; with the GIL held throughout the ratio would be near 0."""
    big = batch(1_000_000, seed=12)
    tiny_model.predict(big)                       # warm up (page in, allocate)

    def spin_until(ev):
        n = 0
        while not ev.is_set():
            n += 1
        return n

    alone = threading.Event()
    threading.Timer(0.3, alone.set).start()
    t0 = time.perf_counter()
    base_rate = spin_until(alone) / (time.perf_counter() - t0)

    done = threading.Event()

    def work():
        try:
            tiny_model.predict(big)
        finally:
            done.set()

    th = threading.Thread(target=work)
    t0 = time.perf_counter()
    th.start()
    n = spin_until(done)
    elapsed = time.perf_counter() - t0
    th.join()
    ratio = n / elapsed / base_rate
    assert ratio > 0.25, (f"main thread ran at {ratio:.0%} of its normal rate during a {elapsed:.2f}s "
                          f"predict: the GIL seems to be held")


@pytest.mark.parametrize("empty_field", FIELDS)
def test_one_field_empty_others_not(tiny_model, empty_field):
    b = batch(9)
    b[empty_field] = batch(0)[empty_field]
    with pytest.raises(InputError) as ei:
        tiny_model.predict(b)
    # the field at fault is the empty one, or (when the first field is the empty one) the next field
    named = [f for f in FIELDS if f"'{f}'" in str(ei.value)]
    assert empty_field in named or (empty_field == FIELDS[0] and FIELDS[1] in named), str(ei.value)


def test_load_with_default_threads(tiny_file):
    m1 = load(tiny_file.path)
    m4 = load(tiny_file.path, threads=4)
    assert m1.threads == 1 and m4.threads == 4
    b = batch(3001, seed=4)
    np.testing.assert_allclose(m4.predict(b), m1.predict(b), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(m4.predict(b, threads=1), m1.predict(b), rtol=1e-6, atol=1e-7)
    for bad in (0, -3, 1025, True, 2.0, "2"):
        with pytest.raises(ValueError):
            load(tiny_file.path, threads=bad)


def test_python_threads_on_a_multithreaded_model(tiny_file):
    """8 Python threads share a model whose predict itself runs on 3 threads (OpenMP inside): no
    deadlock, and every answer equals the single-threaded one."""
    m = load(tiny_file.path, threads=3)
    ref = load(tiny_file.path)
    bs = [batch(n, seed=n) for n in (1, 7, 300, 4000, 20000)]
    want = [ref.predict(b, logits=True) for b in bs]
    errors = []
    barrier = threading.Barrier(8)

    def worker(t):
        try:
            barrier.wait()
            for rep in range(4):
                j = (t + rep) % len(bs)
                got = m.predict(bs[j], logits=True)
                if not np.allclose(got, want[j], rtol=1e-6, atol=1e-7):
                    errors.append((t, rep, j, float(np.max(np.abs(got - want[j])))))
        except BaseException as e:  # noqa: BLE001
            errors.append((t, repr(e)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(180)
    assert not any(th.is_alive() for th in threads), "predict threads hung"
    assert not errors, errors[:5]


_FORK_SCRIPT = r"""
import os, sys, time
import numpy as np
from dpn_infer.engine import load
m = load(sys.argv[1])
with np.load(sys.argv[2]) as z:
    b = {k: np.concatenate([z[k]] * 1000) for k in z.files}        # 20000 rows: the pool is used
want = m.predict(b, threads=2)
pid = os.fork()
if pid == 0:
    ok = np.allclose(m.predict(b, threads=2), want) and np.allclose(load(sys.argv[1]).predict(b, threads=2), want)
    os._exit(0 if ok else 3)
deadline = time.time() + 90  # generous: CI machines are shared; a hang never ends
while time.time() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.exit(0 if os.WEXITSTATUS(status) == 0 else 3)
    time.sleep(0.05)
os.kill(pid, 9)
sys.exit(4)
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_multithreaded_predict_in_a_forked_child(tmp_path):
    """Pre-fork servers (gunicorn, multiprocessing 'fork'): after the parent ran a multi-threaded
    predict, a forked child's multi-threaded predict must finish (and agree), not hang. Runs in a child
    process so a hang fails this test instead of the session."""
    import subprocess
    import sys

    golden = os.path.join(os.path.dirname(__file__), "golden", "v1")
    p = subprocess.run([sys.executable, "-c", _FORK_SCRIPT, os.path.join(golden, "model.bin"),
                        os.path.join(golden, "batch.npz")], capture_output=True, text=True, timeout=120)
    assert p.returncode != 4, ("a forked child hung in predict(threads=2) after the parent had run "
                               "predict(threads=2) (OpenMP thread pool is not fork-safe)")
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])


_IDLE_SCRIPT = r"""
import resource, sys, time
import numpy as np
from dpn_infer.engine import load
m = load(sys.argv[1])
with np.load(sys.argv[2]) as z:
    b = {k: np.concatenate([z[k]] * 2000) for k in z.files}
for _ in range(3):
    m.predict(b, threads=2)
r0 = resource.getrusage(resource.RUSAGE_SELF)
time.sleep(1.0)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
"""


def test_no_idle_spinning_after_multithreaded_predict():
    """docs/architecture.md, "Threads": no idle spinning. After multi-threaded predicts, a process that
    just sleeps for 1 s uses (almost) no CPU (fresh child process, OMP_WAIT_POLICY left to dpn_infer's
    default)."""
    import subprocess
    import sys

    golden = os.path.join(os.path.dirname(__file__), "golden", "v1")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    p = subprocess.run([sys.executable, "-c", _IDLE_SCRIPT, os.path.join(golden, "model.bin"),
                        os.path.join(golden, "batch.npz")], capture_output=True, text=True, timeout=120,
                       env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    cpu = float(p.stdout.strip().splitlines()[-1])
    assert cpu < 0.15, f"{cpu:.2f} s of CPU used while idle for 1 s: worker threads are spinning"


def test_uncopyable_view_raises_instead_of_crashing(tiny_model):
    """A zero-stride view too large to copy contiguously (numpy's copy fails) is an InputError naming
    the field — this used to dereference a null array and kill the process."""
    b = batch(4)
    huge = 1 << 40
    bad = {k: np.broadcast_to(v[:1], (huge,) + v.shape[1:]) for k, v in b.items()}
    with pytest.raises(InputError, match="contiguous copy"):
        tiny_model.predict(bad)


# --- hardening: what a host process can rely on (README "What a host can rely on") ---------------

_CLEAR_SCRIPT = r"""
import sys, threading, time
import numpy as np
from dpn_infer.engine import load
m = load(sys.argv[1])
B = int(sys.argv[2])
rng = np.random.default_rng(0)
for attempt in range(3):
    b = {"user": rng.integers(0, 7, B), "tags": np.full((B, 4), -1, np.int64),
         "item": rng.integers(0, 4, B), "price": np.zeros(B, np.float32),
         "ctx": np.zeros((B, 3), np.float32)}
    t = threading.Thread(target=lambda: (time.sleep(0.02), b.clear()))
    t.start()
    out = m.predict(b)    # the dict's arrays are freed by the other thread mid-call
    t.join()
    assert out.shape == (B,) and np.isfinite(out).all()
print("OK")
"""


def test_batch_dict_cleared_during_predict(tiny_file, tmp_path):
    """predict keeps a reference to every array it reads while the GIL is released: another thread
    that clears the batch dict mid-call (freeing the arrays) cannot make it read freed memory
    (before the fix: SIGSEGV). Runs in a child so a crash fails the test, not pytest."""
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-c", _CLEAR_SCRIPT, tiny_file.path, str(3_000_000)],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert p.returncode == 0 and "OK" in p.stdout, (p.returncode, p.stderr[-2000:])


def test_load_a_fifo_does_not_block(tmp_path):
    """A FIFO (or any non-regular file) is refused before it is read: open() on a FIFO with no
    writer would otherwise wait forever, holding the GIL (a reload thread wedged the whole
    interpreter). Runs in a child, which must answer within the timeout."""
    import subprocess
    import sys

    fifo = tmp_path / "model.bin"
    os.mkfifo(fifo)
    script = ("import sys; from dpn_infer.engine import load\n"
              "try:\n    load(sys.argv[1]); print('loaded')\n"
              "except OSError as e: print('OSError', e)\n")
    try:
        p = subprocess.run([sys.executable, "-c", script, str(fifo)], capture_output=True, text=True,
                           timeout=60, cwd=tmp_path)
    except subprocess.TimeoutExpired:
        pytest.fail("load() of a FIFO blocked")
    assert p.returncode == 0 and p.stdout.startswith("OSError") and "FIFO" in p.stdout, (p.stdout, p.stderr)


@pytest.mark.parametrize("dev", ["/dev/zero", "/dev/null"])
def test_load_a_device_is_refused(dev):
    if not os.path.exists(dev):
        pytest.skip(f"{dev} missing")
    with pytest.raises(OSError, match="not a regular file"):
        load(dev)


def test_path_with_nul_byte_is_refused(tiny_file):
    """As open(): a path holding a NUL is a ValueError, never the path cut at the NUL."""
    with pytest.raises(ValueError, match="null byte"):
        open(tiny_file.path + "\0junk", "rb")
    with pytest.raises(ValueError, match="null byte"):
        load(tiny_file.path + "\0junk")
    with pytest.raises(ValueError, match="null byte"):
        load(os.fsdecode(os.fsencode(tiny_file.path) + b"\0junk"))


def test_non_utf8_path(tiny_file, tmp_path):
    """A file name that is not UTF-8 loads (as the str os.fsdecode gives; bytes are a model's
    content, not a path); a missing one is FileNotFoundError naming it, never a TypeError."""
    name = os.fsencode(str(tmp_path)) + b"/model-\xff\xfe.bin"
    with open(name, "wb") as f:
        f.write(open(tiny_file.path, "rb").read())
    b = batch()
    want = load(tiny_file.path).predict(b)
    np.testing.assert_array_equal(load(os.fsdecode(name)).predict(b), want)
    with pytest.raises(FileNotFoundError) as ei:
        load(os.fsdecode(os.fsencode(str(tmp_path)) + b"/missing-\xff.bin"))
    assert ei.value.filename == os.fsdecode(os.fsencode(str(tmp_path)) + b"/missing-\xff.bin")


def _nan_inputs(n=9):
    b = batch(n)
    b["price"] = b["price"].copy()
    b["price"][[2, 5]] = 1e38   # finite inputs whose products overflow float32 inside the model
    b["ctx"] = b["ctx"].copy()
    b["ctx"][[2, 5]] = -3e38
    return b


def test_nan_score_raises_naming_rows(tiny_model):
    """A score that comes out NaN is refused by default (NonFiniteScoreError, an InputError, with
    the rows); allow_nan=True returns it. Rows 2 and 5 carry dense values near float32's maximum:
    the model's layernorm squares them (1e38² overflows float32), so those scores are NaN in any
    float32 evaluation (torch's too); every other row scores as it does without them."""
    from dpn_infer.engine import NonFiniteScoreError

    b = _nan_inputs()
    nan_rows = [2, 5]
    with pytest.raises(NonFiniteScoreError) as ei:
        tiny_model.predict(b)
    assert isinstance(ei.value, InputError)
    assert ei.value.rows == nan_rows and ei.value.num_rows == 2
    assert "NaN" in str(ei.value) and "rows 2, 5" in str(ei.value)
    ok = np.setdiff1d(np.arange(9), nan_rows)
    clean = {k: v[ok] for k, v in b.items()}
    for logits in (False, True):
        out = tiny_model.predict(b, allow_nan=True, logits=logits)
        np.testing.assert_array_equal(np.flatnonzero(np.isnan(out)), nan_rows)
        np.testing.assert_array_equal(out[ok], tiny_model.predict(clean, logits=logits))
    big = {k: np.concatenate([v] * 3) for k, v in b.items()}   # more than 10 NaN rows: first 10 named
    with pytest.raises(NonFiniteScoreError) as ei:
        tiny_model.predict(big)
    assert ei.value.num_rows == 6 and ei.value.rows == [2, 5, 11, 14, 20, 23]


def test_huge_dense_value_gives_nan_as_torch(tmp_path):
    """The README's FeatureDPN with age = 1e30: torch gives NaN (the ReLU of an overflowed
    pre-activation), so the engine must not return a finite score (before the fix: 0.528, its
    ReLU mapped NaN to 0). Under every ISA this machine runs."""
    torch = pytest.importorskip("torch")
    import json
    import subprocess
    import sys

    import dpn_infer
    from dpn_infer.nn import DenseField, FeatureDPN, LayerSpec, MultiHotField, Schema, SparseField
    from helpers.isa import available_isas

    torch.manual_seed(0)
    schema = Schema([SparseField("user", vocab=1000, dim=16, policy="hash"),
                     MultiHotField("genres", vocab=19, dim=8, pooling="mean", max_len=6),
                     DenseField("age", dim=1)])
    model = FeatureDPN(schema, [LayerSpec(64, dynamic=True, context="x0", hidden=4),
                                LayerSpec(32, dynamic=True, context=["genres"]), LayerSpec(16)]).eval()
    path = str(tmp_path / "feature.bin")
    dpn_infer.save(model, path)
    ages = np.array([1e30, 0.7, -1e30, 3e38, 0.1], np.float32)
    b = {"user": np.array([3, 42, 5, 6, 7], np.int64),
         "genres": np.array([[1, 4, -1], [7, -1, -1], [2, -1, -1], [3, 3, -1], [1, -1, -1]], np.int64),
         "age": ages}
    with torch.no_grad():
        want = torch.sigmoid(model(b)).numpy()
    assert np.isnan(want).sum() >= 1 and not np.isnan(want[1])
    np.savez(tmp_path / "b.npz", **b)
    script = ("import json, sys, numpy as np; from dpn_infer.engine import load\n"
              "m = load(sys.argv[1]); b = dict(np.load(sys.argv[2]))\n"
              "print(json.dumps(m.predict(b, allow_nan=True).tolist()))\n"
              "try:\n    m.predict(b); print('no error')\n"
              "except Exception as e: print(type(e).__name__, e.rows)\n")
    for isa in available_isas():
        p = subprocess.run([sys.executable, "-c", script, path, str(tmp_path / "b.npz")],
                           capture_output=True, text=True, timeout=120, cwd=tmp_path,
                           env={**os.environ, "DPN_ISA": isa})
        assert p.returncode == 0, p.stderr[-2000:]
        lines = p.stdout.splitlines()
        got = np.array(json.loads(lines[0]), np.float64)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=isa)
        np.testing.assert_allclose(got[~np.isnan(want)], want[~np.isnan(want)], rtol=1e-5, atol=1e-6)
        assert lines[1] == f"NonFiniteScoreError {np.flatnonzero(np.isnan(want)).tolist()}", (isa, lines)


def test_copy_mode_survives_rewrite_in_place(tiny_file, tmp_path):
    """load(copy=True) reads the file into memory: rewriting the file in place (cp v2 live) while
    it is loaded changes nothing for it. (A mapped load must be replaced by rename instead.)"""
    from helpers import files as HF2

    live = tmp_path / "live.bin"
    live.write_bytes(open(tiny_file.path, "rb").read())
    m = load(live, copy=True)
    b = batch()
    want = load(tiny_file.path).predict(b)
    with open(live, "r+b") as f:   # in place: same inode, other bytes, then shorter
        f.write(bytes(HF2.tiny_bytes(seed=5)))
        f.truncate(1000)
    np.testing.assert_array_equal(m.predict(b), want)


def test_max_alloc_bytes_is_checked(tiny_file):
    for bad in (0, -1, 2**64, 1.5, True, "1"):
        with pytest.raises(ValueError, match="max_alloc_bytes"):
            load(tiny_file.path, max_alloc_bytes=bad)
    with pytest.raises(ModelFormatError, match="max_alloc_bytes"):
        load(tiny_file.path, max_alloc_bytes=16)   # the tiny model packs more than 16 bytes
    load(tiny_file.path, max_alloc_bytes=1 << 30)


# --- models that travel: load(bytes), pickling, ModelHolder ------------------------------------------

def test_load_from_bytes_like(tiny_file):
    import mmap

    raw = open(tiny_file.path, "rb").read()
    b = batch(31)
    want = load(tiny_file.path).predict(b)
    with open(tiny_file.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        sources = [raw, bytearray(raw), memoryview(raw), memoryview(bytearray(raw))[:],
                   np.frombuffer(raw, np.uint8), mm]
        for src in sources:
            m = load(src, threads=2)
            assert m.threads == 2
            np.testing.assert_array_equal(m.predict(b), want)
            assert bytes(m.file_bytes()) == raw
    buf = bytearray(raw)
    m = load(buf)
    buf[:] = bytes(len(buf))  # the engine holds its own copy
    np.testing.assert_array_equal(m.predict(b), want)
    assert "from" not in repr(m)


def test_load_damaged_buffer_is_format_error(tiny_file):
    raw = bytearray(open(tiny_file.path, "rb").read())
    for bad in (b"", raw[:100], raw[:-1], bytes(raw[:200]) + b"\xff" + bytes(raw[201:]), b"not a model"):
        with pytest.raises(ModelFormatError):
            load(bad)
    with pytest.raises(BufferError):
        load(memoryview(bytes(raw) * 2)[::2])  # not contiguous
    with pytest.raises(ValueError, match="max_alloc_bytes"):
        load(bytes(raw), max_alloc_bytes=0)
    with pytest.raises(ModelFormatError):
        load(bytes(raw), max_alloc_bytes=1)


def test_bytes_path_like_is_refused(tiny_file):
    class BytesPath:
        def __fspath__(self):
            return os.fsencode(tiny_file.path)

    with pytest.raises(TypeError, match="fsdecode"):
        load(BytesPath())


def test_file_bytes_is_read_only_and_keeps_the_model(tiny_file):
    raw = open(tiny_file.path, "rb").read()
    for m in (load(tiny_file.path), load(tiny_file.path, copy=True), load(raw)):
        mv = m.file_bytes()
        assert mv.readonly and mv.nbytes == len(raw)
        with pytest.raises(TypeError):
            mv[0] = 1
        del m  # the view keeps the native model (and its mapping) alive
        assert bytes(mv) == raw


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_round_trip(tiny_file, protocol):
    import pickle

    m = load(tiny_file.path, threads=3)
    b = batch(17)
    want = m.predict(b)
    data = pickle.dumps(m, protocol=protocol)
    m2 = pickle.loads(data)
    assert m2.threads == 3 and m2.schema == m.schema and m2.metadata == m.metadata
    np.testing.assert_array_equal(m2.predict(b), want)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(m2, protocol=protocol)).predict(b), want)


def test_pickle_out_of_band(tiny_file):
    """Protocol 5 hands the file's bytes out of band without copying them (as Ray does)."""
    import pickle

    m = load(tiny_file.path)
    buffers = []
    data = pickle.dumps(m, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 1 and len(data) < 1000
    assert bytes(buffers[0].raw()) == open(tiny_file.path, "rb").read()
    m2 = pickle.loads(data, buffers=buffers)
    np.testing.assert_array_equal(m2.predict(batch()), m.predict(batch()))


def test_unpickle_loads_once_per_process(tiny_file, tmp_path):
    import copy
    import pickle

    from dpn_infer import engine

    m = load(tiny_file.path)
    data = pickle.dumps(m)
    a, b = pickle.loads(data), pickle.loads(data)
    assert a is not b and a._native is b._native  # one native model for both
    assert a._native is not m._native  # a load(path) is not shared with unpickled models
    other = HF.tiny_bytes(seed=5)
    c = pickle.loads(pickle.dumps(load(bytes(other))))
    assert c._native is not a._native
    assert copy.copy(m) is m and copy.deepcopy(m) is m
    native_id = id(a._native)
    del a, b
    import gc

    gc.collect()
    assert all(id(v) != native_id for v in engine._LOADED.values())  # freed once unused


def test_unpickle_in_child_process(tiny_file, tmp_path):
    import pickle
    import subprocess
    import sys

    m = load(tiny_file.path, threads=2)
    b = batch(13)
    (tmp_path / "m.pkl").write_bytes(pickle.dumps({"model": m, "again": m, "batch": b}))
    code = ("import pickle, sys, numpy as np\n"
            "d = pickle.load(open(sys.argv[1], 'rb'))\n"
            "assert d['model'] is d['again']\n"
            "m2 = pickle.loads(pickle.dumps(d['model']))\n"
            "assert m2._native is d['model']._native and m2.threads == 2\n"
            "np.save(sys.argv[2], d['model'].predict(d['batch']))\n")
    out = tmp_path / "out.npy"
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.pkl"), str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(out), m.predict(b))


def test_model_holder_swap_under_threads(tiny_file, tmp_path):
    from dpn_infer import ModelHolder

    raw = [bytes(HF.tiny_bytes(seed=s)) for s in (0, 1)]
    models = [load(r) for r in raw]
    b = batch(9)
    wants = [m.predict(b) for m in models]
    holder = ModelHolder()
    assert holder.get() is None
    assert holder.set(models[0]) is None
    errors, stop = [], threading.Event()

    def reader():
        while not stop.is_set():
            m = holder.get()
            got = m.predict(b)
            if not any(np.array_equal(got, w) for w in wants):
                errors.append(got)

    def reloader():
        for k in range(40):
            holder.load(raw[(k + 1) % 2]) if k % 3 else holder.set(models[(k + 1) % 2])

    ts = [threading.Thread(target=reader) for _ in range(4)]
    for t in ts:
        t.start()
    r = threading.Thread(target=reloader)
    r.start()
    r.join()
    stop.set()
    for t in ts:
        t.join()
    assert not errors
    np.testing.assert_array_equal(holder.get().predict(b), wants[0])  # 40 swaps: back to model 0

    # A failed load raises and keeps the current model; a good one returns the previous.
    current = holder.get()
    bad = tmp_path / "bad.bin"
    bad.write_bytes(raw[0][:-3])
    with pytest.raises(ModelFormatError):
        holder.load(str(bad))
    with pytest.raises(FileNotFoundError):
        holder.load(str(tmp_path / "missing.bin"))
    assert holder.get() is current
    assert holder.load(tiny_file.path, threads=2) is current
    assert holder.get().threads == 2
    assert ModelHolder(current).get() is current
