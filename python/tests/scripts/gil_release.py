"""The GIL is released while a greenfd call waits on the kernel.

This process owns a fuse-backed Vpoll (its FUSE server thread runs here) and forks a
child. The child stops this process (SIGSTOP), so its FUSE server cannot answer, then
calls ``v.add(IN)`` in a second thread: from a forked child that is a write(2) of the
control word to the fd, which waits for the stopped server. The child's main thread
then runs Python code that watches the other thread sit inside write(2) (in
/proc/self/task/TID/syscall): it could not run at all if the waiting call held the GIL.
It then resumes this process, the call completes, and this process sees IN.

Exit status 0 and "ok" on success; 77 (skip, reason on the last line) when the fuse
backend or the syscall table of this architecture is missing.
"""

from __future__ import annotations

import os
import platform
import select
import signal
import sys
import threading

import greenfd

#: write(2)'s number on the architectures whose table we know.
WRITE_SYSCALL = {"x86_64": 1, "aarch64": 64}.get(platform.machine())
#: Iterations of the child's watch loop before it gives up (each yields the CPU).
WATCH_LIMIT = 2_000_000


def child(v: greenfd.Vpoll, parent: int) -> int:
    os.kill(parent, signal.SIGSTOP)
    errors: list[BaseException] = []

    def control() -> None:
        try:
            v.add(greenfd.IN)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    worker = threading.Thread(target=control)
    worker.start()
    tid = worker.native_id
    seen = False
    for _ in range(WATCH_LIMIT):
        try:
            with open(f"/proc/self/task/{tid}/syscall") as f:
                fields = f.read().split()
        except FileNotFoundError:
            break  # the thread already ended: the server answered (it was not stopped?)
        if fields and fields[0] == str(WRITE_SYSCALL):
            seen = True
            break
        os.sched_yield()
    os.kill(parent, signal.SIGCONT)
    worker.join()
    print(f"child: watched the other thread inside write(2): {seen}; errors: {errors}",
          flush=True)
    return 0 if seen and not errors else 1


def main() -> int:
    if WRITE_SYSCALL is None:
        print(f"no write(2) number known for {platform.machine()}")
        return 77
    backends = {a.name: a for a in greenfd.probe() if a.kind == "backend"}
    if not backends["fuse"].available:
        print(f"fuse backend unavailable: {backends['fuse'].reason}")
        return 77
    v = greenfd.Vpoll(backend="fuse")
    ep = select.epoll()
    ep.register(v.fileno(), select.EPOLLIN)
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            status = child(v, parent)
        finally:
            os.kill(parent, signal.SIGCONT)
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    got = ep.poll(0)
    print(f"parent: child exited {code}, epoll sees {got}", flush=True)
    if code != 0 or got != [(v.fileno(), select.EPOLLIN)]:
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
