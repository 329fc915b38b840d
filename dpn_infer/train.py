"""Train a CTR model on a ``dpn_infer.datasets`` Dataset: Adam, early stopping on validation AUC,
seeds, a progress bar; the best model goes straight to model.bin (needs the ``torch`` extra).

    from dpn_infer.datasets import load_dataset
    from dpn_infer.train import build_model, load_config, train

    ds = load_dataset("movielens-100k", seed=2022)
    cfg = load_config("movielens")
    model = build_model("feature-dpn", ds.schema, cfg, seed=2022)
    result = train(model, ds, epochs=30, batch_size=1024, lr=1e-3, seed=2022, patience=2, out="run1")

``out`` receives ``model.bin`` (the engine's file), ``checkpoint.pt``
(``dpn_infer.nn.save_checkpoint``) and ``train_info.json`` (dataset, loader options, seed, config,
per-epoch history, valid/test metrics) that ``dpn-infer eval`` reads to rebuild the same test split;
for a user's table (``dpn_infer.datasets.from_frame``) also ``indexer.json``, its fitted Indexer.
"""
from __future__ import annotations

import copy
import json
import os
import random
import sys
import time
from importlib import resources
from pathlib import Path

import numpy as np

from .metrics import auc, logloss

MODELS = ("feature-dpn", "field-dpn", "dnn", "crossnet", "seq-dpn", "din-heter", "dien", "dien-heter",
          "dyjoint")
# kinds that dpn_infer.nn builds from sequence fields: their model class
SEQUENCE_MODELS = {"seq-dpn": "SeqDPN", "din-heter": "DINHeter", "dien": "DIEN", "dien-heter": "DIENHeter",
                   "dyjoint": "DyJoint"}
# dataset name -> the config shipped for it
DEFAULT_CONFIG = {"movielens-100k": "movielens", "movielens-1m": "movielens", "criteo": "criteo",
                  "frappe": "frappe", "ml-tag": "ml-tag", "synthetic": "synthetic", "table": "table"}
INFO_FILE = "train_info.json"
INDEXER_FILE = "indexer.json"   # a user table's fitted Indexer (dataset.indexer), for serving and eval


def say(*args) -> None:
    """print, flushed: the one line per epoch must reach a pipe or a log file when it is written,
    not when the run ends (stdout is block-buffered when it is not a terminal)."""
    print(*args, flush=True)


def config_names() -> list:
    """Names of the configs shipped in ``dpn_infer/configs``."""
    return sorted(p.name[:-5] for p in resources.files("dpn_infer.configs").iterdir()
                  if p.name.endswith(".json"))


def load_config(name_or_path) -> dict:
    """A shipped config by name (``"movielens"``) or a JSON file by path."""
    s = str(name_or_path)
    p = Path(s)
    if p.suffix == ".json" and p.is_file() or p.is_file():
        return json.loads(p.read_text())
    ref = resources.files("dpn_infer.configs") / f"{s}.json"
    if ref.is_file():
        return json.loads(ref.read_text())
    raise FileNotFoundError(f"config {s!r}: no such file, and not a shipped config "
                            f"(shipped: {', '.join(config_names())})")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def _with_dim(schema, embed_dim):
    out = []
    for f in schema:
        f = dict(f)
        if f["kind"] != "dense" and embed_dim:
            f["dim"] = int(embed_dim)
        out.append(f)
    return out


def build_model(kind: str, schema, config: dict, seed: int | None = None):
    """A model of ``kind`` (one of MODELS) for ``schema`` (list of field dicts),
    shaped by ``config["models"][kind]`` and ``config["embed_dim"]``. Seeds first when ``seed``."""
    from .nn import DNN, CrossNet, FeatureDPN, FieldDPN, Schema

    if kind not in MODELS:
        raise ValueError(f"unknown model {kind!r} (expected one of {MODELS})")
    if seed is not None:
        seed_everything(seed)
    models = config.get("models", {})
    if kind not in models:
        raise ValueError(f"config has no section models.{kind!r} (it has {sorted(models)})")
    sch = Schema.from_json(_with_dim(schema, config.get("embed_dim")))
    kw = dict(models[kind])
    if kind == "dnn":
        return DNN(sch, **kw)
    if kind == "crossnet":
        return CrossNet(sch, **kw)
    if kind == "field-dpn":
        return FieldDPN(sch, kw.pop("field_layers"), kw.pop("layers", []), **kw)
    if kind in SEQUENCE_MODELS:
        return _seq_dpn(_with_dim(schema, config.get("embed_dim")), kw, kind)
    layers = kw.pop("layers")
    return FeatureDPN(sch, layers, **kw)


def _seq_dpn(schema, kw, kind="seq-dpn"):
    """A sequence model from a config section: ``sequence`` names the dataset's behaviour fields (read as
    ``sequence`` fields of their max_len, truncating longer rows), ``candidate`` the query fields,
    ``tables`` optional sequence -> sparse field table sharing; for ``dyjoint`` ``sessions`` gives
    the timestamps field (``name``, default "hist_time", of the first sequence field; ``gap``,
    ``max_sessions``, ``session_len``); the rest are the model class's arguments."""
    from . import nn as dnn

    seq, cand = list(kw.pop("sequence")), list(kw.pop("candidate"))
    tables = dict(kw.pop("tables", {}))
    sessions = dict(kw.pop("sessions", {})) if kind == "dyjoint" else None
    names = {f["name"] for f in schema}
    missing = [n for n in seq + cand if n not in names]
    if missing:
        raise ValueError(f"model {kind!r} needs the fields {missing}, which the dataset does not have "
                         f"(MovieLens: pass --sequences for hist_movie / hist_genre)")
    fields = []
    for f in schema:
        if f["name"] in seq:
            if f["kind"] not in ("multi_hot", "sequence") or not f.get("max_len"):
                raise ValueError(f"model {kind!r}: field {f['name']!r} is not a bounded id list")
            f = {"name": f["name"], "kind": "sequence", "dim": f["dim"], "vocab": f["vocab"],
                 "policy": f["policy"], "max_len": f["max_len"], "truncate": True,
                 **({"table": tables[f["name"]]} if f["name"] in tables else {})}
        fields.append(f)
    if sessions is not None:
        fields.append({"name": sessions.pop("name", "hist_time"), "kind": "timestamps",
                       "sequence": seq[0], **sessions})
    return getattr(dnn, SEQUENCE_MODELS[kind])(dnn.Schema.from_json(fields), seq, cand, **kw)


def _torch_split(split):
    import torch

    return ({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in split.features.items()},
            torch.from_numpy(np.ascontiguousarray(split.labels, dtype=np.float32)))


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr)


def predict(model, split, batch_size: int = 8192, logits: bool = False) -> np.ndarray:
    """PyTorch click probabilities (or logits) float32 [N] of ``split``, in eval mode."""
    import torch

    feats, _ = _torch_split(split)
    n = len(split)
    model.eval()
    out = []
    with torch.no_grad():
        for s in range(0, n, batch_size):
            b = {k: v[s:s + batch_size] for k, v in feats.items()}
            z = model(b)
            out.append((z if logits else torch.sigmoid(z)).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def evaluate(labels, probs) -> dict:
    return {"auc": auc(labels, probs), "logloss": logloss(labels, probs)}


def sigmoid64(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def evaluate_logits(labels, logits) -> dict:
    """AUC ranked by the logits and logloss of sigmoid(logits) in float64. Ranking logits rather
    than float32 probabilities matters: float32 sigmoid saturates (many rows become exactly 1.0),
    which makes ties that two correct implementations break differently."""
    return {"auc": auc(labels, logits), "logloss": logloss(labels, sigmoid64(logits))}


def engine_predict(engine_model, split, batch_size: int = 8192, threads: int = 1,
                   logits: bool = False) -> np.ndarray:
    """The engine's probabilities (or logits) float32 [N] of ``split``."""
    n = len(split)
    names = {f["name"] for f in engine_model.schema}      # a split may hold more (e.g. hist_time)
    out = [engine_model.predict({k: v[s:s + batch_size] for k, v in split.features.items() if k in names},
                                threads=threads, logits=logits) for s in range(0, n, batch_size)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def train(model, dataset, epochs: int = 10, batch_size: int = 1024, lr: float = 1e-3,
          seed: int = 2022, patience: int = 2, weight_decay: float = 0.0, out=None,
          progress: bool | None = None, log=say, meta: dict | None = None,
          check_engine: bool = True) -> dict:
    """Train ``model`` on ``dataset.train`` with Adam and BCE; after each epoch score
    ``dataset.valid``; stop when valid AUC has not improved for ``patience`` epochs (0 = never stop
    early); restore the best epoch's weights. Returns a dict: ``best_epoch``, ``epochs_run``,
    ``history`` (per epoch: train_loss, valid auc/logloss, seconds), ``valid`` and ``test``
    metrics (auc, logloss) of the best model, ``params``, ``seconds``.

    With ``out``: writes OUT/model.bin, OUT/checkpoint.pt and OUT/train_info.json (``meta`` —
    e.g. the dataset name and loader options — goes in there), and with ``check_engine`` loads
    model.bin in the engine and adds ``engine_test`` metrics (they must equal ``test``)."""
    import torch

    if epochs < 1 or batch_size < 1 or lr <= 0 or patience < 0:
        raise ValueError("epochs and batch_size must be >= 1, lr > 0, patience >= 0")
    if progress is None:
        progress = sys.stderr.isatty()
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    feats, labels = _torch_split(dataset.train)
    n = len(dataset.train)
    steps = (n + batch_size - 1) // batch_size
    history = []
    best_auc, best_state, best_epoch, bad = -1.0, None, 0, 0
    t_start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = torch.from_numpy(rng.permutation(n))
        total, seen = 0.0, 0
        for s in _progress(range(0, n, batch_size), steps, f"epoch {epoch}", progress):
            idx = order[s:s + batch_size]
            if len(idx) < 2 and n > 1:      # a batch of one breaks BatchNorm; skip the remainder
                continue
            b = {k: v.index_select(0, idx) for k, v in feats.items()}
            y = labels.index_select(0, idx)
            opt.zero_grad()
            loss = loss_fn(model(b), y)
            if hasattr(model, "extra_loss"):     # e.g. DIEN's auxiliary loss
                loss = loss + model.extra_loss(b)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        valid = evaluate_logits(dataset.valid.labels, predict(model, dataset.valid, logits=True))
        rec = {"epoch": epoch, "train_loss": total / max(seen, 1), "valid_auc": valid["auc"],
               "valid_logloss": valid["logloss"], "seconds": time.perf_counter() - t0}
        history.append(rec)
        improved = valid["auc"] > best_auc
        if log:
            log(f"epoch {epoch}: train loss {rec['train_loss']:.4f}, valid AUC {valid['auc']:.4f}, "
                f"logloss {valid['logloss']:.4f} ({rec['seconds']:.1f}s){' *' if improved else ''}")
        if improved:
            best_auc, best_epoch, bad = valid["auc"], epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if patience and bad >= patience:
                if log:
                    log(f"early stop: no valid AUC gain for {patience} epochs; best epoch {best_epoch}")
                break
    model.load_state_dict(best_state)
    model.eval()
    z_valid = predict(model, dataset.valid, logits=True)
    z_test = predict(model, dataset.test, logits=True)
    result = {"model": type(model).__name__, "best_epoch": best_epoch, "epochs_run": len(history),
              "history": history, "valid": evaluate_logits(dataset.valid.labels, z_valid),
              "test": evaluate_logits(dataset.test.labels, z_test),
              "params": int(sum(p.numel() for p in model.parameters())),
              "seconds": time.perf_counter() - t_start,
              "hyper": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                        "patience": patience, "weight_decay": weight_decay}}
    if log:
        log(f"best epoch {best_epoch}: valid AUC {result['valid']['auc']:.4f} logloss "
            f"{result['valid']['logloss']:.4f} | test AUC {result['test']['auc']:.4f} logloss "
            f"{result['test']['logloss']:.4f}")
    if out is not None:
        result.update(save_run(model, dataset, out, result, meta, check_engine, z_test, log))
    return result


def save_run(model, dataset, out, result, meta=None, check_engine=True, z_test=None, log=say) -> dict:
    """Write OUT/model.bin, OUT/checkpoint.pt, OUT/train_info.json (and OUT/indexer.json for a
    dataset with an ``indexer``); -> extra result keys.
    ``z_test``: PyTorch's test logits, to compare with the engine's."""
    import dpn_infer
    from .nn import save_checkpoint

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    bin_path, ck_path = out / "model.bin", out / "checkpoint.pt"
    served = getattr(model, "served", True)     # False: the engine has no ops for it yet
    if served:
        dpn_infer.save(model, bin_path)
    save_checkpoint(model, ck_path)
    extra = {"model_bin": str(bin_path) if served else None, "checkpoint": str(ck_path)}
    if getattr(dataset, "indexer", None) is not None:
        extra["indexer"] = str(dataset.indexer.save(out / INDEXER_FILE))
    if check_engine and served:
        eng = dpn_infer.load(bin_path)
        z_eng = engine_predict(eng, dataset.test, logits=True)
        extra["engine_test"] = evaluate_logits(dataset.test.labels, z_eng)
        if z_test is not None:   # largest probability difference
            extra["engine_max_abs_diff"] = float(np.max(np.abs(sigmoid64(z_eng) - sigmoid64(z_test))))
        if log:
            log(f"engine (model.bin): test AUC {extra['engine_test']['auc']:.6f} logloss "
                f"{extra['engine_test']['logloss']:.6f} (PyTorch {result['test']['auc']:.6f})")
    info = {"dataset": (meta or {}).get("dataset", dataset.name), "dataset_info": dataset.info,
            **(meta or {}), **{k: v for k, v in result.items()}, **extra}
    (out / INFO_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    if log:
        log(f"saved {bin_path if served else '(no model.bin: not served by the engine yet)'}, {ck_path}, "
            f"{out / INFO_FILE}" + (f", {extra['indexer']}" if "indexer" in extra else ""))
    return extra


def read_train_info(model_path) -> dict | None:
    """OUT/train_info.json beside a model.bin, or None."""
    p = Path(os.fspath(model_path)).parent / INFO_FILE
    return json.loads(p.read_text()) if p.is_file() else None
