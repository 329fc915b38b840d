"""The code passes its linters: ruff for Python (pyproject.toml [tool.ruff]), clang-format for C and
C++ (.clang-format; the version is pinned in the test extra, as its output changes between releases)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_check_passes():
    pytest.importorskip("ruff")
    p = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", ROOT], capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]


def test_clang_format_passes():
    pytest.importorskip("clang_format")
    from clang_format import get_executable

    files = subprocess.run(["git", "ls-files", "cpp/**.cpp", "cpp/**.h", "cpp/**.c"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    if files.returncode != 0:
        pytest.skip("not a git checkout")
    names = files.stdout.split()
    assert len(names) > 50, names
    p = subprocess.run([get_executable("clang-format"), "--dry-run", "--Werror", *names], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
