"""The C++ side through CMake: builds the GoogleTest suite and the C ABI test and runs them with
ctest, installs the C++ package, and builds the example ranking server (cpp/examples/) from a copy
outside the source tree against the installed package with find_package(dpn_infer); the server
scores a model converted from PyTorch from 8 threads (with hot reloads) and must give Python's numbers.

Needs cmake, a C/C++ compiler and GoogleTest (Debian: libgtest-dev). Without them these tests skip
with the reason — unless DPN_REQUIRE_CPP=1 (set by .ci/run), where a missing tool fails them.
The build is kept in build/cpp-tests (incremental when run again)."""
from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "cpp-tests")
REQUIRE = os.environ.get("DPN_REQUIRE_CPP") == "1"


def _missing():
    if not shutil.which("cmake"):
        return "cmake not found"
    if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        return "no C++ compiler"
    if not (glob.glob("/usr/include/gtest/gtest.h") or glob.glob("/usr/local/include/gtest/gtest.h")
            or os.environ.get("GTest_DIR")):
        return "GoogleTest not installed (apt-get install libgtest-dev)"
    return None


def _run(cmd, cwd=None, timeout=600, env=None):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}"
    return r


def _jobs():
    return str(max(1, min(4, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def cpp_build():
    why = _missing()
    if why:
        if REQUIRE:
            pytest.fail(f"DPN_REQUIRE_CPP=1 but {why}")
        pytest.skip(why)
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run(["cmake", "-S", ROOT, "-B", BUILD, *gen, "-DCMAKE_BUILD_TYPE=Release", "-DDPN_BUILD_TESTS=ON",
          f"-DPython3_EXECUTABLE={sys.executable}"])
    _run(["cmake", "--build", BUILD, "-j", _jobs()])
    return BUILD


def test_ctest(cpp_build):
    """GoogleTest suites (format reader, kernels vs reference, API, concurrency + hot reload) and
    the C ABI test written in C."""
    r = _run(["ctest", "--test-dir", cpp_build, "--output-on-failure", "-j", _jobs()])
    assert "100% tests passed" in r.stdout, r.stdout
    for name in ("cpp.Api", "cpp.Format", "cpp.Kernels", "cpp.Concurrency", "c_api", "c_api_shared"):
        assert name in r.stdout, r.stdout


def _torch_model_and_requests(tmp_path):
    torch = pytest.importorskip("torch")
    import dpn_infer
    from dpn_infer.nn import DenseField, FeatureDPN, LayerSpec, MultiHotField, Schema, SparseField
    sys.path.insert(0, os.path.join(ROOT, "cpp", "tests"))
    from make_data import write_batch

    torch.manual_seed(3)
    schema = Schema([SparseField("user", vocab=500, dim=8, policy="hash"),
                     SparseField("item", vocab=300, dim=8, policy="oov_bucket"),
                     MultiHotField("genres", vocab=19, dim=4, pooling="mean", max_len=5),
                     DenseField("ctx", dim=3)])
    model = FeatureDPN(schema, [LayerSpec(32, dynamic=True, context="x0", hidden=4),
                                LayerSpec(16, dynamic=True, context=["genres"]), LayerSpec(8)]).eval()
    rng = np.random.default_rng(5)
    B = 203  # several requests of 16 rows and a short last one
    genres = rng.integers(-1, 19, size=(B, 5)).astype(np.int64)
    batch = {"user": rng.integers(0, 10_000, size=B).astype(np.int64),
             "item": rng.integers(-5, 320, size=B).astype(np.int64),
             "genres": genres, "ctx": rng.standard_normal((B, 3)).astype(np.float32)}
    path = str(tmp_path / "model.bin")
    dpn_infer.save(model, path)
    fields = dpn_infer.load(path).schema
    write_batch(str(tmp_path / "requests.batch"), fields, batch)
    with torch.no_grad():
        ref_torch = torch.sigmoid(model(batch)).numpy()
    ref_engine = dpn_infer.load(path).predict(batch)
    return path, str(tmp_path / "requests.batch"), ref_engine, ref_torch


def test_installed_package_example_server(cpp_build, tmp_path):
    prefix = tmp_path / "prefix"
    _run(["cmake", "--install", cpp_build, "--prefix", str(prefix)])
    assert (prefix / "include" / "dpn" / "dpn.h").exists() and (prefix / "include" / "dpn" / "dpn_c.h").exists()
    cfg = glob.glob(str(prefix / "lib*" / "cmake" / "dpn_infer" / "dpn_inferConfig.cmake"))
    assert cfg and glob.glob(str(prefix / "lib*" / "cmake" / "dpn_infer" / "dpn_inferConfigVersion.cmake"))
    # Only the public headers are installed.
    assert sorted(os.listdir(prefix / "include" / "dpn")) == ["dpn.h", "dpn_c.h"]
    # The C ABI shared library exports the dpn_* functions of dpn_c.h and nothing else.
    so = glob.glob(str(prefix / "lib*" / "libdpn_c.so.1"))
    assert so, os.listdir(prefix)
    if shutil.which("nm"):
        syms = [s.split("@")[0] for s in _run(["nm", "-D", "--defined-only", so[0]]).stdout.split()[2::3]]
        assert "dpn_model_predict" in syms and "dpn_last_error" in syms, syms
        assert all(s.startswith("dpn_") or s == "DPN_C_1" for s in syms), syms

    src = tmp_path / "ranking_server"  # a copy outside the source tree: only the package is visible
    shutil.copytree(os.path.join(ROOT, "cpp", "examples", "ranking_server"), src)
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    _run(["cmake", "-S", str(src), "-B", str(src / "build"), *gen, "-DCMAKE_BUILD_TYPE=Release",
          f"-DCMAKE_PREFIX_PATH={prefix}"])
    _run(["cmake", "--build", str(src / "build")])
    exe = str(src / "build" / "ranking_server")

    model, requests, ref_engine, ref_torch = _torch_model_and_requests(tmp_path)
    out = str(tmp_path / "scores.f32")
    # 13 requests of <= 16 rows, replayed 2000 times by 8 workers while the model is reloaded every ms.
    r = _run([exe, model, requests, out, "--workers", "8", "--rows", "16", "--reload-ms", "1",
              "--repeat", "2000"], timeout=120)
    assert "26000 requests, 203 rows, 8 workers, 0 failed" in r.stdout, r.stdout
    reloads = int(re.search(r"(\d+) reloads", r.stdout).group(1))
    assert reloads >= 1, r.stdout
    got = np.fromfile(out, dtype="<f4")
    assert got.shape == ref_engine.shape
    # Same engine, rows scored in requests of 16 instead of one batch: float32 rounding at most.
    np.testing.assert_allclose(got, ref_engine, rtol=1e-5, atol=1e-6)
    # ... and PyTorch's numbers, at the project's parity tolerance.
    np.testing.assert_allclose(got, ref_torch, rtol=1e-4, atol=1e-5)

    # A bad model file: a clean error, exit status 1, no crash.
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"DPNMODEL" + b"\0" * 200)
    r = subprocess.run([exe, str(bad), requests, out], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "error: " in r.stderr, (r.returncode, r.stderr)
