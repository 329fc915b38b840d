"""Training checkpoints: ``torch.save({"class", "config", "state_dict"})``, the input of
``dpn-convert``, and the one registry of model classes they may name."""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from .dien import DIEN, DIENHeter
from .dyjoint import DyJoint
from .field import FieldDPN
from .models import DNN, CrossNet, FeatureDPN
from .seqdpn import DINHeter, SeqDPN

# class name (as written in checkpoints) -> class; a new model is added here only.
MODEL_CLASSES = {"FeatureDPN": FeatureDPN, "DNN": DNN, "CrossNet": CrossNet, "FieldDPN": FieldDPN,
                 "SeqDPN": SeqDPN, "DINHeter": DINHeter, "DIEN": DIEN, "DIENHeter": DIENHeter,
                 "DyJoint": DyJoint}


def save_checkpoint(model: nn.Module, path) -> None:
    """torch.save({"class", "config", "state_dict"}) — the input of ``dpn-convert``."""
    name = type(model).__name__
    if name not in MODEL_CLASSES or not isinstance(model, MODEL_CLASSES[name]):
        raise TypeError(f"save_checkpoint: {name} is not one of {sorted(MODEL_CLASSES)}")
    torch.save({"class": name, "config": model.config(),
                "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, path)


def load_checkpoint(path, map_location="cpu") -> nn.Module:
    """Rebuild a model written by :func:`save_checkpoint`; returned in eval mode."""
    ck = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ck, Mapping) or not {"class", "config", "state_dict"} <= set(ck):
        raise ValueError(f"{path}: not a dpn_infer checkpoint (expected keys class, config, state_dict)")
    cls = MODEL_CLASSES.get(ck["class"])
    if cls is None:
        raise ValueError(f"{path}: unknown model class {ck['class']!r} "
                         f"(expected one of {sorted(MODEL_CLASSES)})")
    model = cls.from_config(ck["config"])
    model.load_state_dict(ck["state_dict"])
    return model.eval()
