"""Converters to model.bin (ships as ``dpn_infer.converters``).

- ``format``: the one writer (and a debug reader) of model.bin; numpy only.
- ``torch_export``: dpn_infer.nn module -> model.bin (``export``, ``save``); needs torch.
- ``onnx_export``: dpn_infer.nn module -> ONNX (``export_onnx``, docs/onnx.md); needs torch and onnxscript.
- ``cli``: the ``dpn-convert`` console script.

torch is imported only when ``export`` / ``save`` (or ``torch_export``) is first used, so
``dpn_infer.converters.format`` works on a numpy-only install.
"""


def __getattr__(name):
    if name in ("export", "save"):
        from . import torch_export
        return getattr(torch_export, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
