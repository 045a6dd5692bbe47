"""Every vpoll bit, alone and combined, reaches Python exactly (select.epoll, poll, select)."""

from __future__ import annotations

import os
import sys

import pytest

import greenfd
from conftest import EXACT_BACKENDS, SCRIPTS, available_backends, run_script, skip_or_ok

sys.path.insert(0, str(SCRIPTS))
import exact_bits  # noqa: E402


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_every_mask_is_exact(backend: str) -> None:
    why = available_backends()[backend]
    if why is not None:
        pytest.skip(f"backend {backend} unavailable here: {why}")
    assert exact_bits.check(backend) == []


def test_emulated_in_and_out_are_exact() -> None:
    why = available_backends()["emulated"]
    if why is not None:
        pytest.skip(f"backend emulated unavailable here: {why}")
    failures: list[str] = []
    with greenfd.Vpoll(backend="emulated") as v:
        for mask in (greenfd.IN, greenfd.OUT, greenfd.IN | greenfd.OUT, 0):
            v.set(mask)
            exact_bits.compare(v, mask, "set", failures)
    assert failures == []


def test_every_mask_is_exact_as_uid_65534() -> None:
    """As an unprivileged user, through whichever FUSE route this machine allows."""
    if os.geteuid() != 0:
        pytest.skip("needs root to start a child that drops to uid 65534")
    done = run_script("exact_bits.py", "--drop-to", "65534")
    print(done.stdout)
    skip_or_ok(done)
    assert "0 mismatches" in done.stdout
