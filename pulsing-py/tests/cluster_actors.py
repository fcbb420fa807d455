"""Actors shared by the multi-process tests (imported by the test and by py_node.py)."""

import asyncio
import dataclasses
import fractions
import time

import pulsing as pul
from pulsing import _native


@dataclasses.dataclass
class Point:
    x: int
    y: int


def _explode():
    raise RuntimeError("this object cannot be unpickled")


class Bomb:
    """Pickles fine, but fails to unpickle on the other side."""

    def __reduce__(self):
        return (_explode, ())


@pul.remote
class Worker:
    def __init__(self, node="py"):
        self.node = node
        self.produced = 0
        self.closed_counts = 0
        self.refs = {}

    def process(self, text):
        return f"{self.node} processed {text}"

    def add(self, a, b=0):
        return a + b

    @pul.inline
    def quick_add(self, a, b=0):
        return a + b

    def echo(self, data):
        return data

    def landed(self):
        """How many received byte strings this process read straight into `bytes` objects."""
        return _native.landed_count()

    async def aecho(self, data):
        await asyncio.sleep(0)
        return data

    def kinds(self, value):
        return type(value).__name__

    async def count(self, n, fail_at=None):
        try:
            for i in range(n):
                if i == fail_at:
                    raise RuntimeError(f"failed at {i}")
                self.produced += 1
                yield i
        finally:
            self.closed_counts += 1

    def counts_closed(self):
        """How many `count` generators have been closed (finished, failed or cancelled)."""
        return self.closed_counts

    def ticks(self, n):
        for i in range(n):
            self.produced += 1
            yield i

    async def hang_after_one(self):
        self.closed = False
        try:
            yield "one"
            await asyncio.sleep(3600)
            yield "never"
        finally:
            self.closed = True

    def was_closed(self):
        return getattr(self, "closed", None)

    async def can_resolve(self, name):
        try:
            await pul.resolve(name)
            return True
        except pul.PulsingNotFoundError:
            return False

    async def call_proxy(self, proxy, method, *args):
        """Calls an actor through a proxy it was sent (by name)."""
        return await getattr(proxy, method)(*args)

    async def proxy_to(self, name):
        """Returns a proxy (it travels back by name)."""
        return await Worker.resolve(name, timeout=10)

    def produced_so_far(self):
        return self.produced

    def fail(self, why):
        raise ValueError(why)

    async def slow(self, seconds):
        await asyncio.sleep(seconds)
        return seconds

    def block(self, seconds):
        time.sleep(seconds)
        return seconds

    def fraction(self):
        return fractions.Fraction(1, 3)

    def point(self, p):
        return Point(p.x * 2, p.y * 2)

    async def call_other(self, name, method, *args):
        """Calls another actor by name (a Rust actor, or a Python one on another node)."""
        ref = await pul.resolve(name, timeout=10)
        return await getattr(ref.as_any(), method)(*args)

    async def ask_task_name(self, name):
        """Asks actor `name` which task its call ran in (resolved once, then kept)."""
        if name not in self.refs:
            self.refs[name] = (await pul.resolve(name, timeout=10)).as_any()
        return await self.refs[name].task_name()

    async def task_name(self):
        """The name of the task this call runs in (None: it ran in a loop callback)."""
        task = asyncio.current_task()
        return None if task is None else task.get_name()

    def fail_slowly(self, seconds):
        time.sleep(seconds)
        raise ValueError(f"failed after {seconds}s")


@pul.remote(serial=True)
class Tally:
    """Strictly one call at a time; records the largest overlap it saw."""

    def __init__(self):
        self.active = 0
        self.peak = 0

    async def work(self, seconds):
        self.active += 1
        self.peak = max(self.peak, self.active)
        await asyncio.sleep(seconds)
        self.active -= 1
        return self.peak

    def quick(self):
        return self.peak


@pul.remote(serial=True)
class Ping:
    """A serial actor that bounces calls between nodes (A -> B -> A ...)."""

    def __init__(self, name):
        self.name = name

    async def bounce(self, other, depth):
        if depth == 0:
            return [self.name]
        peer = await Ping.resolve(other, timeout=10)
        return [self.name] + await peer.bounce(self.name, depth - 1)


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no message either")


@pul.remote
class Overlap:
    """Plain (not serial, no `@pul.inline`) actor whose `def` methods record any overlap."""

    def __init__(self):
        self.active = 0
        self.peak = 0
        self.calls = 0
        self.log = []

    def work(self, seconds):
        self.active += 1
        self.peak = max(self.peak, self.active)
        time.sleep(seconds)
        self.active -= 1
        self.calls += 1
        return self.calls

    async def burst(self, name, n, seconds):
        """`n` calls of `work` from this actor's own process, all at once."""
        me = await Overlap.resolve(name)
        await asyncio.gather(*(me.work(seconds) for _ in range(n)))
        return n

    def boom(self):
        raise Unprintable()

    def stats(self):
        return self.peak, self.calls

    def record(self, i):
        self.log.append(i)

    async def arecord(self, i):
        self.log.append(i)  # (before its first await: the order the calls started in)
        await asyncio.sleep(0)

    def take_log(self):
        log, self.log = self.log, []
        return log

    def echo_proxy(self, proxy):
        """Sends a proxy back (it travels by name both ways)."""
        return proxy


@pul.remote
class InlineLog:
    """A class with an `@pul.inline` method: its calls keep their order with the `def` ones."""

    def __init__(self):
        self.log = []

    def record(self, i):
        self.log.append(i)

    @pul.inline
    def irecord(self, i):
        self.log.append(i)

    def take_log(self):
        log, self.log = self.log, []
        return log


GATE = {"inside": 0, "peak": 0, "open": None}


@pul.remote
class Gate:
    """Its calls wait at a gate that `GateKeeper.open` opens (both actors share the module state,
    so the keeper answers while the gate's room is full)."""

    async def enter(self):
        if GATE["open"] is None:
            GATE["open"] = asyncio.Event()
        GATE["inside"] += 1
        GATE["peak"] = max(GATE["peak"], GATE["inside"])
        await GATE["open"].wait()
        GATE["inside"] -= 1
        return "through"


@pul.remote
class GateKeeper:
    def stats(self):
        return GATE["inside"], GATE["peak"]

    async def open(self):
        if GATE["open"] is None:
            GATE["open"] = asyncio.Event()
        GATE["open"].set()
