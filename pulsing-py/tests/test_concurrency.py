"""One process: the execution model (one `def` at a time, interleaving `async def`, serial actors,
no deadlock on call cycles, no frozen loop, `@pul.inline`)."""

import asyncio
import threading
import time

import pytest

import pulsing as pul
from local_actors import Counter, Faulty


@pul.remote
class Tracker:
    """Records how many calls overlap."""

    def __init__(self):
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def _enter(self):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self):
        with self.lock:
            self.active -= 1

    def work_sync(self, seconds):
        self._enter()
        time.sleep(seconds)
        self._leave()
        return "done"

    async def work_async(self, seconds):
        self._enter()
        await asyncio.sleep(seconds)
        self._leave()
        return "done"

    def peak(self):
        return self.max_active


async def test_sync_methods_run_one_at_a_time(system):
    t = await Tracker.spawn()
    await asyncio.gather(*(t.work_sync(0.01) for _ in range(10)))
    assert await t.peak() == 1


async def test_async_methods_interleave(system):
    t = await Tracker.spawn()
    t0 = time.monotonic()
    await asyncio.gather(*(t.work_async(0.1) for _ in range(10)))
    assert time.monotonic() - t0 < 0.5  # concurrently, not 1 s
    assert await t.peak() == 10


async def test_serial_actor_is_strictly_one_at_a_time(system):
    Serial = pul.remote(serial=True)(Tracker.__wrapped__)
    t = await Serial.spawn()
    await asyncio.gather(*(t.work_async(0.01) for _ in range(5)), *(t.work_sync(0.01) for _ in range(5)))
    assert await t.peak() == 1


@pul.remote
class Node:
    def __init__(self, name):
        self.name = name

    async def me(self):
        return self.name

    async def call_self(self):
        me = await pul.resolve(self.name)
        return "self:" + await me.as_any().me()

    async def bounce(self, other, depth):
        """A -> B -> A -> ... `depth` times."""
        if depth == 0:
            return [self.name]
        peer = (await pul.resolve(other)).as_any()
        return [self.name] + await peer.bounce(self.name, depth - 1)

    async def chain(self, names):
        if not names:
            return 0
        nxt = (await pul.resolve(names[0])).as_any()
        return 1 + await nxt.chain(names[1:])


@pytest.mark.parametrize("serial", [False, True])
async def test_self_call_cycle_and_deep_chain_do_not_deadlock(system, serial):
    cls = pul.remote(serial=serial)(Node.__wrapped__)
    a = await cls.spawn("a", name="a")
    await cls.spawn("b", name="b")
    for i in range(10):
        await cls.spawn(f"n{i}", name=f"n{i}")
    assert await asyncio.wait_for(a.call_self(), 5) == "self:a"
    assert await asyncio.wait_for(a.bounce("b", 3), 5) == ["a", "b", "a", "b"]
    assert await asyncio.wait_for(a.chain([f"n{i}" for i in range(10)]), 5) == 10


async def test_slow_sync_method_does_not_freeze_other_actors(system):
    slow = await Faulty.spawn()
    other = await Counter.spawn()
    busy = asyncio.ensure_future(slow.block(1.0))
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    for _ in range(5):
        await other.inc()
        await other.slow_get()
    assert time.monotonic() - t0 < 0.5
    assert not busy.done()
    # The slow actor's own async methods are not frozen either.
    assert await slow.sleep(0) == "slept"
    assert await busy == "blocked"


async def test_slow_def_methods_of_many_actors_run_in_parallel(system):
    actors = [await Faulty.spawn() for _ in range(10)]
    t0 = time.monotonic()
    assert await asyncio.gather(*(a.block(0.3) for a in actors)) == ["blocked"] * 10
    assert time.monotonic() - t0 < 1.5  # not 10 x 0.3 s


@pul.remote
class Log:
    def __init__(self):
        self.items = []

    def slow_add(self, x):
        time.sleep(0.1)
        self.items.append(x)
        return len(self.items)

    @pul.inline
    def add(self, x):
        self.items.append(x)
        return len(self.items)

    @pul.inline
    def bad(self):
        raise ValueError("inline failure")

    def items_(self):
        return self.items


async def test_inline_def_methods(system):
    log = await Log.spawn(name="log")
    assert await log.add("a") == 1
    # One at a time and in order with the actor's other def methods: an inline call waits for
    # the def call queued before it.
    assert await asyncio.gather(log.slow_add("b"), log.add("c")) == [2, 3]
    assert await log.items_() == ["a", "b", "c"]
    with pytest.raises(pul.PulsingActorError) as info:
        await log.bad()
    assert info.value.type_name == "ValueError"
    assert await (await pul.resolve("log")).as_any().add("d") == 4
    with pytest.raises(TypeError):
        pul.inline(Counter.__wrapped__.slow_get)
