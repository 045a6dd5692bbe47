"""A forked child controls an inherited Vpoll; the parent sees it and keeps working."""

from __future__ import annotations

import os
import select
import sys
import traceback

import pytest

import greenfd
from conftest import available_backends, child_ok, run_python

#: Bound on every wait for the other process; reaching it fails the test.
PATIENCE = 30.0

#: The child's steps: (method, argument, mask the parent must then see).
STEPS = [
    ("set", greenfd.IN, greenfd.IN),
    ("add", greenfd.PRI, greenfd.IN | greenfd.PRI),
    ("delete", greenfd.IN, greenfd.PRI),
    ("set", greenfd.OUT | greenfd.ERR, greenfd.OUT | greenfd.ERR),
    ("set", greenfd.HUP, greenfd.HUP),
    ("set", greenfd.RDHUP | greenfd.IN, greenfd.RDHUP | greenfd.IN),
    ("set", 0, 0),
]


def read_byte(fd: int) -> bytes:
    """One byte from a pipe, failing the test if none comes within PATIENCE."""
    ready, _, _ = select.select([fd], [], [], PATIENCE)
    if not ready:
        pytest.fail("the other process did not answer in time")
    return os.read(fd, 1)


def child_steps(v: greenfd.Vpoll, to_parent: int, from_parent: int) -> None:
    """In the child: each step, then tell the parent and wait for its go-ahead."""
    for method, arg, expect in STEPS:
        getattr(v, method)(arg)
        if v.events() != expect:
            raise AssertionError(f"child: events() {v.events():#x} != {expect:#x}")
        os.write(to_parent, b"s")
        if os.read(from_parent, 1) != b"g":
            raise AssertionError("child: parent stopped")


def fork_child(body) -> int:
    """Forks; the child runs ``body()`` and exits 0, or prints the error and exits 1."""
    pid = os.fork()
    if pid == 0:
        status = 0
        try:
            body()
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            status = 1
        os._exit(status)
    return pid


def wait_child(pid: int) -> int:
    """The child's exit status."""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_forked_child_controls_inherited_vpoll() -> None:
    v = greenfd.Vpoll()
    ep = select.epoll()
    ep.register(v.fileno(), select.EPOLLIN | select.EPOLLPRI | select.EPOLLOUT | select.EPOLLRDHUP)
    up_r, up_w = os.pipe()
    down_r, down_w = os.pipe()
    pid = fork_child(lambda: child_steps(v, up_w, down_r))
    seen = []
    try:
        for _method, _arg, expect in STEPS:
            if read_byte(up_r) != b"s":
                break
            ready = ep.poll(0)
            seen.append((ready[0][1] if ready else 0, expect))
            os.write(down_w, b"g")
    finally:
        os.close(down_w)
        status = wait_child(pid)
    assert status == 0, "the child failed (its traceback is on stderr)"
    assert [got for got, _ in seen] == [expect for _, expect in seen]
    assert len(seen) == len(STEPS)
    # The parent's vpoll (and its FUSE server thread, if any) still work after the fork.
    v.set(greenfd.PRI)
    assert ep.poll(0) == [(v.fileno(), select.EPOLLPRI)]
    with greenfd.Vpoll(greenfd.OUT, backend=v.backend) as w:
        assert w.events() == greenfd.OUT
    v.close()
    ep.close()
    for fd in (up_r, up_w, down_r):
        os.close(fd)


def test_child_wakes_parent_blocked_in_epoll() -> None:
    """The parent already sleeps in epoll_wait when the child sets the bit."""
    with greenfd.Vpoll() as v, select.epoll() as ep:
        ep.register(v.fileno(), select.EPOLLPRI)
        go_r, go_w = os.pipe()

        def body() -> None:
            os.read(go_r, 1)  # the parent is about to block
            v.add(greenfd.PRI)

        pid = fork_child(body)
        os.write(go_w, b"x")
        ready = ep.poll(PATIENCE)
        assert wait_child(pid) == 0
        assert ready == [(v.fileno(), select.EPOLLPRI)]
        os.close(go_r)
        os.close(go_w)


def test_forked_child_creates_its_own_vpoll() -> None:
    """A child gets its own backend state (for FUSE: its own server) for new fds."""
    with greenfd.Vpoll() as v:
        backend = v.backend

        def body() -> None:
            with greenfd.Vpoll(backend=backend) as mine, select.epoll() as ep:
                ep.register(mine.fileno(), select.EPOLLPRI | select.EPOLLIN)
                mine.set(greenfd.PRI)
                got = ep.poll(PATIENCE)
                if got != [(mine.fileno(), select.EPOLLPRI)]:
                    raise AssertionError(f"child's own vpoll reported {got}")
            v.set(greenfd.IN)  # and the inherited one still works

        pid = fork_child(body)
        assert wait_child(pid) == 0
        assert v.events() == greenfd.IN



def test_child_outliving_the_server_gets_an_error_not_a_hang() -> None:
    """When the process serving the FUSE files exits, a forked child's ctl on an inherited
    Vpoll fails with OSError (the connection is gone) instead of waiting forever."""
    why = available_backends()["fuse"]
    if why is not None:
        pytest.skip(f"fuse backend unavailable here: {why}")
    # The child keeps the captured stdout open, so run_python returns (within its
    # timeout) only after the child has printed its outcome and exited.
    done = run_python("""
        import os, greenfd
        v = greenfd.Vpoll(backend="fuse")
        v.set(greenfd.OUT)
        r, w = os.pipe()
        if os.fork() == 0:
            os.close(w)
            os.read(r, 1)  # EOF: the parent, with its FUSE server, is gone
            try:
                v.add(greenfd.IN)
                print("child: ctl succeeded", flush=True)
            except OSError as e:
                print(f"child: OSError errno={e.errno} {e}", flush=True)
            os._exit(0)
        print("parent: exiting", flush=True)
        os._exit(0)
    """, timeout=60)
    child_ok(done)
    assert "parent: exiting" in done.stdout
    assert "child: OSError errno=" in done.stdout, done.stdout
