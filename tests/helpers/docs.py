"""The python examples of a document, run in order in one namespace (tests of docs/*.md)."""
from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"


def blocks(name: str) -> list:
    """(tag, code) for each ```python block of docs/<name>; tag: the word after ``python`` in the
    fence ("ray" in ```python ray), "" for none."""
    text = (DOCS / name).read_text()
    return re.findall(r"```python[ \t]*(\w*)\n(.*?)```", text, re.S)


def run(name: str, tags=("",)) -> int:
    """Run the blocks tagged ``tags`` (untagged ones by default), in order; returns how many ran."""
    scope: dict = {}
    ran = 0
    for i, (tag, code) in enumerate(blocks(name)):
        if tag in tags:
            exec(compile(code, f"docs/{name} block {i + 1}", "exec"), scope)
            ran += 1
    return ran


def check_readme_example(section: str, tmp_path, monkeypatch, capsys) -> None:
    """Run the first python block of the README's ``## <section>`` in ``tmp_path``; it prints the
    engine's two probabilities, then torch's: they must agree within the parity tolerance (rtol 1e-4
    / atol 1e-5)."""
    import numpy as np

    text = (DOCS.parent / "README.md").read_text()
    code = re.findall(rf"## {re.escape(section)}.*?```python\n(.*?)```", text, re.S)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    nums = [float(x) for x in re.findall(r"[-+]?\d*\.\d+(?:e[-+]?\d+)?", capsys.readouterr().out)]
    assert len(nums) == 4
    np.testing.assert_allclose(nums[:2], nums[2:], rtol=1e-4, atol=1e-5)
