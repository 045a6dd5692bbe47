"""Sets vpoll events from a thread and watches them arrive in select.epoll and asyncio.

    pip install ./python
    python3 python/examples/vpoll_events.py
"""

import asyncio
import select
import threading

import greenfd

NAMES = {greenfd.IN: "IN", greenfd.PRI: "PRI", greenfd.OUT: "OUT", greenfd.ERR: "ERR",
         greenfd.HUP: "HUP", greenfd.RDHUP: "RDHUP"}


def names(mask: int) -> str:
    return "|".join(n for bit, n in NAMES.items() if mask & bit) or "0"


for a in greenfd.probe():
    print(f"{a.kind} {a.name}: {'selected' if a.selected else 'available' if a.available else a.reason}")

with greenfd.Vpoll() as v, select.epoll() as ep:
    print(f"\n{v!r}")
    ep.register(v.fileno(), select.EPOLLIN | select.EPOLLPRI | select.EPOLLOUT | select.EPOLLRDHUP)
    for mask in (greenfd.IN, greenfd.PRI, greenfd.ERR, greenfd.HUP, greenfd.OUT | greenfd.RDHUP):
        v.set(0)
        # epoll_wait is asleep (nothing set) until the other thread sets the mask.
        threading.Thread(target=v.set, args=(mask,)).start()
        [(fd, events)] = ep.poll(10)
        print(f"set {names(mask):10} -> epoll reports {names(events)}")


async def main() -> None:
    loop = asyncio.get_running_loop()
    with greenfd.Vpoll() as v:
        woken: asyncio.Future[int] = loop.create_future()

        def readable() -> None:
            if not woken.done():
                woken.set_result(v.events())

        loop.add_reader(v.fileno(), readable)
        loop.call_later(0.1, v.add, greenfd.IN)
        print(f"asyncio add_reader woke with {names(await woken)}")
        loop.remove_reader(v.fileno())


asyncio.run(main())
