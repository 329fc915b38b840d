"""`dpn-infer`: the command-line front door.

    dpn-infer demo [--data PATH] ...   train a small FeatureDPN, convert, serve, compare (needs torch)
    dpn-infer info model.bin           print a model file's schema and operator graph
    dpn-infer train --dataset NAME --model feature-dpn|field-dpn|dnn|crossnet [--data PATH] [--config NAME|FILE]
                    [--epochs N] [--batch-size N] [--lr X] [--seed N] [--out DIR]   (needs torch)
    dpn-infer train --data table.csv|table.parquet --label COL [--categorical COL ...] [--dense COL ...]
                    [--multi-hot COL ...] ...      train on your own table (dataset "table")
    dpn-infer eval OUT/model.bin [--dataset NAME] [--data PATH] [--seed N]
                                       score the test split with the engine (numpy only; a table
                                       needs pyarrow to be read)
    dpn-infer score model.bin --input data.parquet|data.csv|DIR --output scores.parquet|scores.csv
                    [--threads N] [--batch-rows N] [--keep-columns COL ...]   (needs pyarrow)
                                       stream a log through the model in bounded memory
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__

DATASET_NAMES = ("movielens-100k", "movielens-1m", "criteo", "frappe", "ml-tag", "synthetic", "table")
LOADER_FLAGS = ("sequences", "max_seq_len", "min_count", "hash_buckets", "rows", "download",
                "label", "categorical", "dense", "multi_hot", "sep", "max_len", "split")


class HelpFormatter(argparse.HelpFormatter):
    """Appends "(default: X)" to an option's help when it has a default and its help does not say
    it already (an option without a default says in its help what happens instead)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or not action.option_strings or action.default in (None, False)
                or action.default is argparse.SUPPRESS):
            return text
        return f"{text} (default: %(default)s)"


def _info(args) -> int:
    from . import engine

    try:
        m = engine.load(args.model)
    except (engine.ModelFormatError, OSError) as e:
        print(f"dpn-infer: {e}", file=sys.stderr)
        return 1
    meta = m.metadata
    if args.json:
        print(json.dumps({k: v for k, v in meta.items() if k != "extra"}, indent=2))
        return 0
    print(f"{args.model}: {meta.get('model_type', '?')}, opset {meta.get('opset')}, "
          f"producer {meta.get('producer', '?')}")
    if meta.get("arithmetic") == "bf16":
        print("arithmetic: bf16 (linear / dylinear run bfloat16 GEMMs; load(..., bf16_gemm=False) for float32)")
    elif meta.get("arithmetic") == "int8":
        print("arithmetic: int8 (linear / dylinear run int8 GEMMs; load(..., int8_gemm=False) for float32)")
    print("fields:")
    for f in m.schema:
        keys = ("vocab", "policy", "pooling", "max_len", "truncate", "table")
        extra = ", ".join(f"{k}={f[k]}" for k in keys if k in f)
        print(f"  {f['name']:<20} {f['kind']:<10} dim={f['dim']}" + (f", {extra}" if extra else ""))
    print("graph:")
    for n in meta["graph"]["nodes"]:
        attrs = {k: v for k, v in n.get("attrs", {}).items() if k != "field"}
        src = n.get("attrs", {}).get("field") or ", ".join(n.get("inputs", []))
        print(f"  {n['output']:<12} = {n['op']}({src}) {attrs if attrs else ''}")
    print(f"output: {meta['graph']['output']}")
    _print_tensors(args.model, meta)
    return 0


def _print_tensors(path, meta) -> None:
    """Each tensor's dtype and shape, and the file's bytes by part (embedding tables, dense weights,
    the rest: header, metadata, table, alignment), each beside what its tensors take in float32. An
    int8 tensor's scales count with its part (and not in the float32 figure)."""
    from .converters.format import SCALE_SUFFIX, read, dtype_name

    _, tensors = read(path)
    tables = {name for n in meta["graph"]["nodes"] if n["op"] in ("embedding", "seq_embedding")
              for role, name in n.get("params", {}).items() if role == "table"}
    print("tensors:")
    parts = {"embeddings": 0, "dense weights": 0}
    as_fp32 = dict.fromkeys(parts, 0)
    for name, a in tensors.items():
        scales = name.endswith(SCALE_SUFFIX) and name[:-len(SCALE_SUFFIX)] in tensors
        owner = name[:-len(SCALE_SUFFIX)] if scales else name
        part = "embeddings" if owner in tables else "dense weights"
        parts[part] += a.nbytes
        as_fp32[part] += 0 if scales else 4 * a.size
        print(f"  {name:<32} {dtype_name(a):<9} {list(a.shape)}")
    total = os.path.getsize(path)
    rest = total - sum(parts.values())
    print("size: " + ", ".join(f"{k} {_bytes(v)}" + (f" ({v / as_fp32[k]:.2f}x float32)"
                                                        if as_fp32[k] and v != as_fp32[k] else "")
                               for k, v in parts.items()) +
          f", other {_bytes(rest)}; file {_bytes(total)}")


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _add_loader_flags(p):
    g = p.add_argument_group("loader options (defaults: the loader's, or the config's 'loader' section)")
    g.add_argument("--sequences", action="store_true", default=None,
                   help="MovieLens: add behaviour sequences hist_movie / hist_genre")
    g.add_argument("--max-seq-len", type=int, help="MovieLens: sequence length (default 20)")
    g.add_argument("--min-count", type=int,
                   help="Criteo and tables: categories seen fewer times in the train split -> the "
                        "OOV id 0 (default: 10 for Criteo, 1 for a table)")
    g.add_argument("--hash-buckets", type=int,
                   help="Criteo and tables: hash categories into N buckets instead (default: off)")
    g.add_argument("--rows", type=int, help="synthetic: number of generated rows (default 60000)")
    g.add_argument("--download", action="store_true", default=None,
                   help="MovieLens-100K: download from GroupLens when not found (needs network)")
    t = p.add_argument_group("your own table (--data FILE.csv|FILE.parquet|FOLDER; docs/training.md)")
    t.add_argument("--label", metavar="COL", help="the 0/1 label column (required for a table; "
                                                  "default: none)")
    t.add_argument("--categorical", nargs="+", metavar="COL",
                   help="categorical columns, indexed on the train split (default: when no column "
                        "list is given, every column that is not float, a list or the label)")
    t.add_argument("--dense", nargs="+", metavar="COL",
                   help="numeric columns, fed as float32 (default: the float columns, when no "
                        "column list is given)")
    t.add_argument("--multi-hot", nargs="+", metavar="COL",
                   help="columns of lists, or of strings split at --sep (default: the list columns, "
                        "when no column list is given)")
    t.add_argument("--sep", help="separator of multi-hot strings (default: |)")
    t.add_argument("--max-len", type=int,
                   help="ids kept per multi-hot row (default: the longest row in the train split)")
    t.add_argument("--split", nargs="+", metavar="X",
                   help="train valid test fractions, or the name of a column holding "
                        "train/valid/test (default: 0.8 0.1 0.1, seeded by --seed)")


def _split_arg(values):
    """--split 0.8 0.1 0.1 -> [0.8, 0.1, 0.1]; --split COLUMN -> "COLUMN"."""
    if len(values) == 1:
        return values[0]
    try:
        return [float(v) for v in values]
    except ValueError:
        raise SystemExit(f"dpn-infer: --split takes three fractions or one column name, got {values}")


def _loader_options(args, base=None) -> dict:
    opts = dict(base or {})
    for k in LOADER_FLAGS:
        v = getattr(args, k, None)
        if v is not None:
            opts[k] = _split_arg(v) if k == "split" else v
    return opts


def _dataset_name(args) -> str | None:
    """--dataset, else "table" when the call names a label or a .csv / .parquet file."""
    from .datasets import TABLE_SUFFIXES

    if args.dataset:
        return args.dataset
    if args.label or (args.data and os.path.splitext(args.data)[1].lower() in TABLE_SUFFIXES):
        return "table"
    return None


def _found_data(ds_info) -> str | None:
    """The data path a loader read (``Dataset.info["path"]``; several files -> their folder)."""
    path = (ds_info or {}).get("path")
    if not path:
        return None
    parts = str(path).split(";")
    return os.path.abspath(parts[0] if len(parts) == 1 else os.path.commonpath(parts))


def _load(name, path, seed, opts):
    from .datasets import load_dataset

    return load_dataset(name, path, seed=seed, **opts)


def _train(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError:
        print('dpn-infer train needs PyTorch: pip install "dpn_infer[torch]"', file=sys.stderr)
        return 2
    from . import train as T
    from .nn import set_impl

    name = _dataset_name(args)
    if name is None:
        print("dpn-infer: train needs --dataset NAME, or --data FILE.csv|FILE.parquet --label COL "
              "for your own table", file=sys.stderr)
        return 2
    try:
        cfg = T.load_config(args.config or T.DEFAULT_CONFIG[name])
    except (FileNotFoundError, ValueError) as e:
        print(f"dpn-infer: {e}", file=sys.stderr)
        return 2
    hp = dict(cfg.get("train", {}))
    for k in ("epochs", "batch_size", "lr", "patience", "weight_decay"):
        if getattr(args, k) is not None:
            hp[k] = getattr(args, k)
    if args.threads:
        torch.set_num_threads(args.threads)
    opts = _loader_options(args, cfg.get("loader"))
    data = os.path.abspath(args.data) if args.data else None
    try:
        ds = _load(name, data, args.seed, opts)
    except (FileNotFoundError, TypeError, ValueError, ImportError) as e:
        print(f"dpn-infer: {e}", file=sys.stderr)
        return 2
    try:
        model = T.build_model(args.model, ds.schema, cfg, seed=args.seed)
    except ValueError as e:
        print(f"dpn-infer: {e}", file=sys.stderr)
        return 2
    set_impl(model, args.impl)
    out = args.out or os.path.join("runs", f"{name}-{args.model}-seed{args.seed}")
    print(f"data: {ds.name} from {ds.info.get('path', '(generated)')}: {len(ds.train)} train / "
          f"{len(ds.valid)} valid / {len(ds.test)} test rows, {ds.info['positive_rate']:.1%} positive")
    print(f"model: {args.model} ({type(model).__name__}), "
          f"{sum(p.numel() for p in model.parameters()):,} parameters; {hp}")
    # The data path is recorded even when the loader found it ($DPN_DATA, ../shared/data): eval
    # falls back to it, so it scores the split training held out wherever it runs from.
    meta = {"dataset": name, "data": data or _found_data(ds.info), "seed": args.seed, "loader_options": opts,
            "model_kind": args.model, "config": cfg, "impl": args.impl}
    res = T.train(model, ds, epochs=int(hp.get("epochs", 10)), batch_size=int(hp.get("batch_size", 1024)),
                  lr=float(hp.get("lr", 1e-3)), seed=args.seed, patience=int(hp.get("patience", 2)),
                  weight_decay=float(hp.get("weight_decay", 0.0)), out=out,
                  progress=False if args.no_progress else None, meta=meta)
    print(f"valid: AUC {res['valid']['auc']:.6f} logloss {res['valid']['logloss']:.6f}")
    print(f"test:  AUC {res['test']['auc']:.6f} logloss {res['test']['logloss']:.6f} (PyTorch)")
    if "engine_test" in res:
        print(f"test:  AUC {res['engine_test']['auc']:.6f} logloss {res['engine_test']['logloss']:.6f} "
              f"(engine, {res['model_bin']})")
    return 0


def _eval(args) -> int:
    from . import engine
    from .train import INDEXER_FILE, engine_predict, evaluate_logits, read_train_info

    info = read_train_info(args.model) or {}
    name = args.dataset or info.get("dataset")
    if not name:
        print(f"dpn-infer: no --dataset given and no train_info.json beside {args.model}",
              file=sys.stderr)
        return 2
    if info and args.dataset and args.dataset != info.get("dataset"):
        print(f"dpn-infer: warning: the model was trained on {info.get('dataset')!r}, "
              f"scoring {args.dataset!r}", file=sys.stderr)
    same = info.get("dataset") == name
    seed = args.seed if args.seed is not None else (info.get("seed", 2022) if same else 2022)
    # The data: --data, else the path training read (recorded even when it was found through
    # $DPN_DATA; older train_info.json files have it in dataset_info), else the loader's search.
    recorded = (info.get("data") or _found_data(info.get("dataset_info"))) if same else None
    if recorded and not args.data and not os.path.exists(recorded):
        print(f"dpn-infer: warning: {recorded} (the data training read) is gone; looking in "
              f"$DPN_DATA and ../shared/data", file=sys.stderr)
        recorded = None
    data = args.data or recorded
    opts = _loader_options(args, info.get("loader_options") if same else None)
    load_opts = dict(opts)
    indexer_path = os.path.join(os.path.dirname(os.path.abspath(args.model)), INDEXER_FILE)
    if name == "table" and same and os.path.isfile(indexer_path):
        from .datasets import Indexer

        load_opts["indexer"] = Indexer.load(indexer_path)   # the ids training's model was fitted to
    if same and seed != info.get("seed"):
        print(f"dpn-infer: warning: seed {seed} differs from the training seed {info.get('seed')}: "
              f"the test split is not the one training held out", file=sys.stderr)
    try:
        m = engine.load(args.model)
        ds = _load(name, data, seed, load_opts)
    except (engine.ModelFormatError, OSError, TypeError, ValueError, ImportError) as e:
        print(f"dpn-infer: {e}", file=sys.stderr)
        return 2
    logits = engine_predict(m, ds.test, batch_size=args.batch_size, threads=args.threads, logits=True)
    res = evaluate_logits(ds.test.labels, logits)
    res.update(dataset=name, seed=seed, rows=len(ds.test), loader_options=opts)
    ref = info.get("test") if same and seed == info.get("seed") else None
    if args.json:
        if ref:
            res["torch_test"] = ref
        print(json.dumps(res, indent=2))
        return 0
    print(f"{args.model}: {name} test split (seed {seed}, {len(ds.test)} rows): "
          f"AUC {res['auc']:.6f} logloss {res['logloss']:.6f} (engine)")
    if ref:
        print(f"PyTorch at training time: AUC {ref['auc']:.6f} logloss {ref['logloss']:.6f} "
              f"(|AUC diff| {abs(ref['auc'] - res['auc']):.1e})")
    return 0


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _score(args) -> int:
    try:
        from . import _stream
    except ImportError as e:  # pyarrow missing
        print(f'dpn-infer score needs pyarrow (pip install pyarrow): {e}', file=sys.stderr)
        return 2
    from . import engine

    keep = [c for arg in args.keep_columns or [] for c in arg.split(",") if c]
    progress = True if args.progress else False if args.no_progress else None
    try:
        m = engine.load(args.model)
        res = _stream.score_files(
            m, args.input, args.output, input_format=args.input_format, output_format=args.output_format,
            threads=_usable_cpus() if args.threads is None else args.threads, batch_rows=args.batch_rows, keep=keep,
            output=args.output_column, logits=args.logits, cast=args.cast, allow_nan=args.allow_nan,
            progress=progress)
    except (engine.ModelFormatError, engine.InputError, OSError) as e:
        print(f"dpn-infer: {e}", file=sys.stderr)
        return 1
    print(f"scored {res['rows']:,} rows from {res['files']} file(s) in {res['seconds']:.2f} s "
          f"({res['rows_per_s']:,.0f} rows/s) -> {args.output}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `dpn-infer` parser (every option has a help text that gives its default)."""
    from .train import MODELS   # numpy only at import; torch is imported when training starts

    ap = argparse.ArgumentParser(prog="dpn-infer", description="dpn_infer command line",
                                 formatter_class=HelpFormatter)
    ap.add_argument("--version", action="version", version=f"dpn_infer {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="train, convert and serve a small FeatureDPN (needs torch; "
                                    "dpn-infer demo --help for its options)", add_help=False)
    d.add_argument("rest", nargs=argparse.REMAINDER, help="the demo's options")
    i = sub.add_parser("info", help="show a model.bin's schema and graph", formatter_class=HelpFormatter)
    i.add_argument("model", help="a model.bin file")
    i.add_argument("--json", action="store_true", help="print the metadata as JSON")

    t = sub.add_parser("train", help="train a model on a dataset, save model.bin (needs torch)",
                       formatter_class=HelpFormatter)
    t.add_argument("--dataset", choices=DATASET_NAMES,
                   help="which loader reads the data (default: 'table' when --label is given or "
                        "--data is a .csv / .parquet file; otherwise required)")
    t.add_argument("--data", help="dataset file or folder, or the folder holding it (default: "
                                  "$DPN_DATA, then ../shared/data)")
    t.add_argument("--model", default="feature-dpn", choices=MODELS, help="model kind")
    t.add_argument("--config", help="a shipped config name (movielens, criteo, frappe, ml-tag, "
                                    "synthetic, table) or a JSON file (default: the dataset's)")
    t.add_argument("--epochs", type=int, help="most epochs (default: the config's train.epochs)")
    t.add_argument("--batch-size", type=int, help="rows per step (default: the config's train.batch_size)")
    t.add_argument("--lr", type=float, help="Adam learning rate (default: the config's train.lr)")
    t.add_argument("--patience", type=int, help="early stopping: epochs without valid AUC gain, 0 = off "
                                                "(default: the config's train.patience)")
    t.add_argument("--weight-decay", type=float, help="Adam weight decay (default: the config's "
                                                      "train.weight_decay)")
    t.add_argument("--seed", type=int, default=2022, help="seeds torch, numpy and the data split")
    t.add_argument("--out", help="output folder (default: runs/DATASET-MODEL-seedN)")
    t.add_argument("--threads", type=int, help="torch threads (default: PyTorch's, one per core)")
    t.add_argument("--impl", choices=("auto", "kron", "paper"), default="auto",
                   help="how dynamic layers compute: auto (Kronecker form in training, paper form "
                        "in evaluation), kron or paper (docs/training.md)")
    t.add_argument("--no-progress", action="store_true",
                   help="no progress bar (one is drawn on stderr when it is a terminal; the one line "
                        "per epoch on stdout is always printed)")
    _add_loader_flags(t)

    e = sub.add_parser("eval", help="score a dataset's test split with the engine",
                       formatter_class=HelpFormatter)
    e.add_argument("model", help="model.bin (train_info.json beside it gives the defaults)")
    e.add_argument("--dataset", choices=DATASET_NAMES, help="default: the one training recorded")
    e.add_argument("--data", help="dataset file or folder, or the folder holding it (default: the "
                                  "path training read, then $DPN_DATA, then ../shared/data)")
    e.add_argument("--seed", type=int, help="split seed (default: the training seed)")
    e.add_argument("--batch-size", type=int, default=8192, help="rows per engine call")
    e.add_argument("--threads", type=int, default=1, help="engine threads")
    e.add_argument("--json", action="store_true", help="print the metrics as JSON")
    _add_loader_flags(e)

    s = sub.add_parser("score", help="score a Parquet/CSV log into a Parquet/CSV file (needs pyarrow)",
                       formatter_class=HelpFormatter,
                       description="Stream every row of the input through the model in bounded memory "
                                   "and write the scores (float32 probabilities, or logits) in input "
                                   "order, with any kept columns.")
    s.add_argument("model", help="model.bin")
    s.add_argument("--input", "-i", required=True,
                   help="a Parquet or CSV file, or a directory of them (walked recursively, in name order)")
    s.add_argument("--output", "-o", required=True, help="output file (.parquet or .csv)")
    s.add_argument("--input-format", choices=("parquet", "csv"), help="default: from the file names")
    s.add_argument("--output-format", choices=("parquet", "csv"), help="default: from the output's name")
    s.add_argument("--threads", type=_positive, help="engine threads (default: every usable CPU)")
    s.add_argument("--batch-rows", type=_positive, default=65536,
                   help="rows per engine call; memory grows with it, not with the input (default 65536)")
    s.add_argument("--keep-columns", nargs="+", metavar="COL",
                   help="input columns copied to the output beside the score, e.g. a request id "
                        "(default: none)")
    s.add_argument("--output-column", default="score", help="the score column's name (default: score)")
    s.add_argument("--logits", action="store_true", help="write logits instead of probabilities")
    s.add_argument("--cast", action="store_true",
                   help="safe casts of Parquet columns (int32 ids to int64, float64 values to float32)")
    s.add_argument("--allow-nan", action="store_true",
                   help="write NaN for rows whose score overflowed, instead of stopping")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--progress", action="store_true", help="progress bar even when stderr is not a terminal")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")

    return ap


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:
        # The demo parses its own options (argparse.REMAINDER would reject a leading --option).
        from .demo import main as demo_main

        demo_main(argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    if args.cmd == "score":
        return _score(args)
    if args.cmd == "train":
        return _train(args)
    if args.cmd == "eval":
        return _eval(args)
    return _info(args)


if __name__ == "__main__":
    sys.exit(main())
