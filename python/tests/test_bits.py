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


@pytest.mark.parametrize("route", ["direct", "userns", "fusermount"])
def test_every_mask_is_exact_by_each_fuse_route(route: str) -> None:
    """In this (root) process, each FUSE route that works here gives exact bits too."""
    found = {a.name: a for a in greenfd.probe() if a.kind == "fuse-route"}
    if not found[route].available:
        pytest.skip(f"FUSE route {route} unavailable here: {found[route].reason}")
    assert exact_bits.check("fuse", fuse_route=route) == []


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
    assert done.stdout.strip().splitlines()[-1].endswith(", 0 mismatches")
