"""The README's example runs and prints what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import CHILD_TIMEOUT, EXACT_BACKENDS

EXAMPLE = Path(__file__).parent.parent / "examples" / "vpoll_events.py"


def test_readme_example() -> None:
    done = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT)
    assert done.returncode == 0, done.stderr
    backend = re.search(r"backend='(\w+)'", done.stdout).group(1)
    rows = re.findall(r"set (\S+) +-> epoll reports (\S+)", done.stdout)
    assert len(rows) == 5
    if backend in EXACT_BACKENDS:
        assert all(sent == seen for sent, seen in rows), rows
    assert "asyncio add_reader woke with IN" in done.stdout


def test_readme_snippets_run() -> None:
    """Every ```python block of the README runs as written."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks
    for block in blocks:
        done = subprocess.run([sys.executable, "-c", block], capture_output=True, text=True,
                              timeout=CHILD_TIMEOUT)
        assert done.returncode == 0, f"{block}\n{done.stderr}"
