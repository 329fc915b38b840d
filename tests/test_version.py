"""One version string: pyproject.toml's. Python (dpn_infer.__version__, the CLIs, the converter's
producer field), CMake (project VERSION, read from pyproject.toml) and the C++ header (dpn.h's
DPN_VERSION_*, which CMake checks and dpn::version() is built from) all agree with it."""
import os
import re
import subprocess
import sys
from importlib import metadata

import pytest

import dpn_infer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(rel):
    with open(os.path.join(ROOT, rel)) as f:
        return f.read()


def _pyproject_version():
    m = re.search(r'^version = "(\d+\.\d+\.\d+)"$', _read("pyproject.toml"), re.M)
    assert m, "pyproject.toml has no version = \"X.Y.Z\" line"
    return m.group(1)


def test_python_version_is_pyprojects():
    v = _pyproject_version()
    assert dpn_infer.__version__ == v == metadata.version("dpn_infer")


@pytest.mark.parametrize("module", ["dpn_infer.cli", "dpn_infer.converters.cli"])
def test_cli_version(module):
    p = subprocess.run([sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())",
                        "--version"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"dpn_infer {_pyproject_version()}"


def test_converter_producer_names_the_version():
    pytest.importorskip("torch")
    from dpn_infer.converters import torch_export

    assert torch_export.PRODUCER == f"dpn_infer {_pyproject_version()}"


def test_cmake_and_cpp_header_derive_from_pyproject():
    cmake = _read("CMakeLists.txt")
    assert re.search(r"project\(dpn_infer VERSION \$\{DPN_VERSION\}", cmake), "CMake must read pyproject.toml"
    header = _read("cpp/include/dpn/dpn.h")
    parts = [re.search(rf"^#define DPN_VERSION_{k} (\d+)$", header, re.M).group(1)
             for k in ("MAJOR", "MINOR", "PATCH")]
    assert ".".join(parts) == _pyproject_version()
    # the C ABI test states the string it expects from dpn_version()
    assert f'strcmp(dpn_version(), "{_pyproject_version()}")' in _read("cpp/tests/c_api_test.c")
