"""GEMM block sizes (kernels/blocking.h): what cpu_info() reports, and the fp32 and bfloat16 GEMMs
under tiny blocks set through DPN_GEMM_BLOCKS, so shapes of a few hundred cross many K and M block
edges (the default blocks, 768 × 72, need K and M past them). DPN_GEMM_BLOCKS is read once per
process, so the checks run in a child process, from outside the checkout, which first shows it
imported the installed engine and took the override."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from dpn_infer import _engine

HERE = Path(__file__).resolve().parent


def test_blocks_reported():
    info = _engine.cpu_info()
    assert isinstance(info["l1d_bytes"], int) and isinstance(info["l2_bytes"], int)
    tiles = {"fp32_avx512": 12, "fp32_avx2": 6, "bf16_avx512": 12}
    for name, mr in tiles.items():
        b = info["gemm_blocks"][name]
        assert b["kc"] > 0 and b["kc"] % 2 == 0, (name, b)
        assert b["mc"] > 0 and b["mc"] % mr == 0, (name, b)
        if os.environ.get("DPN_GEMM_BLOCKS") is None:
            assert b["source"] == ("cpuid" if info["l2_bytes"] > 0 else "default"), (name, b)
    # Both float32 families hold the same bytes of K per block; bfloat16 twice the k.
    g = info["gemm_blocks"]
    assert g["bf16_avx512"]["kc"] == 2 * g["fp32_avx512"]["kc"]


CHILD = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from dpn_infer import _engine, _testing
    import test_kernels as tk
    import test_bf16_gemm as tb
    info = _engine.cpu_info()
    rng = np.random.default_rng(11)
    checked = 0
    for isa in info["available"]:
        # M crosses the 24- (avx512) / 18-row (avx2) blocks and the 3-row path; K the 40-k blocks.
        for M in (1, 4, 17, 18, 19, 24, 25, 49, 50):
            for K, N in ((39, 33), (40, 17), (41, 65), (121, 40), (300, 161)):
                A = rng.standard_normal((M, K)).astype(np.float32)
                W = rng.standard_normal((N, K)).astype(np.float32)
                b = rng.standard_normal(N).astype(np.float32) if (M + K) % 2 else None
                act = tk.ACTS[(M + N) % 4]
                tk._check(A, W, b, act, isa)
                tb._check_gemm(tb._data(rng, (M, K)), tb._data(rng, (N, K)), b, act, isa)
                checked += 2
        for R, m, l, N in ((25, 13, 4, 40), (50, 30, 2, 33)):
            x, h = rng.standard_normal((R, m)).astype(np.float32), rng.standard_normal((R, l)).astype(np.float32)
            B = rng.standard_normal(((l + 1) * m + l, N)).astype(np.float32)
            P = np.concatenate([x] + [x * h[:, j:j + 1] for j in range(l)] + [h], axis=1).astype(np.float64)
            C = _testing.gemm_kron(x, h, B, isa=isa)
            np.testing.assert_allclose(C, P @ B, rtol=1e-4, atol=1e-4, err_msg=f"kron isa={isa}")
            checked += 1
    print(json.dumps({"engine": _engine.__file__, "blocks": info["gemm_blocks"], "checked": checked}))
""")


def test_tiny_blocks_every_isa():
    env = dict(os.environ, DPN_GEMM_BLOCKS="40,13")
    p = subprocess.run([sys.executable, "-c", CHILD, str(HERE)], env=env, cwd=tempfile.gettempdir(),
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    # The child ran the installed engine (not a source tree without one) and took the override:
    # mc rounded up to whole row tiles, bfloat16 k doubled (the same bytes of B per slice).
    assert out["engine"] == _engine.__file__
    g = out["blocks"]
    assert g["fp32_avx512"] == {"kc": 40, "mc": 24, "source": "DPN_GEMM_BLOCKS"}
    assert g["fp32_avx2"] == {"kc": 40, "mc": 18, "source": "DPN_GEMM_BLOCKS"}
    assert g["bf16_avx512"] == {"kc": 80, "mc": 24, "source": "DPN_GEMM_BLOCKS"}
    assert out["checked"] >= 90
