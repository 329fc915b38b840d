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
import re
import sys
import tempfile
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


def input_files(path: str, fmt: str | None, output: str | None = None) -> tuple[list[str], str]:
    """The files to read, in a stable order, and their format. A directory is walked recursively
    (Hive-style partition folders included); names starting with '.' or '_' (_SUCCESS, .crc) are
    skipped, and so is ``output`` (a second run must not read the first one's scores back)."""
    if os.path.isdir(path):
        files = []
        skip = os.path.realpath(output) if output else None
        for root, dirs, names in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
            files += [os.path.join(root, n) for n in sorted(names) if not n.startswith((".", "_"))
                      and os.path.realpath(os.path.join(root, n)) != skip]
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
    """The input files opened lazily, with their row count where the format records it (Parquet).
    ``batches()`` yields (path, first row of the batch within that file, batch)."""

    def __init__(self, files: list[str], fmt: str, fields: list[dict], keep: Sequence[str], output: str,
                 batch_rows: int):
        self.files, self.fmt, self.fields, self.batch_rows = files, fmt, fields, batch_rows
        names = [f["name"] for f in fields]
        self.total = None
        if fmt == "parquet":
            first = _arrow_errors(files[0], lambda: pq.read_schema(files[0]))
            self.keep = output_names(first.names, keep, output)
            self.kept_schema = pa.schema([first.field(c) for c in self.keep])
            self.total = 0
            for f in files:  # metadata only: checks every file's columns before any scoring
                meta = _arrow_errors(f, lambda: pq.ParquetFile(f))
                self._check_header(f, meta.schema_arrow.names, names)
                self.total += meta.metadata.num_rows
        else:
            self.types = self._csv_types()
            header = self._csv_header(files[0])
            self.keep = output_names(header, keep, output)
            self._check_header(files[0], header, names)
            # Kept columns that are no field are copied as text (a zip code keeps its leading zero);
            # a kept field as the model reads it.
            self.types.update({c: pa.string() for c in self.keep if c not in self.types})
            self.kept_schema = pa.schema([pa.field(c, self.types[c]) for c in self.keep])
        self.columns = names + [c for c in self.keep if c not in names]

    def _check_header(self, path: str, header: list, names: list):
        need = names + self.keep
        missing = [n for n in need if n not in header]
        if missing:
            raise InputError(f"{path}: no column for {missing} (model fields and kept columns)")
        twice = sorted({n for n in need if header.count(n) > 1})
        if twice:
            raise InputError(f"{path}: more than one column named {twice}: which one to read is unclear")

    def _csv_header(self, path: str) -> list:
        return _arrow_errors(path, lambda: pacsv.open_csv(
            path, convert_options=pacsv.ConvertOptions(column_types=self.types)).schema.names)

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

    def _file_batches(self, path: str) -> Iterator[pa.RecordBatch]:
        if self.fmt == "parquet":
            # pre_buffer (on by default) caches every byte range read until the file is done:
            # memory would grow with the file.
            pf = pq.ParquetFile(path, pre_buffer=False)
            yield from pf.iter_batches(batch_size=self.batch_rows, columns=self.columns, use_threads=False)
            return
        header = self._csv_header(path)
        self._check_header(path, header, [f["name"] for f in self.fields])
        reader = pacsv.open_csv(
            path, read_options=pacsv.ReadOptions(block_size=1 << 22),
            convert_options=pacsv.ConvertOptions(include_columns=self.columns, column_types=self.types))
        for b in reader:
            for start in range(0, b.num_rows, self.batch_rows):
                yield b.slice(start, self.batch_rows)

    def batches(self) -> Iterator[tuple[str, int, pa.RecordBatch]]:
        for path in self.files:
            start, it = 0, self._file_batches(path)
            while True:
                b = _arrow_errors(path, lambda: next(it, None))
                if b is None:
                    break
                yield path, start, b
                start += b.num_rows


def _arrow_errors(path: str, fn):
    """fn(), with pyarrow's errors (a damaged file, a CSV value that is no number) as InputError
    naming the file (and, for CSV, the column by name rather than number)."""
    try:
        return fn()
    except pa.ArrowException as e:
        msg = str(e)
        m = re.search(r"CSV column #(\d+)", msg)
        if m:
            try:
                name = pacsv.open_csv(path).schema.names[int(m.group(1))]
                msg = msg.replace(m.group(0), f"CSV column '{name}'")
            except (pa.ArrowException, IndexError):
                pass
        raise InputError(f"{path}: {msg}") from None


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
    def __init__(self, path: str, fmt: str, kept: pa.Schema):
        self.path, self.fmt = path, fmt
        if fmt == "csv":
            nested = [f.name for f in kept if pa.types.is_nested(f.type)]
            if nested:
                raise InputError(f"kept columns {nested} are lists, which CSV cannot hold: write Parquet")
        fd, self.tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                                        prefix=f".{os.path.basename(path)}.", suffix=".partial")
        os.close(fd)
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
        except Exception:  # noqa: BLE001 - the error being handled is the one to report
            pass
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
    files, fmt = input_files(input_path, input_format, output_path)
    out_fmt = output_format or _format_of(output_path)
    if out_fmt not in FORMATS:
        raise InputError(f"{output_path}: cannot tell the output format from the name; pass --output-format")
    fields = model.schema
    src = Source(files, fmt, fields, keep, output, batch_rows)
    sink = _Sink(output_path, out_fmt, src.kept_schema)
    bar = _Progress(src.total, sys.stderr.isatty() if progress is None else progress)
    rows, t0 = 0, time.perf_counter()
    score_field = pa.field(output, pa.float32(), nullable=False)
    out_schema = pa.schema(list(src.kept_schema) + [score_field])
    try:
        for path, start, batch in _prefetched(src.batches()):
            try:
                scored = score_batch(model, batch, keep=src.keep, output=output, threads=threads,
                                     logits=logits, cast=cast, allow_nan=allow_nan)
            except InputError as e:
                end = start + batch.num_rows - 1
                raise InputError(f"{path}, rows {start}..{end} of the file (the row below counts from "
                                 f"{start}): {e}") from e
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
