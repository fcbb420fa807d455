"""Ray actors of the Ray bridge tests (``test_ray.py``), importable by Ray's workers (the test
module's fixture puts this folder on their ``PYTHONPATH``)."""

import asyncio
import threading
import time

import ray

import pulsing as pul


# The example, verbatim (with `num_cpus=0` so that many fit on a 2-CPU test cluster).
@ray.remote(num_cpus=0)
class Worker:
    def __init__(self, name):
        pul.mount(self, name=name)          # one line: join the Pulsing network

    async def call_peer(self, peer_name, msg):
        proxy = (await pul.resolve(peer_name, timeout=30)).as_any()
        return await proxy.greet(msg)      # direct Pulsing call to another Ray actor's process

    async def greet(self, msg):
        return f"hello: {msg}"


@ray.remote(num_cpus=0)
class Peer:
    """An async actor that talks to its peers through Pulsing."""

    def __init__(self, name):
        self.name = name
        self.received = []
        pul.mount(self, name=name)

    async def ask(self, peer, method, *args):
        proxy = (await pul.resolve(peer, timeout=30)).as_any()
        return await getattr(proxy, method)(*args)

    async def ask_error(self, peer, method, *args):
        """The error a call raises, as (class name, type_name, message, traceback)."""
        proxy = (await pul.resolve(peer, timeout=30)).as_any()
        try:
            await getattr(proxy, method)(*args)
        except pul.PulsingError as e:
            return (type(e).__name__, getattr(e, "type_name", None), getattr(e, "message", str(e)),
                    getattr(e, "remote_traceback", ""))
        return None

    async def collect(self, peer, method, *args):
        proxy = (await pul.resolve(peer, timeout=30)).as_any()
        return [x async for x in getattr(proxy, method)(*args)]

    async def collect_error(self, peer, method, *args):
        proxy = (await pul.resolve(peer, timeout=30)).as_any()
        items = []
        try:
            async for x in getattr(proxy, method)(*args):
                items.append(x)
        except pul.PulsingActorError as e:
            return items, e.type_name, e.message
        return items, None, None

    async def greet(self, msg):
        return f"{self.name} greets {msg}"

    def echo(self, value):
        return value

    async def type_of(self, value):
        return type(value).__name__

    async def receive(self, sender):
        self.received.append(sender)
        return len(self.received)

    async def broadcast(self, names):
        """Tells every actor of ``names`` (this one included) that we are here, all at once."""
        proxies = [(await pul.resolve(n, timeout=30)).as_any() for n in names]
        return await asyncio.gather(*(p.receive(self.name) for p in proxies))

    async def received_from(self):
        return sorted(self.received)

    async def numbers(self, n):
        for i in range(n):
            yield i

    def squares(self, n):
        for i in range(n):
            yield i * i

    async def fails_after(self, n):
        for i in range(n):
            yield i
        raise ValueError(f"stopped after {n}")

    def boom(self, msg):
        raise KeyError(msg)

    async def members(self):
        return sorted(m["addr"] for m in pul.members())

    async def addr(self):
        return pul.advertised_addr()

    async def instances(self, name):
        return pul.instances(name)

    async def call_until_failure(self, peer, deadline):
        """Calls ``peer`` until a call fails: (error class, seconds that failing call took)."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            started = time.monotonic()
            try:
                proxy = (await pul.resolve(peer, timeout=deadline)).as_any()
                await proxy.greet("again")
            except pul.PulsingError as e:
                return type(e).__name__, time.monotonic() - started
            await asyncio.sleep(0.01)
        return None, deadline

    async def warm(self, peer):
        proxy = (await pul.resolve(peer, timeout=30)).as_any()
        return await proxy.greet("warm")

    async def first_failure(self, peer):
        """One call to ``peer`` through a fresh proxy: the error class and how long it took."""
        started = time.monotonic()
        try:
            proxy = (await pul.resolve(peer)).as_any()
            await proxy.greet("after kill")
        except pul.PulsingError as e:
            return type(e).__name__, time.monotonic() - started
        return None, time.monotonic() - started

    def unmount(self):
        pul.unmount(self.name)


class _Count:
    """Increments with a window between the read and the write in which any other thread may
    run (``time.sleep(0)`` lets go of the GIL): two threads in one instance lose updates."""

    def _bump(self, n, side):
        self.threads.add(threading.get_ident())
        self.sides.append(side)
        for _ in range(n):
            v = self.value
            time.sleep(0)
            self.value = v + 1
        return self.value


@ray.remote(num_cpus=0)
class AsyncCounter(_Count):
    def __init__(self, name):
        pul.mount(self, name=name)
        self.value = 0
        self.threads = set()
        self.sides = []

    def inc(self, n, side):
        return self._bump(n, side)

    async def ainc(self, n, side):
        await asyncio.sleep(0)
        return self._bump(n, side)

    async def state(self):
        return self.value, sorted(self.threads), self.sides, threading.get_ident()


@ray.remote(num_cpus=0)
class SyncCounter(_Count):
    def __init__(self, name):
        pul.mount(self, name=name)
        self.value = 0  # after mount: Pulsing's calls wait until __init__ returns
        self.threads = set()
        self.sides = []

    def inc(self, n, side):
        return self._bump(n, side)

    def state(self):
        return self.value, sorted(self.threads), self.sides, threading.get_ident()

    def squares(self, n):
        for i in range(n):
            yield i * i

    def boom(self, msg):
        raise KeyError(msg)


@ray.remote(num_cpus=0)
class Hammer:
    """Calls a counter through Pulsing, ``in_flight`` calls at a time."""

    def __init__(self, name):
        pul.mount(self, name=name)

    async def hammer(self, target, method, calls, n, in_flight):
        proxy = (await pul.resolve(target, timeout=30)).as_any()
        sem = asyncio.Semaphore(in_flight)

        async def one():
            async with sem:
                await getattr(proxy, method)(n, "pulsing")

        await asyncio.gather(*(one() for _ in range(calls)))
        return calls * n


@ray.remote(num_cpus=0)
class HalfBuilt:
    """A sync actor that is called through Pulsing (from a thread it starts) while its
    ``__init__`` has not finished: the call must wait for ``__init__`` to return."""

    def __init__(self, name, window):
        pul.mount(self, name=name)
        self.answer = None
        done = threading.Event()

        def call_myself():
            async def call():
                proxy = (await pul.resolve(name, timeout=30)).as_any()
                return await proxy.value_now()

            try:
                self.answer = asyncio.run(call())
            except BaseException as e:  # noqa: BLE001 - the test reads it
                self.answer = f"{type(e).__name__}: {e}"
            done.set()

        threading.Thread(target=call_myself, daemon=True).start()
        # Had the call not waited, it would be answered (with an AttributeError) in this window.
        self.answered_during_init = done.wait(window)
        self.value = 42
        self.done = done

    def value_now(self):
        return self.value

    def result(self):
        self.done.wait(30)
        return self.answered_during_init, self.answer
