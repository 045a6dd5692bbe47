"""Every vpoll bit, alone and combined, as select.epoll, select.poll and select.select see it.

Imported by test_bits.py, and run as a script by it in a child that drops to an
unprivileged user first (``--drop-to UID``): the FUSE routes for unprivileged users
are what make the bits exact there. As that user it also checks that a forked child
controls an inherited Vpoll on each route. Exit status: 0 all exact, 1 a mismatch (listed),
77 skip (the last line of stdout says why).
"""

from __future__ import annotations

import ctypes
import itertools
import os
import select
import sys

import greenfd

#: The six bits, in EPOLL* order.
BITS = [greenfd.IN, greenfd.PRI, greenfd.OUT, greenfd.ERR, greenfd.HUP, greenfd.RDHUP]

#: What epoll and poll are asked for (ERR and HUP are always reported).
INTEREST = select.EPOLLIN | select.EPOLLPRI | select.EPOLLOUT | select.EPOLLRDHUP
POLL_INTEREST = select.POLLIN | select.POLLPRI | select.POLLOUT | select.POLLRDHUP


def masks() -> list[int]:
    """All 64 combinations of the six bits, the empty mask included."""
    out = []
    for n in range(len(BITS) + 1):
        for combo in itertools.combinations(BITS, n):
            mask = 0
            for bit in combo:
                mask |= bit
            out.append(mask)
    return out


def by_epoll(fd: int) -> int:
    """The mask a level-triggered select.epoll reports for ``fd`` now (0: none)."""
    with select.epoll() as ep:
        ep.register(fd, INTEREST)
        ready = ep.poll(0)
    return ready[0][1] if ready else 0


def by_poll(fd: int) -> int:
    """The revents select.poll reports for ``fd`` now (0: none)."""
    p = select.poll()
    p.register(fd, POLL_INTEREST)
    ready = p.poll(0)
    return ready[0][1] if ready else 0


def by_select(fd: int) -> tuple[bool, bool, bool]:
    """Whether select.select lists ``fd`` as readable, writable, exceptional."""
    r, w, x = select.select([fd], [fd], [fd], 0)
    return bool(r), bool(w), bool(x)


def select_expected(mask: int) -> tuple[bool, bool, bool]:
    """select(2)'s sets for a mask: read = IN|HUP|ERR, write = OUT|ERR, except = PRI."""
    return (
        bool(mask & (greenfd.IN | greenfd.HUP | greenfd.ERR)),
        bool(mask & (greenfd.OUT | greenfd.ERR)),
        bool(mask & greenfd.PRI),
    )


def compare(v: greenfd.Vpoll, mask: int, how: str, failures: list[str]) -> None:
    """Records every place where ``v`` does not report exactly ``mask``."""
    fd = v.fileno()
    seen = {
        "events()": v.events(),
        "epoll": by_epoll(fd),
        "poll": by_poll(fd),
    }
    for name, got in seen.items():
        if got != mask:
            failures.append(f"{v.backend} {how} {mask:#x}: {name} gave {got:#x}")
    got_select = by_select(fd)
    if got_select != select_expected(mask):
        failures.append(
            f"{v.backend} {how} {mask:#x}: select gave r/w/x {got_select}, "
            f"expected {select_expected(mask)}"
        )


def check(backend: str, fuse_route: str | None = None) -> list[str]:
    """Checks every mask on ``backend`` (by ``fuse_route`` if given) through set,
    add/delete, creation and ET epoll."""
    failures: list[str] = []
    with greenfd.Vpoll(backend=backend, fuse_route=fuse_route) as v:
        if fuse_route is not None and v.fuse_route != fuse_route:
            failures.append(f"asked for route {fuse_route}, got {v.fuse_route}")
        for mask in masks():
            v.set(mask)
            compare(v, mask, "set", failures)
        for mask in masks():
            v.set(0)
            for bit in BITS:
                if mask & bit:
                    v.add(bit)
            compare(v, mask, "add bit by bit", failures)
            for bit in BITS:
                v.delete(bit)
            compare(v, 0, f"delete every bit after {mask:#x}", failures)
        # Edge-triggered: each set that leaves bits reports the mask once, then nothing.
        v.set(0)
        with select.epoll() as ep:
            ep.register(v.fileno(), INTEREST | select.EPOLLET)
            ep.poll(0)
            for mask in masks()[1:]:
                v.set(mask)
                first, second = ep.poll(0), ep.poll(0)
                if first != [(v.fileno(), mask)] or second != []:
                    failures.append(
                        f"{backend} ET set {mask:#x}: reports {first} then {second}"
                    )
    for mask in masks():
        with greenfd.Vpoll(events=mask, backend=backend, fuse_route=fuse_route) as v:
            compare(v, mask, "created with", failures)
    return failures


def check_fork(fuse_route: str) -> list[str]:
    """A forked child sets bits on an inherited Vpoll; this process's epoll sees them."""
    failures: list[str] = []
    with greenfd.Vpoll(backend="fuse", fuse_route=fuse_route) as v, select.epoll() as ep:
        ep.register(v.fileno(), INTEREST)
        for mask in (greenfd.PRI, greenfd.HUP | greenfd.IN, greenfd.ERR):
            pid = os.fork()
            if pid == 0:
                try:
                    v.set(mask)
                    os._exit(0)
                except BaseException as e:  # noqa: BLE001 - report, never return
                    print(f"child: {e!r}", flush=True)
                    os._exit(1)
            _, status = os.waitpid(pid, 0)
            got = ep.poll(0)
            if os.waitstatus_to_exitcode(status) != 0 or got != [(v.fileno(), mask)]:
                failures.append(f"fork {fuse_route} {mask:#x}: child status {status}, "
                                f"parent saw {got}")
    return failures


def drop_privileges(uid: int) -> None:
    """Becomes ``uid``/gid ``uid`` with no supplementary groups and no capabilities.

    Everything the check needs is imported before this (the interpreter's own files may
    be unreadable by ``uid``). The process is made dumpable again, as a process started
    by that user is, so it may write its own /proc files (uid_map for a user namespace).
    """
    os.chdir("/")  # the checkout may sit in a directory ``uid`` cannot enter
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    pr_set_dumpable = 4
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_dumpable, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE)")


def main() -> int:
    """Runs the check on the FUSE backend by every route that works as ``--drop-to UID``
    (see the module doc)."""
    if len(sys.argv) != 3 or sys.argv[1] != "--drop-to":
        print("usage: exact_bits.py --drop-to UID", file=sys.stderr)
        return 2
    uid = int(sys.argv[2])
    drop_privileges(uid)
    assert os.getuid() == uid and os.geteuid() == uid and os.getgroups() == []
    found = greenfd.probe()
    for a in found:
        print(f"probe as uid {uid}: {a}")
    routes = [a.name for a in found if a.kind == "fuse-route" and a.available]
    if not routes:
        why = "; ".join(f"{a.name}: {a.reason}" for a in found
                        if a.kind == "fuse-route" or a.name == "fuse")
        print(f"no FUSE route for uid {uid} here ({why})")
        return 77
    total = 0
    for route in routes:
        failures = check("fuse", fuse_route=route) + check_fork(route)
        for f in failures:
            print("MISMATCH", route, f)
        total += len(failures)
        print(f"uid {uid} route {route}: {len(masks())} masks and a forked child "
              f"checked, {len(failures)} mismatches")
    print(f"uid {uid}: routes {routes}, {total} mismatches")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
