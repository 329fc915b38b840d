"""``dpn-infer score``: stream Parquet or CSV files through a model into one Parquet or CSV file, in
memory bounded by the batch size and the input's row-group size (never by the input's size).

A reader thread decodes the next batches (pyarrow releases the GIL) while the engine scores the
current one (it releases the GIL too); the queue between them holds at most ``PREFETCH`` batches.
Only the model's fields and the kept columns are read. The output is written to a temporary file
beside the target and renamed over it at the end, so a failed run never leaves a partial file.
"""
from __future__ import annotations

import os
import queue
import sys
import threading
import time
from typing import Iterator, Sequence

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ._engine import InputError
from ._scoring import output_names, score_batch

PREFETCH = 2
FORMATS = ("parquet", "csv")
_SUFFIX = {".parquet": "parquet", ".pq": "parquet", ".parq": "parquet", ".csv": "csv"}


def _format_of(path: str) -> str | None:
    return _SUFFIX.get(os.path.splitext(path)[1].lower())


def input_files(path: str, fmt: str | None) -> tuple[list[str], str]:
    """The files to read, in a stable order, and their format. A directory is walked recursively
    (Hive-style partition folders included); names starting with '.' or '_' (_SUCCESS, .crc) skipped."""
    if os.path.isdir(path):
        files = []
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
            files += [os.path.join(root, n) for n in sorted(names) if not n.startswith((".", "_"))]
        kinds = {_format_of(f) for f in files} - {None}
        if fmt is None:
            if len(kinds) != 1:
                found = ", ".join(sorted(kinds)) or "none with a .parquet/.pq/.csv name"
                raise InputError(f"{path}: cannot tell the input format from the files ({found}); "
                                 "pass --input-format")
            fmt = kinds.pop()
        files = [f for f in files if _format_of(f) == fmt]
        if not files:
            raise InputError(f"{path}: no {fmt} files in the directory")
        return files, fmt
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file or directory")
    if not os.path.isfile(path):
        raise InputError(f"{path}: not a regular file or a directory")
    fmt = fmt or _format_of(path)
    if fmt is None:
        raise InputError(f"{path}: cannot tell the format from the name; pass --input-format")
    return [path], fmt


class Source:
    """The input files opened lazily, with their row count where the format records it (Parquet)."""

    def __init__(self, files: list[str], fmt: str, fields: list[dict], keep: Sequence[str], output: str,
                 batch_rows: int):
        self.files, self.fmt, self.fields, self.batch_rows = files, fmt, fields, batch_rows
        names = [f["name"] for f in fields]
        self.total = None
        self.kept_schema = None  # the kept columns' types, where known before reading (Parquet)
        if fmt == "parquet":
            first = pq.read_schema(files[0])
            self.keep = output_names(first.names, keep, output)
            self.kept_schema = pa.schema([first.field(c) for c in self.keep])
            self.total = 0
            for f in files:  # metadata only: checks every file's columns before any scoring
                meta = pq.ParquetFile(f)
                have = set(meta.schema_arrow.names)
                missing = [n for n in names + self.keep if n not in have]
                if missing:
                    raise InputError(f"{f}: no column for {missing} (model fields and kept columns)")
                self.total += meta.metadata.num_rows
        else:
            self.keep = output_names(list(keep), keep, output)  # duplicates only: CSV headers come later
        self.columns = names + [c for c in self.keep if c not in names]

    def _csv_types(self) -> dict:
        # Field columns are read as the engine's dtypes, so a CSV needs no cast.
        types = {}
        for f in self.fields:
            if f["kind"] == "sparse":
                types[f["name"]] = pa.int64()
            elif f["kind"] == "dense" and f.get("dim", 1) == 1:
                types[f["name"]] = pa.float32()
            else:
                raise InputError(f"field '{f['name']}' is {f['kind']}: a CSV column holds one value per "
                                 "row; write list fields to Parquet")
        return types

    def batches(self) -> Iterator[tuple[str, pa.RecordBatch]]:
        for path in self.files:
            if self.fmt == "parquet":
                # pre_buffer (on by default) caches every byte range read until the file is done:
                # memory would grow with the file.
                pf = pq.ParquetFile(path, pre_buffer=False)
                for b in pf.iter_batches(batch_size=self.batch_rows, columns=self.columns, use_threads=False):
                    yield path, b
                continue
            header = pacsv.open_csv(path).schema.names
            missing = [c for c in self.columns if c not in header]
            if missing:
                raise InputError(f"{path}: no column for {missing} (model fields and kept columns)")
            reader = pacsv.open_csv(
                path, read_options=pacsv.ReadOptions(block_size=1 << 22),
                convert_options=pacsv.ConvertOptions(include_columns=self.columns,
                                                     column_types=self._csv_types()))
            for b in reader:
                for start in range(0, b.num_rows, self.batch_rows):
                    yield path, b.slice(start, self.batch_rows)


def _prefetched(it: Iterator, depth: int = PREFETCH) -> Iterator:
    """``it`` run on a reader thread, at most ``depth`` items ahead; its exceptions re-raised here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce():
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((True, done))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            q.put((False, e))

    t = threading.Thread(target=produce, name="dpn-score-reader", daemon=True)
    t.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while t.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


class _Progress:
    """tqdm when installed and stderr is a terminal (or forced); otherwise silent."""

    def __init__(self, total, enabled):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                # unit_scale shows 1.2M rows, but 3.00/3.00 for a small total
                self.bar = tqdm(total=total, unit=" rows", unit_scale=total is None or total >= 10000,
                                dynamic_ncols=True,
                                file=sys.stderr, desc="scoring")

    def update(self, n):
        if self.bar is not None:
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()


class _Sink:
    def __init__(self, path: str, fmt: str):
        self.path, self.fmt = path, fmt
        d = os.path.dirname(os.path.abspath(path))
        self.tmp = os.path.join(d, f".{os.path.basename(path)}.partial-{os.getpid()}")
        self.writer = None
        self.schema = None

    def write(self, batch: pa.RecordBatch):
        if self.writer is None:
            cls = pq.ParquetWriter if self.fmt == "parquet" else pacsv.CSVWriter
            self.writer, self.schema = cls(self.tmp, batch.schema), batch.schema
        elif batch.schema != self.schema:
            raise InputError(f"the kept columns' types changed between input batches: "
                             f"{self.schema} then {batch.schema}")
        self.writer.write_batch(batch)

    def commit(self, schema: pa.Schema):
        if self.writer is None:  # no rows at all: still a valid, empty output
            cls = pq.ParquetWriter if self.fmt == "parquet" else pacsv.CSVWriter
            self.writer = cls(self.tmp, schema)
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self):
        try:
            if self.writer is not None:
                self.writer.close()
        finally:
            if os.path.exists(self.tmp):
                os.unlink(self.tmp)


def score_files(model, input_path: str, output_path: str, *, input_format: str | None = None,
                output_format: str | None = None, threads: int | None = None, batch_rows: int = 65536,
                keep: Sequence[str] = (), output: str = "score", logits: bool = False,
                cast: bool = False, allow_nan: bool = False, progress: bool | None = None) -> dict:
    """Score every row of ``input_path`` (a Parquet/CSV file or a directory of them) into
    ``output_path``: the ``keep`` columns (copied) and the ``output`` score column, in input order.
    Returns {"rows", "files", "seconds", "rows_per_s"}."""
    if batch_rows < 1:
        raise InputError(f"batch_rows must be at least 1, got {batch_rows}")
    files, fmt = input_files(input_path, input_format)
    out_fmt = output_format or _format_of(output_path)
    if out_fmt not in FORMATS:
        raise InputError(f"{output_path}: cannot tell the output format from the name; pass --output-format")
    fields = model.schema
    src = Source(files, fmt, fields, keep, output, batch_rows)
    sink = _Sink(output_path, out_fmt)
    bar = _Progress(src.total, sys.stderr.isatty() if progress is None else progress)
    rows, t0 = 0, time.perf_counter()
    score_field = pa.field(output, pa.float32(), nullable=False)
    out_schema = pa.schema(list(src.kept_schema or []) + [score_field])
    try:
        for path, batch in _prefetched(src.batches()):
            try:
                scored = score_batch(model, batch, keep=src.keep, output=output, threads=threads,
                                     logits=logits, cast=cast, allow_nan=allow_nan)
            except InputError as e:
                raise InputError(f"{path}: input rows {rows}..{rows + batch.num_rows - 1}: {e}") from e
            sink.write(scored)
            out_schema = scored.schema
            rows += batch.num_rows
            bar.update(batch.num_rows)
        sink.commit(out_schema)
    except BaseException:
        sink.abort()
        raise
    finally:
        bar.close()
    dt = time.perf_counter() - t0
    return {"rows": rows, "files": len(files), "seconds": dt, "rows_per_s": rows / dt if dt > 0 else 0.0}
