"""End-to-end demo: train a small FeatureDPN, save model.bin, serve it with the C++ engine.

    dpn-infer demo [--data PATH] [--epochs 3] [--out dpn_demo]     (or: python -m dpn_infer.demo)

Uses MovieLens-100K when it is on disk (``--data``, $DPN_DATA, or ``../shared/data``); otherwise a
generated click log, and says so. Trains with ``dpn_infer.train.train`` (the ``dpn-infer train``
loop), then prints test AUC from PyTorch and from the engine, their largest disagreement, and
throughput of both. Needs the ``torch`` extra.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def load_data(path, seed, synthetic_rows=None):
    from .datasets import load_movielens_100k, make_click_log

    if synthetic_rows:
        print(f"data: generated click log ({synthetic_rows} rows; synthetic, its AUC means nothing about real data)")
        return make_click_log(rows=synthetic_rows, seed=seed)
    try:
        ds = load_movielens_100k(path, seed=seed)
        print(f"data: MovieLens-100K from {ds.info['path']} ({ds.info['rows']} rated pairs, "
              f"{ds.info['positive_rate']:.1%} clicks)")
    except FileNotFoundError as e:
        if path:
            raise
        print(f"data: MovieLens-100K not found ({e}).\n"
              "data: using a generated click log instead (synthetic: its AUC means nothing about real data)")
        ds = make_click_log(seed=seed)
    return ds


def build_model(ds):
    from .nn import FeatureDPN, LayerSpec, Schema

    schema = Schema.from_json(ds.schema)
    # The item side's multi-hot field is the paper's "genre" context for the second dynamic layer.
    ctx = [f["name"] for f in ds.schema if f["kind"] == "multi_hot"][:1] or "x0"
    layers = [LayerSpec(64, dynamic=True, context="x0", hidden=4, sigma="relu"),
              LayerSpec(32, dynamic=True, context=ctx, hidden=4, sigma="relu"),
              LayerSpec(16)]
    return FeatureDPN(schema, layers, activation="relu", norm="batchnorm")


def _meta(ds, seed) -> dict:
    """What train_info.json needs for `dpn-infer eval dpn_demo/model.bin` to rebuild the test split."""
    if "path" in ds.info:
        return {"dataset": "movielens-100k", "data": ds.info["path"], "seed": seed,
                "loader_options": {}, "demo": True}
    return {"dataset": "synthetic", "data": None, "seed": seed,
            "loader_options": {"rows": ds.info["rows"]}, "demo": True}


def throughput(fn, batch, reps):
    """Samples/s from the median of `reps` timed calls (after one warm-up)."""
    fn(batch)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(batch)
        times.append(time.perf_counter() - t0)
    rows = len(next(iter(batch.values())))
    return rows / statistics.median(times)


def build_parser() -> argparse.ArgumentParser:
    from .cli import HelpFormatter

    ap = argparse.ArgumentParser(prog="dpn-infer demo", description=__doc__.split("\n\n")[0],
                                 formatter_class=HelpFormatter)
    ap.add_argument("--data", help="MovieLens-100K folder, or the folder holding it (default: "
                                   "$DPN_DATA, then ../shared/data, else a generated click log)")
    ap.add_argument("--out", default="dpn_demo", help="output folder for model.bin, checkpoint.pt and train_info.json (default: dpn_demo)")
    ap.add_argument("--epochs", type=int, default=3, help="training epochs")
    ap.add_argument("--batch-size", type=int, default=512, help="rows per training step")
    ap.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate")
    ap.add_argument("--seed", type=int, default=2022,
                    help="seeds the weights, the data split, the batch order (and the generated log)")
    ap.add_argument("--synthetic", type=int, metavar="ROWS", default=None,
                    help="use a generated click log of ROWS rows even when MovieLens is on disk "
                         "(default: only when MovieLens is not found, 60000 rows)")
    return ap


def main(argv=None):
    args = build_parser().parse_args(argv)

    try:
        import torch
    except ImportError:
        sys.exit('the demo trains with PyTorch: pip install "dpn_infer[torch]"')
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    import dpn_infer

    from .train import seed_everything, train

    ds = load_data(args.data, args.seed, args.synthetic)
    seed_everything(args.seed)          # the initial weights: same --seed, same model and AUC
    model = build_model(ds)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: FeatureDPN, {n_params:,} parameters, {len(ds.train)} train / {len(ds.valid)} valid / "
          f"{len(ds.test)} test rows")
    # The trainer keeps the best epoch, writes model.bin (+ checkpoint.pt, train_info.json) and
    # scores the test split with the engine too.
    res = train(model, ds, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                patience=0, out=args.out, meta=_meta(ds, args.seed))
    path = Path(res["model_bin"])
    engine = dpn_infer.load(path)
    print(f"model.bin: {path.stat().st_size / 1024:.0f} KiB")
    auc_torch, auc_engine = res["test"]["auc"], res["engine_test"]["auc"]
    print(f"test AUC: PyTorch {auc_torch:.6f}, engine {auc_engine:.6f}")
    print(f"agreement: max |p_torch - p_engine| = {res['engine_max_abs_diff']:.2e} over "
          f"{len(ds.test)} rows")

    print("throughput (samples/s, median of timed calls, 1 thread each):")
    torch.set_num_threads(1)
    for bs in (1, 256, 2048):
        b = ds.test.take(np.arange(min(bs, len(ds.test)))).features
        reps = 200 if bs == 1 else 20
        with torch.no_grad():
            t = throughput(lambda x: model(x), b, reps)
        e = throughput(lambda x: engine.predict(x), b, reps)
        print(f"  batch {bs:5d}: engine {e:12,.0f}   PyTorch eager {t:12,.0f}   ratio {e / t:6.1f}x")
    return {"auc_torch": auc_torch, "auc_engine": auc_engine,
            "max_abs_diff": res["engine_max_abs_diff"]}


if __name__ == "__main__":
    main()
