"""Intra-op threads: every split the planner makes (GEMM columns for small batches, row blocks for
large ones) gives the single-threaded answer, also with many callers sharing one model at once."""
import threading

import numpy as np
import pytest
import torch

import dpn_infer
from dpn_infer.nn import FeatureDPN, LayerSpec, MultiHotField, Schema, SparseField, DenseField

# Batch sizes around the planner's edges: < 32 rows per thread (column split), then row blocks of
# at most 256 rows in multiples of the thread count.
SIZES = [1, 5, 16, 63, 64, 65, 129, 256, 300, 513, 1000, 2049]


@pytest.fixture(scope="module")
def wide_model(tmp_path_factory):
    """Wide enough (K·N per GEMM well above the column-split threshold) to exercise every split."""
    torch.manual_seed(7)
    schema = Schema([SparseField("a", vocab=500, dim=16), SparseField("b", vocab=50, dim=16, policy="oov_bucket"),
                     MultiHotField("c", vocab=30, dim=16, pooling="sum", max_len=4),
                     DenseField("d", dim=3)])
    model = FeatureDPN(schema, [LayerSpec(160, dynamic=True, hidden=4, sigma="softmax"),
                                LayerSpec(96, dynamic=True, context=["b", "c"], heads=2),
                                LayerSpec(48, dynamic=True, context="prev", form="decomp", rank=8, w0=True),
                                LayerSpec(40)], norm="layernorm").eval()
    path = tmp_path_factory.mktemp("threads") / "model.bin"
    dpn_infer.save(model, path)
    return model, path


def make_batch(n, seed):
    rng = np.random.default_rng(seed)
    c = rng.integers(-1, 30, (n, 4))
    return {"a": rng.integers(0, 500, n), "b": rng.integers(-5, 60, n), "c": c,
            "d": rng.standard_normal((n, 3)).astype(np.float32)}


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_every_split_equals_one_thread(wide_model, threads):
    model, path = wide_model
    m = dpn_infer.load(path)
    for n in SIZES:
        b = make_batch(n, seed=n)
        one = m.predict(b, logits=True, threads=1)
        many = m.predict(b, logits=True, threads=threads)
        np.testing.assert_allclose(many, one, rtol=1e-6, atol=1e-7, err_msg=f"B={n} threads={threads}")
        with torch.no_grad():
            ref = model(b).numpy()
        np.testing.assert_allclose(many, ref, rtol=1e-4, atol=1e-5, err_msg=f"B={n} vs torch")


def test_model_default_threads(wide_model):
    _, path = wide_model
    m = dpn_infer.load(path, threads=2)
    assert m.threads == 2
    b = make_batch(300, seed=1)
    np.testing.assert_allclose(m.predict(b), m.predict(b, threads=1), rtol=1e-6, atol=1e-7)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads"):
            m.predict(b, threads=bad)
        with pytest.raises(ValueError, match="threads"):
            dpn_infer.load(path, threads=bad)


def test_eight_callers_with_intra_op_threads(wide_model):
    """8 Python threads share one model, each call with its own batch size and thread count."""
    _, path = wide_model
    m = dpn_infer.load(path)
    jobs = [(SIZES[(t * 5 + j) % len(SIZES)], 1 + (t + j) % 3, 1000 * t + j) for t in range(8) for j in range(6)]
    want = {seed: m.predict(make_batch(n, seed), threads=1) for n, _, seed in jobs}
    errors = []
    barrier = threading.Barrier(8)

    def worker(t):
        try:
            barrier.wait()
            for n, thr, seed in jobs[t * 6:(t + 1) * 6]:
                got = m.predict(make_batch(n, seed), threads=thr)
                if not np.allclose(got, want[seed], rtol=1e-6, atol=1e-7):
                    errors.append(f"thread {t}: B={n} threads={thr} differs")
        except BaseException as e:  # noqa: BLE001
            errors.append(f"thread {t}: {type(e).__name__}: {e}")

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(300)
    assert not any(th.is_alive() for th in pool), "a predict call hung"
    assert not errors, errors[:5]
