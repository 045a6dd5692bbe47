"""Helpers shared by the greenfd Python tests.

Tests that need something this machine lacks skip with the reason (``pytest -rs``
prints it). Everything that could hang runs in a child process with a timeout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import greenfd

#: Upper bound for one child process; reaching it fails the test (it never passes slowly).
CHILD_TIMEOUT = 120

#: The directory of the helper scripts run in child processes.
SCRIPTS = Path(__file__).parent / "scripts"

#: Backends whose every bit is exact (the emulated one maps PRI, HUP and RDHUP).
EXACT_BACKENDS = ("kernel", "device", "fuse")


def available_backends() -> dict[str, str | None]:
    """Backend name -> None if available here, else the reason it is not."""
    return {a.name: a.reason for a in greenfd.probe() if a.kind == "backend"}


def exact_backends() -> list[str]:
    """The exact backends available here (may be empty)."""
    return [b for b, why in available_backends().items() if why is None and b in EXACT_BACKENDS]


def run_python(code: str, *, prefix: list[str] | None = None, env: dict[str, str] | None = None,
               timeout: float = CHILD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Runs ``code`` in a fresh interpreter (optionally behind ``prefix``, e.g. unshare).

    A child still running after ``timeout`` seconds is killed and the test fails.
    """
    argv = [*(prefix or []), sys.executable, "-c", textwrap.dedent(code)]
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"child did not finish within {timeout} s (hang): stdout={e.stdout!r} "
                    f"stderr={e.stderr!r}")


def run_script(name: str, *args: str, prefix: list[str] | None = None,
               timeout: float = CHILD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Runs ``tests/scripts/<name>`` with this interpreter, bounded by ``timeout``."""
    argv = [*(prefix or []), sys.executable, str(SCRIPTS / name), *args]
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{name} did not finish within {timeout} s: stdout={e.stdout!r} "
                    f"stderr={e.stderr!r}")


def child_ok(done: subprocess.CompletedProcess[str]) -> None:
    """Fails the test with the child's output unless it exited 0."""
    if done.returncode != 0:
        pytest.fail(f"child exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")


#: Exit status by which a child script reports "skip" (stdout's last line says why).
SKIP_STATUS = 77


def skip_or_ok(done: subprocess.CompletedProcess[str]) -> None:
    """Skips with the child's reason if it exited SKIP_STATUS, else requires success."""
    if done.returncode == SKIP_STATUS:
        lines = done.stdout.strip().splitlines()
        reason = lines[-1] if lines else "child asked to skip"
        print(f"skip: {reason}", file=sys.stderr)
        pytest.skip(reason)
    child_ok(done)


def netns_prefix() -> list[str]:
    """The command prefix that runs a child in a new, private network namespace.

    Skips (with the reason) unless this process can make one and open /dev/net/tun.
    """
    if os.geteuid() != 0:
        pytest.skip("TUN/TAP tests need root (CAP_NET_ADMIN) to create devices")
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (util-linux / iproute2)")
    if not os.path.exists("/dev/net/tun"):
        pytest.skip("/dev/net/tun missing (no tun module)")
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {probe.stderr.strip()}")
    return ["unshare", "--net"]
