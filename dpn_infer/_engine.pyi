# Type stubs of the compiled extension (cpp/bindings/python.cpp): its production API, which
# dpn_infer.engine wraps. Users call dpn_infer.load(...) -> dpn_infer.Model (engine.py).
from typing import Any, Mapping

import numpy as np
import numpy.typing as npt

class ModelFormatError(ValueError): ...
class InputError(ValueError): ...
class NonFiniteScoreError(InputError):
    rows: list[int]
    num_rows: int

class Model:
    @staticmethod
    def load(path: bytes | str, copy: bool = False, max_alloc_bytes: int = 0) -> Model: ...
    def predict(self, batch: Mapping[str, Any], threads: int = 1, logits: bool = False,
                allow_nan: bool = False) -> npt.NDArray[np.float32]: ...
    @property
    def metadata_json(self) -> str: ...
    @property
    def num_fields(self) -> int: ...

def cpu_info() -> dict[str, Any]: ...

# Diagnostics and test hooks (probes, _test_*) are not part of the typed API.
def __getattr__(name: str) -> Any: ...
