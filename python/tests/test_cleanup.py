"""No hang at interpreter exit with live fds; clear errors for bad arguments."""

from __future__ import annotations

import errno

import pytest

import greenfd
from conftest import available_backends, child_ok, run_python

#: A child that leaves vpoll fds open (with events set), one watched by a thread that
#: sleeps in epoll_wait, one by a thread sleeping in poll, then ends as ``{how}``.
LIVE_FDS_AT_EXIT = """
    import select, sys, threading, greenfd
    backend = {backend!r}
    keep = [greenfd.Vpoll(greenfd.IN | greenfd.OUT, backend=backend) for _ in range(3)]
    watched = greenfd.Vpoll(backend=backend)
    ep = select.epoll()
    ep.register(watched.fileno(), select.EPOLLIN | select.EPOLLPRI)
    p = select.poll()
    p.register(watched.fileno(), select.POLLIN)
    started = threading.Barrier(3)
    def waiter(wait):
        started.wait()
        wait()
    threading.Thread(target=waiter, args=(lambda: ep.poll(-1),), daemon=True).start()
    threading.Thread(target=waiter, args=(lambda: p.poll(-1),), daemon=True).start()
    started.wait()
    print("serving", keep[0].backend, flush=True)
    {how}
"""

ENDINGS = {
    "return": "pass",
    "exception": "raise RuntimeError('deliberate')",
    "sys.exit": "sys.exit(3)",
}
EXPECTED_STATUS = {"return": 0, "exception": 1, "sys.exit": 3}


@pytest.mark.parametrize("backend", ["fuse", "emulated"])
@pytest.mark.parametrize("how", list(ENDINGS))
def test_exit_with_live_fds_and_waiters_does_not_hang(backend: str, how: str) -> None:
    why = available_backends()[backend]
    if why is not None:
        pytest.skip(f"backend {backend} unavailable here: {why}")
    done = run_python(LIVE_FDS_AT_EXIT.format(backend=backend, how=ENDINGS[how]), timeout=60)
    assert done.stdout.startswith(f"serving {backend}"), done.stderr
    assert done.returncode == EXPECTED_STATUS[how], done.stderr


def test_import_and_exit_without_fds() -> None:
    child_ok(run_python("import greenfd; greenfd.probe()", timeout=60))


def assert_invalid(exc: pytest.ExceptionInfo[BaseException]) -> None:
    """The error is greenfd.InvalidArgument: an OSError (EINVAL) and a ValueError."""
    assert isinstance(exc.value, greenfd.InvalidArgument)
    assert isinstance(exc.value, OSError) and isinstance(exc.value, ValueError)
    assert exc.value.errno == errno.EINVAL


@pytest.mark.parametrize("events", [0x40, 0x4000, -1, 1 << 32, 1 << 70])
def test_bad_event_bits(events: int) -> None:
    with pytest.raises(OSError) as exc:
        greenfd.Vpoll(events)
    assert_invalid(exc)
    assert "outside IN|PRI|OUT|ERR|HUP|RDHUP" in str(exc.value)
    with greenfd.Vpoll() as v:
        for op in (v.add, v.delete, v.set):
            with pytest.raises(ValueError) as exc:
                op(events)
            assert_invalid(exc)
        assert v.events() == 0


def test_non_int_events_is_type_error() -> None:
    with pytest.raises(TypeError):
        greenfd.Vpoll("IN")  # type: ignore[arg-type]
    with greenfd.Vpoll() as v, pytest.raises(TypeError):
        v.add(1.0)  # type: ignore[arg-type]


def test_unknown_backend() -> None:
    with pytest.raises(ValueError) as exc:
        greenfd.Vpoll(backend="bogus")  # type: ignore[arg-type]
    assert_invalid(exc)
    assert "bogus" in str(exc.value)


def test_unknown_fuse_route() -> None:
    with pytest.raises(ValueError) as exc:
        greenfd.Vpoll(backend="fuse", fuse_route="nfs")  # type: ignore[arg-type]
    assert_invalid(exc)
    assert "nfs" in str(exc.value)


def test_fuse_route_names_the_route_in_use() -> None:
    routes = [a for a in greenfd.probe() if a.kind == "fuse-route"]
    assert [a.name for a in routes] == ["direct", "userns", "fusermount"]
    with greenfd.Vpoll(backend="emulated") as v:
        assert v.fuse_route is None
    if available_backends()["fuse"] is not None:
        pytest.skip(f"fuse backend unavailable here: {available_backends()['fuse']}")
    selected = [a.name for a in routes if a.selected]
    with greenfd.Vpoll(backend="fuse") as v:
        assert selected == [v.fuse_route]


def test_unavailable_backend_says_why() -> None:
    missing = [b for b, why in available_backends().items() if why is not None]
    if not missing:
        pytest.skip("every backend is available here")
    with pytest.raises(OSError) as exc:
        greenfd.Vpoll(backend=missing[0])  # type: ignore[arg-type]
    assert exc.value.errno == errno.ENODEV
    assert f"vpoll backend {missing[0]} unavailable" in str(exc.value)


def test_closed_vpoll() -> None:
    v = greenfd.Vpoll()
    assert not v.closed
    v.close()
    v.close()  # again: no effect
    assert v.closed and "closed" in repr(v)
    for call in (v.fileno, v.events, lambda: v.add(greenfd.IN), lambda: v.set(0),
                 lambda: v.delete(greenfd.IN)):
        with pytest.raises(ValueError, match="closed Vpoll"):
            call()


def test_context_manager_closes_and_propagates() -> None:
    with pytest.raises(KeyError):
        with greenfd.Vpoll() as v:
            raise KeyError("inside")
    assert v.closed


def test_probe_lists_every_backend_with_reasons() -> None:
    found = greenfd.probe()
    assert [a.name for a in found if a.kind == "backend"] == ["kernel", "device", "fuse",
                                                             "emulated"]
    assert {a.kind for a in found} == {"backend", "fuse-route"}
    for a in found:
        assert a.available == (a.reason is None)
        assert not a.selected or a.available
    selected = [a.name for a in found if a.selected and a.kind == "backend"]
    with greenfd.Vpoll() as v:
        assert selected == [v.backend]


@pytest.mark.parametrize("name", ["x" * 16, "a\0b"])
def test_bad_device_names(name: str) -> None:
    for cls in (greenfd.TapDevice, greenfd.TunDevice):
        with pytest.raises(ValueError) as exc:
            cls(name)
        assert_invalid(exc)
        assert "invalid interface name" in str(exc.value)


def test_close_while_other_threads_use_it() -> None:
    """Threads hammering add/delete see ValueError once another thread closed the Vpoll;
    nothing crashes and every thread ends."""
    import threading

    v = greenfd.Vpoll()
    outcomes: list[str] = []
    started = threading.Barrier(5)

    def hammer() -> None:
        started.wait()
        try:
            while True:
                v.add(greenfd.IN)
                v.delete(greenfd.IN)
        except ValueError as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    started.wait()
    v.close()
    for t in threads:
        t.join(60)
        assert not t.is_alive()
    assert outcomes == ["I/O operation on closed Vpoll"] * 4


def test_backend_forced_by_environment() -> None:
    done = run_python("""
        import greenfd
        picked = [a.name for a in greenfd.probe() if a.selected and a.kind == "backend"]
        with greenfd.Vpoll() as v:
            print(picked, v.backend)
    """, env={"GREENFD_VPOLL_BACKEND": "emulated"})
    child_ok(done)
    assert done.stdout.strip() == "['emulated'] emulated"
    done = run_python("""
        import errno, greenfd
        try:
            greenfd.Vpoll()
        except OSError as e:
            print(e.errno == errno.ENODEV, e)
    """, env={"GREENFD_VPOLL_BACKEND": "kernel"})
    child_ok(done)
    if available_backends()["kernel"] is None:
        pytest.skip("the kernel backend is available here, so forcing it succeeds")
    assert done.stdout.startswith("True "), done.stdout
    assert "vpoll backend kernel unavailable: " in done.stdout
