"""dpn_infer: serve Dynamic Parameterized Networks (DPN) for CTR prediction on CPUs.

Serving needs only numpy::

    import dpn_infer
    model = dpn_infer.load("model.bin")
    probs = model.predict({"user": users, "item": items})

Training and conversion need the ``torch`` extra (``pip install "dpn_infer[torch]"``):
``dpn_infer.nn`` holds the PyTorch reference modules and ``dpn_infer.save`` writes model.bin.
"""
__version__ = "0.1.0"

_ENGINE_NAMES = ("InputError", "Model", "ModelFormatError", "NonFiniteScoreError", "load", "cpu_info")


def __getattr__(name):
    # The engine is imported on first use, so `import dpn_infer.nn` (training) never needs the
    # compiled extension and the extension never needs torch.
    if name in _ENGINE_NAMES:
        from . import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'dpn_infer' has no attribute {name!r}")


def save(module, path):
    """Convert a trained ``dpn_infer.nn`` module to model.bin at ``path`` (needs torch)."""
    from .converters.torch_export import save as _save

    return _save(module, path)


__all__ = ["InputError", "Model", "ModelFormatError", "NonFiniteScoreError", "load", "save", "__version__"]
