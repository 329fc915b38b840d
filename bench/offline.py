"""Offline scoring throughput: the Ray Data and Spark scorers scaled from one worker to two, and
`dpn-infer score` against in-process predict.

    python bench/offline.py [--modes ray,spark,cli] [--model config|bench] [--rows 1000000]
                            [--files 8] [--batch 8192] [--threads 2] [--rounds 3] [--data DIR]
                            [--json PATH]

Writes ``--rows`` rows of synthetic criteo-shaped Parquet (39 sparse fields, ids uniform in
10,000-row tables, as bench/run.py's `criteo` config) over ``--files`` files and a model of that
schema (needs the torch extra) into ``--data`` (kept for the next run when given). ``--model
config``: dpn_infer/configs/criteo.json's feature-dpn (16-dim embeddings, a decomposed dynamic 400
layer, then 400-400): light, so reading and moving rows weigh; ``--model bench``: bench/run.py's
criteo (three full dynamic 400-wide layers), where the engine's work dominates. Then each mode
prints rows/s of the whole job (cluster already up; the workers' start and the Parquet reads
included, the output materialized) and a ratio:

- ``ray``: dpn_infer.ray.score with 1 actor, then 2 actors, on ``ray.init(num_cpus=3)`` (the actors
  hold a CPU each for the job, the reads need one more); the read is repartitioned into ``--files``
  blocks, as Ray reads small files into one block, which one actor would score alone;
- ``spark``: dpn_infer.spark.score on ``local[1]``, then ``local[2]``, into Spark's ``noop`` sink;
- ``cli``: ``dpn-infer score`` (a child process: its start, the model's load, the Parquet reads and
  the output file included) against ``predict`` on the same rows already in memory as numpy arrays,
  both ``--threads`` threads and ``--batch`` rows per call; ``--rounds`` alternating turns, the
  median of each.

A mode is a function ``(data, args) -> [(label, seconds), ...]`` in MODES, the baseline first and
the run compared with it last: add one there. On a machine shared with other work, the ratio is
only as steady as the neighbours; run it twice.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


class Data:
    """The Parquet folder, the model file and the row count a mode scores."""

    def __init__(self, folder: Path, rows: int, model: str):
        self.parquet = str(folder / "parquet")
        self.model = str(folder / f"criteo-{model}.bin")
        self.rows = rows


def prepare(folder: Path, rows: int, files: int, model: str) -> Data:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(HERE))
    import run  # bench/run.py: the criteo config's batches

    import dpn_infer
    from dpn_infer import train

    data = Data(folder, rows, model)
    if not os.path.exists(data.model):
        if model == "bench":  # bench/run.py's criteo: three full dynamic 400-wide layers
            module = run.build("criteo")
        else:
            n_fields, dim = run.CONFIGS["criteo"][:2]
            schema = [{"name": f"f{i}", "kind": "sparse", "vocab": run.VOCAB, "dim": dim, "policy": "hash"}
                      for i in range(n_fields)]
            module = train.build_model("feature-dpn", schema, train.load_config("criteo"), seed=0).eval()
        dpn_infer.save(module, data.model)
    stamp = folder / "rows.txt"
    if stamp.exists() and stamp.read_text() == f"{rows} {files}":
        return data
    out = Path(data.parquet)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    step = -(-rows // files)
    for i in range(files):
        n = min(step, rows - i * step)
        cols = run.make_batch("criteo", n, rng)
        pq.write_table(pa.table(cols), out / f"part-{i:03d}.parquet", row_group_size=65536)
    stamp.write_text(f"{rows} {files}")
    return data


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_ray(data: Data, args) -> list:
    import ray

    import dpn_infer.ray as dray

    # Ray puts the driver's working folder on the workers' sys.path: from a checkout, that would be
    # its source tree (no compiled engine) rather than the installed package.
    cwd = os.getcwd()
    os.chdir(tempfile.gettempdir())
    try:
        ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, configure_logging=False)
    finally:
        os.chdir(cwd)
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        out = []
        for actors in (1, 2):
            def job():
                ds = ray.data.read_parquet(data.parquet).repartition(args.files)
                scored = dray.score(ds, data.model, actors=actors, threads_per_actor=1,
                                    batch_size=args.batch, keep=[]).materialize()
                assert scored.count() == data.rows
            out.append((f"ray {actors} actor(s) x 1 thread", timed(job)))
        return out
    finally:
        ray.shutdown()


def bench_spark(data: Data, args) -> list:
    from pyspark.sql import SparkSession

    import dpn_infer.spark as dspark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    out = []
    for cores in (1, 2):
        spark = (SparkSession.builder.master(f"local[{cores}]").appName("dpn_infer-bench")
                 .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
                 .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.batch))
                 # Many small splits: Spark would otherwise read a few large ones, unevenly between cores.
                 .config("spark.sql.files.maxPartitionBytes", str(4 << 20)).getOrCreate())
        spark.sparkContext.setLogLevel("ERROR")
        try:
            df = spark.read.parquet(data.parquet)
            job = lambda: dspark.score(df, data.model, keep=[], threads=1).write.format("noop").mode("overwrite").save()  # noqa: E731
            out.append((f"spark local[{cores}]", timed(job)))
        finally:
            spark.stop()
    return out


def bench_cli(data: Data, args) -> list:
    import statistics
    import subprocess

    import pyarrow.parquet as pq

    import dpn_infer

    table = pq.read_table(data.parquet)
    arrays = {name: table.column(name).to_numpy() for name in table.schema.names}
    model = dpn_infer.load(data.model)
    cli = ["dpn-infer", "score", data.model, "--input", data.parquet, "--threads", str(args.threads),
           "--batch-rows", str(args.batch), "--no-progress"]
    turns = {"predict": [], "cli": []}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.rounds):
            def in_process():
                for s in range(0, data.rows, args.batch):
                    model.predict({k: v[s:s + args.batch] for k, v in arrays.items()}, threads=args.threads)
            turns["predict"].append(timed(in_process))
            turns["cli"].append(timed(lambda: subprocess.run(
                cli + ["--output", os.path.join(out, "scores.parquet")], check=True, cwd=out)))
    return [(f"predict in process, {args.threads} threads", statistics.median(turns["predict"])),
            (f"dpn-infer score, {args.threads} threads", statistics.median(turns["cli"]))]


MODES = {"ray": bench_ray, "spark": bench_spark, "cli": bench_cli}
RATIOS = {"ray": "two actors / one", "spark": "local[2] / local[1]", "cli": "dpn-infer score / predict"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {list(MODES)}")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--files", type=int, default=8, help="Parquet files (and Ray read blocks)")
    ap.add_argument("--batch", type=int, default=8192, help="rows per scored batch")
    ap.add_argument("--model", choices=("config", "bench"), default="config",
                    help="config: configs/criteo.json's feature-dpn (a decomposed dynamic layer, then "
                         "400-400: light, so reading and moving rows weigh); bench: bench/run.py's criteo "
                         "(three full dynamic 400 layers: the engine's work dominates)")
    ap.add_argument("--threads", type=int, default=2, help="cli mode: engine threads")
    ap.add_argument("--rounds", type=int, default=3, help="cli mode: alternating turns")
    ap.add_argument("--data", help="folder for the Parquet and the model (default: a temporary one)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"unknown modes {unknown} (expected some of {list(MODES)})")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.data) if args.data else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        data = prepare(folder, args.rows, args.files, args.model)
        print(f"{data.rows:,} rows of criteo-shaped Parquet in {args.files} files, model '{args.model}'; "
              f"{os.cpu_count()} CPUs here")
        results = {}
        for mode in modes:
            runs = MODES[mode](data, args)
            for label, seconds in runs:
                print(f"{label:32s} {data.rows / seconds:12,.0f} rows/s  ({seconds:.1f} s)", flush=True)
            ratio = runs[0][1] / runs[-1][1]
            print(f"{mode}: {RATIOS[mode]} = {ratio:.2f}x", flush=True)
            results[mode] = {"runs": [{"label": lb, "seconds": s, "rows_per_s": data.rows / s} for lb, s in runs],
                             "ratio": ratio}
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": data.rows, "model": args.model, "results": results},
                                              indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
