"""dpn_infer: serve Dynamic Parameterized Networks (DPN) for CTR prediction on CPUs.

Serving needs only numpy::

    import dpn_infer
    model = dpn_infer.load("model.bin")
    probs = model.predict({"user": users, "item": items})

Training and conversion need the ``torch`` extra (``pip install "dpn_infer[torch]"``):
``dpn_infer.nn`` holds the PyTorch reference modules and ``dpn_infer.save`` writes model.bin.
"""
from __future__ import annotations

import importlib
import os
from importlib import metadata as _metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what the lazy __getattr__ below returns, for type checkers and editors
    from .engine import InputError, Model, ModelFormatError, NonFiniteScoreError, cpu_info, load
    from .holder import ModelHolder

try:
    # The one version string is pyproject.toml's; an installed (or editable) dpn_infer carries it.
    __version__ = _metadata.version("dpn_infer")
except _metadata.PackageNotFoundError:  # the source tree, never installed
    __version__ = "0+unknown"

_ENGINE_NAMES = ("InputError", "Model", "ModelFormatError", "NonFiniteScoreError", "load", "cpu_info")
_EXTENSIONS = ("_engine", "_testing")   # compiled modules of the package


def _extension_error(name: str, exc: ImportError) -> ImportError:
    """The ImportError for a compiled module that cannot be imported, saying what to do."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    built = any(f.startswith(name + ".") and not f.endswith((".py", ".pyi")) for f in os.listdir(here))
    if not built and os.path.isfile(os.path.join(root, "pyproject.toml")):
        return ImportError(
            f"dpn_infer's compiled engine is not importable: you are importing the source tree at "
            f"{here} without a build (there is no {name} extension in it). Contributors: run "
            f"`pip install -e .` in {root} (builds the engine and makes this checkout importable); "
            f"users: `pip install .`, then run Python from outside the checkout.", name=f"dpn_infer.{name}")
    return ImportError(f"dpn_infer's compiled engine (dpn_infer.{name}) in {here} failed to import: "
                       f"{exc}. Reinstall dpn_infer (pip install --force-reinstall .) for this Python.",
                       name=f"dpn_infer.{name}")


def __getattr__(name):
    # The engine is imported on first use, so `import dpn_infer.nn` (training) never needs the
    # compiled extension and the extension never needs torch.
    if name in _ENGINE_NAMES:
        from . import engine

        return getattr(engine, name)
    if name == "ModelHolder":
        from .holder import ModelHolder

        return ModelHolder
    if name in _EXTENSIONS:  # `from dpn_infer import _engine` asks here first
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ImportError as e:
            raise _extension_error(name, e) from e
    raise AttributeError(f"module 'dpn_infer' has no attribute {name!r}")


def save(module, path, precision="fp32", embeddings="fp32"):
    """Convert a trained ``dpn_infer.nn`` module to model.bin at ``path`` (needs torch).

    ``precision``: ``"fp32"``, ``"bf16"`` (dense weight matrices as bfloat16) or ``"int8"`` (int8 with
    one float32 scale per output); ``embeddings``: ``"fp32"``, ``"fp16"``, ``"bf16"`` or ``"int8"``
    (embedding tables; int8 with one scale per row). Floats round to nearest even; int8 is symmetric,
    scale = max|x| / 127, and needs no calibration data (docs/format.md §3.1-§3.2).
    """
    from .converters.torch_export import save as _save

    return _save(module, path, precision=precision, embeddings=embeddings)


__all__ = ["InputError", "Model", "ModelFormatError", "NonFiniteScoreError", "ModelHolder", "load", "save",
           "cpu_info", "__version__"]
