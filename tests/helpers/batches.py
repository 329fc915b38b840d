"""Random batches for a dpn_infer.nn Schema (the torch-side tests' shared input generator)."""
import numpy as np


def random_batch(schema, B, seed=0, default_T=4, negative_ids=True):
    """Ids partly outside [0, vocab) where the field's policy allows it (never under 'error');
    multi-hot rows ~40% padding with row 0 all padding; `negative_ids` adds ids < -1 to multi-hot
    fields (they go through the policy, unlike the -1 padding)."""
    rng = np.random.default_rng(seed)
    batch = {}
    for f in schema.fields:
        if f.kind == "sparse":
            batch[f.name] = rng.integers(-3, f.vocab + 5 if f.policy != "error" else f.vocab, B)
        elif f.kind == "multi_hot":
            T = f.max_len or default_T
            hi = f.vocab + 3 if f.policy != "error" else f.vocab
            lo = -2 if negative_ids and f.policy != "error" else 0
            ids = rng.integers(lo, hi, (B, T))
            ids[rng.random((B, T)) < 0.4] = -1
            ids[0] = -1
            batch[f.name] = ids.astype(np.int64)
        else:
            v = rng.normal(size=(B, f.dim)).astype(np.float32)
            batch[f.name] = v[:, 0] if f.dim == 1 else v
    return batch
