"""What a first run meets: --data / $DPN_DATA given the dataset's folder or its parent, `dpn-infer
eval` finding the data training found, the demo's --seed, a generated log a model can learn,
--help giving every option's default, one line per epoch on a stdout that is not a terminal."""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from dpn_infer.datasets import dataset_path, find_shared_data, load_criteo, load_dataset


def _criteo_file(folder, rows=300, seed=0):
    """A tiny Criteo TSV at folder/criteo-10k/train.tsv (label, 13 integers, 26 categories)."""
    rng = np.random.default_rng(seed)
    d = folder / "criteo-10k"
    d.mkdir(parents=True)
    lines = []
    for _ in range(rows):
        ints = [str(int(v)) for v in rng.integers(0, 50, 13)]
        cats = [f"{v:x}" for v in rng.integers(0, 6, 26)]
        lines.append("\t".join([str(int(rng.random() < 0.4))] + ints + cats) + "\n")
    (d / "train.tsv").write_text("".join(lines))
    return d


def _same(a, b):
    assert a.schema == b.schema and a.info["path"] == b.info["path"]
    for s in ("train", "valid", "test"):
        for k, v in getattr(a, s).features.items():
            np.testing.assert_array_equal(v, getattr(b, s).features[k])


def test_data_takes_the_dataset_folder_or_its_parent(tmp_path, monkeypatch):
    d = _criteo_file(tmp_path)
    ref = load_criteo(d / "train.tsv", min_count=1)
    assert dataset_path("criteo-10k", tmp_path) == d and dataset_path("criteo-10k", d) == d
    for given in (tmp_path, d):                                   # --data PARENT or --data FOLDER
        _same(load_dataset("criteo", str(given), min_count=1), ref)
    for env in (tmp_path, d):                                     # DPN_DATA=PARENT or =FOLDER
        monkeypatch.setenv("DPN_DATA", str(env))
        assert find_shared_data("criteo-10k") == d
        _same(load_criteo(min_count=1), ref)


@pytest.mark.skipif(find_shared_data("ml-tag-sample") is None, reason="../shared/data not present")
def test_data_parent_on_the_shared_folder(monkeypatch):
    folder = find_shared_data("ml-tag-sample")
    a = load_dataset("ml-tag", str(folder.parent))
    _same(a, load_dataset("ml-tag", str(folder)))
    monkeypatch.setenv("DPN_DATA", str(folder))
    _same(a, load_dataset("ml-tag"))


def test_eval_falls_back_to_the_data_training_found(tmp_path, monkeypatch, capsys):
    """Training found a tiny Criteo file through $DPN_DATA; eval runs without it (and from another
    folder). Before the fix it loaded whatever Criteo the search found next (../shared/data's
    criteo-10k on CI: 1,000 test rows instead of these 30), or failed."""
    pytest.importorskip("torch")
    from dpn_infer import cli

    d = _criteo_file(tmp_path / "data")
    monkeypatch.setenv("DPN_DATA", str(tmp_path / "data"))
    out = tmp_path / "run"
    assert cli.main(["train", "--dataset", "criteo", "--min-count", "1", "--model", "dnn", "--epochs", "1",
                     "--batch-size", "64", "--threads", "1", "--out", str(out), "--no-progress"]) == 0
    info = json.loads((out / "train_info.json").read_text())
    assert info["data"] == str(d / "train.tsv")
    monkeypatch.delenv("DPN_DATA")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert cli.main(["eval", str(out / "model.bin"), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["rows"] == 30 and res["auc"] == info["engine_test"]["auc"]


def test_demo_seed_fixes_the_weights_and_the_auc(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    from dpn_infer import cli, demo

    def args(seed, name):
        return ["--synthetic", "2000", "--epochs", "1", "--seed", str(seed), "--out", str(tmp_path / name)]

    # one run in another process, with another str-hash seed (set and dict orders of names change)
    run = subprocess.run([sys.executable, "-m", "dpn_infer.demo", *args(11, "a")], check=True,
                         capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "7"}, cwd=tmp_path)
    monkeypatch.setattr(demo, "throughput", lambda *a: 1.0)      # its timings are not under test here
    b = demo.main(args(11, "b"))
    demo.main(args(12, "c"))
    assert f"test AUC: PyTorch {b['auc_torch']:.6f}, engine {b['auc_engine']:.6f}" in run.stdout
    model = {n: (tmp_path / n / "model.bin").read_bytes() for n in "abc"}
    assert model["a"] == model["b"] and model["a"] != model["c"]
    # the demo records its data and seed: `dpn-infer eval` rebuilds its test split
    capsys.readouterr()
    assert cli.main(["eval", str(tmp_path / "b" / "model.bin"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["auc"] == b["auc_engine"]


def test_generated_log_is_learnable():
    """The generated log's clicks depend on a bias per user and per item and on price and hour
    (dpn_infer/datasets/synthetic.py), which a DNN reads from its embedding rows and inputs, so it
    ranks the test rows well above chance (AUC ~0.7 here; the generator's own logit: ~0.82).
    Before, the clicks had no main effects and models stayed near 0.5."""
    torch = pytest.importorskip("torch")
    from dpn_infer import train as T

    torch.set_num_threads(1)
    ds = load_dataset("synthetic", rows=10000, seed=0)
    model = T.build_model("dnn", ds.schema, T.load_config("synthetic"), seed=0)
    res = T.train(model, ds, epochs=2, batch_size=256, lr=3e-3, seed=0, patience=0, progress=False, log=None)
    assert res["test"]["auc"] > 0.6


def _options(parser, path=()):
    """(command path, its parser, action) for every option of a parser and its subcommands."""
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for name, sub in a.choices.items():
                yield from _options(sub, path + (name,))
        elif not isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
            yield path, parser, a


def test_every_option_has_help_and_its_default():
    from dpn_infer.cli import build_parser
    from dpn_infer.demo import build_parser as demo_parser

    seen = 0
    for top in (build_parser(), demo_parser()):
        for path, parser, a in _options(top):
            where = f"{' '.join(path)} {a.option_strings or a.dest}"
            assert a.help, where
            if a.option_strings and a.nargs != 0 and not a.required:   # an optional value
                text = parser._get_formatter()._get_help_string(a) % {"default": a.default}
                assert "default" in text, where
            seen += 1
    assert seen > 60
    train = next(p for p in build_parser()._actions if isinstance(p, argparse._SubParsersAction)).choices["train"]
    text = train.format_help()
    assert "--seed SEED" in text and "(default: 2022)" in text
    assert "(default: feature-dpn)" in text and "--label COL" in text
    assert "(default: 3)" in demo_parser().format_help()          # the demo's --epochs


class _Pipe(io.StringIO):
    """A stdout that is not a terminal and remembers how many epoch lines had been flushed."""

    def __init__(self):
        super().__init__()
        self.flushed = []

    def isatty(self):
        return False

    def flush(self):
        self.flushed.append(len(re.findall(r"^epoch \d+:", self.getvalue(), re.M)))


def test_one_flushed_line_per_epoch_when_stdout_is_not_a_terminal(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    from dpn_infer import cli

    pipe = _Pipe()
    monkeypatch.setattr(sys, "stdout", pipe)
    assert cli.main(["train", "--dataset", "synthetic", "--rows", "1500", "--model", "dnn", "--epochs", "3",
                     "--patience", "0", "--batch-size", "256", "--threads", "1", "--out", str(tmp_path)]) == 0
    text = pipe.getvalue()
    assert re.findall(r"^epoch (\d+):", text, re.M) == ["1", "2", "3"]
    assert "\r" not in text                     # no progress bar in a pipe
    # each epoch's line was flushed before the next epoch ran (not only at exit)
    assert {1, 2, 3} <= set(pipe.flushed)
