"""TapDevice/TunDevice and the original eventlet scenario, each in its own network namespace."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

from conftest import child_ok, netns_prefix, run_python, run_script

CASES = ["nonblocking_and_empty", "asyncio_answers_ping", "tun_answers_ping", "multi_queue",
         "vanished", "exit_with_live_devices"]
PINGING = {"asyncio_answers_ping", "tun_answers_ping"}


def need_ping() -> None:
    if shutil.which("ping") is None:
        pytest.skip("ping not installed (iputils-ping)")


@pytest.mark.parametrize("case", CASES)
def test_device(case: str) -> None:
    prefix = netns_prefix()
    if case in PINGING:
        need_ping()
    done = run_script("devices.py", case, prefix=prefix, timeout=120)
    child_ok(done)
    assert done.stdout.strip().endswith("ok")


def test_eventlet_two_taps_one_green_thread_each() -> None:
    """A ping through one TAP is answered while the other device's green thread idles,
    and while it is stalled; then the stalled one answers too."""
    # Only looked up here: importing eventlet would hook this process's os.fork.
    if importlib.util.find_spec("eventlet") is None:
        pytest.skip("eventlet not installed (pip install eventlet)")
    prefix = netns_prefix()
    need_ping()
    done = run_script("eventlet_two_taps.py", prefix=prefix, timeout=180)
    print(done.stdout)
    child_ok(done)
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "ok"
    assert any(line.startswith("ping via gtap0 while gtap1 idles: answered") for line in lines)
    assert any(line.startswith("ping via gtap0 while gtap1's thread is stalled: answered")
               for line in lines)
    assert any(line.startswith("ping via gtap1 after its thread was released: answered")
               for line in lines)


def test_unprivileged_device_creation_is_permission_error() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to start a child that drops to uid 65534")
    done = run_python("""
        import os, greenfd
        os.setgroups([]); os.setgid(65534); os.setuid(65534)
        try:
            greenfd.TapDevice("gnope0")
        except PermissionError as e:
            print("PermissionError", e.errno, e)
        else:
            print("created")
    """, prefix=netns_prefix())
    child_ok(done)
    assert done.stdout.startswith("PermissionError"), done.stdout


def test_eventlet_control_a_blocking_read_freezes_the_other_device() -> None:
    """The scenario tells the difference: with the original bug (a plain blocking read in
    gtap1's green thread) the ping through gtap0 goes unanswered."""
    if importlib.util.find_spec("eventlet") is None:
        pytest.skip("eventlet not installed (pip install eventlet)")
    prefix = netns_prefix()
    need_ping()
    done = run_script("eventlet_two_taps.py", "--control-blocking-read", prefix=prefix,
                      timeout=120)
    print(done.stdout)
    child_ok(done)
    assert "control: ping via gtap0 unanswered" in done.stdout
