"""The type stubs match the extension, and the package's own code type-checks."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CHILD_TIMEOUT

PACKAGE = Path(__file__).parent.parent


def need_mypy() -> None:
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy not installed (pip install mypy)")


def test_stubs_match_the_extension(tmp_path: Path) -> None:
    need_mypy()
    # In a scratch directory: stubtest leaves a .mypy_cache where it runs.
    done = subprocess.run([sys.executable, "-m", "mypy.stubtest", "greenfd"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_package_and_example_type_check() -> None:
    need_mypy()
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--cache-dir=/dev/null",
         str(PACKAGE / "greenfd" / "__init__.py"),
         str(PACKAGE / "examples" / "vpoll_events.py")],
        capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
