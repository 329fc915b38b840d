"""Training checkpoints written by an earlier dpn_infer keep loading (tests/golden/checkpoints/,
made once by tests/golden/make_checkpoints.py with dpn_infer 0.1.0): same state_dict keys, same
config, and the recorded PyTorch logits for the recorded batch up to float32 rounding.

torch's CPU kernels pick their summation order by CPU (oneDNN / MKL dispatch to AVX2, AVX-512 or AMX
paths), so the logits are bit-identical only on the machine kind that recorded them: on a Xeon with
AMX they differ by up to 1e-6 (relative 8e-7) from those recorded on a Zen 4. The tolerance, 1e-5
relative and absolute (logits of magnitude <= ~10), is ~10x that rounding; any change to what a
checkpoint's parameters mean moves logits by far more."""
import glob
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dpn_infer.nn import MODEL_CLASSES, load_checkpoint  # noqa: E402

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "checkpoints")
NAMES = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, "*.pt")))


def test_every_model_class_has_a_golden_checkpoint():
    classes = {torch.load(os.path.join(HERE, f"{n}.pt"), weights_only=True)["class"] for n in NAMES}
    assert classes == set(MODEL_CLASSES)


@pytest.mark.parametrize("name", NAMES)
def test_old_checkpoint_loads_and_gives_the_recorded_logits(name):
    path = os.path.join(HERE, f"{name}.pt")
    ck = torch.load(path, weights_only=True)
    model = load_checkpoint(path)
    assert type(model).__name__ == ck["class"]
    # The keys are the contract with users' files (and name the tensors in model.bin).
    assert list(model.state_dict()) == list(ck["state_dict"])
    assert model.config() == ck["config"]
    data = np.load(os.path.join(HERE, f"{name}.npz"))
    batch = {k[len("batch/"):]: data[k] for k in data.files if k.startswith("batch/")}
    with torch.no_grad():
        logits = model(batch).numpy()
    np.testing.assert_allclose(logits, data["logits"], rtol=1e-5, atol=1e-5)
