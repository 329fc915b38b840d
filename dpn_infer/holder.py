"""ModelHolder: one slot holding the current model, for hot reload in Python servers.

As the C++ dpn::ModelHolder (docs/cpp.md, "Hot reload"): request threads call ``get()`` once per
request and use that model for the whole request; a reload thread calls ``load()`` or ``set()``.
Requests in flight finish on the model they got; new ones see the new model.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .engine import Model

__all__ = ["ModelHolder"]


class ModelHolder:
    """A thread-safe slot holding a ``Model`` (or None until one is set)."""

    def __init__(self, model: Optional["Model"] = None) -> None:
        self._lock = threading.Lock()
        self._model = model

    def get(self) -> Optional["Model"]:
        """The current model (None until one is set): a whole model, never a half-swapped one."""
        return self._model  # one reference read is atomic; set() swaps the reference whole

    def set(self, model: Optional["Model"]) -> Optional["Model"]:
        """Swap ``model`` in; returns the previous one."""
        with self._lock:
            previous, self._model = self._model, model
        return previous

    def load(self, source: Any, **load_kwargs) -> Optional["Model"]:
        """Load and validate ``source`` (a path or a model file's bytes; ``load_kwargs`` as
        ``dpn_infer.load``) first, outside any lock, then swap it in; returns the previous model.
        A failed load raises and keeps the current model."""
        from .engine import load

        return self.set(load(source, **load_kwargs))

    def __repr__(self) -> str:
        return f"<dpn_infer.ModelHolder {self._model!r}>"
