"""The README's Python examples run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README should show the functional API"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.split("\n")
    w = [float(v) for v in re.findall(r"[-\d.]+", printed[0])]
    assert len(w) == 3 and all(abs(v - 3.0) < 1e-2 for v in w)
    assert printed[1].startswith("True")
