"""One process: the quick start, proxies, errors, timeouts, the execution model, streams."""

import asyncio
import subprocess
import sys
import threading
import time

import pytest

import pulsing as pul
from conftest import ROOT, run_script


@pul.remote
class Counter:
    def __init__(self, start=0):
        self.value = start

    def inc(self, by=1):
        self.value += by
        return self.value

    async def slow_get(self):
        await asyncio.sleep(0.01)
        return self.value

    async def stream(self, n):
        for i in range(n):
            yield i

    def ticks(self, n):
        yield from range(n)

    def _private(self):
        return "secret"


@pul.remote
class Faulty:
    def __init__(self):
        self.calls = 0

    def fail(self, why):
        self.calls += 1
        raise ValueError(f"bad input: {why}")

    async def afail(self):
        await asyncio.sleep(0)
        raise KeyError("missing")

    def count(self):
        self.calls += 1
        return self.calls

    async def sleep(self, seconds):
        await asyncio.sleep(seconds)
        return "slept"

    def block(self, seconds):
        time.sleep(seconds)
        return "blocked"


def test_quickstart_runs_exactly_as_written():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples/python/quickstart.py")],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n") == ["11", "13 13", "0", "1", "2", ""]
    assert out.stderr == ""


def test_version_and_stubs():
    import pathlib
    assert isinstance(pul.__version__, str) and pul.__version__.count(".") == 2
    pkg = pathlib.Path(pul.__file__).parent
    assert (pkg / "py.typed").exists()
    assert (pkg / "__init__.pyi").exists()


async def test_all_method_kinds(system):
    c = await Counter.spawn(10, name="c")
    assert await c.inc() == 11
    assert await c.inc(by=4) == 15
    assert await c.slow_get() == 15
    assert [x async for x in c.stream(4)] == [0, 1, 2, 3]
    assert [x async for x in c.ticks(1000)] == list(range(1000))
    again = await Counter.resolve("c")
    assert await again.inc() == 16
    ref = await pul.resolve("c", timeout=5)
    assert ref.name == "c" and ref.type_name == "Counter" and ref.is_local
    assert await ref.as_any().inc(2) == 18
    assert await ref.as_type(Counter).slow_get() == 18


async def test_anonymous_actors_are_independent(system):
    a = await Counter.spawn()
    b = await Counter.spawn(start=100)
    assert await a.inc() == 1
    assert await b.inc() == 101


async def test_typed_proxy_rejects_unknown_and_private_names_at_once(system):
    c = await Counter.spawn(name="c")
    with pytest.raises(pul.PulsingUnknownMethodError, match="no remote method `nope`"):
        c.nope
    with pytest.raises(pul.PulsingUnknownMethodError, match="private"):
        c._private
    with pytest.raises(AttributeError):  # also an AttributeError: hasattr works
        c.__secret
    assert not hasattr(c, "nope")
    typed = (await pul.resolve("c")).as_type(Counter)
    with pytest.raises(pul.PulsingUnknownMethodError):
        typed.nope
    # An untyped proxy forwards the name; the actor reports it.
    anyp = (await pul.resolve("c")).as_any()
    call = anyp.nope(1)
    with pytest.raises(pul.PulsingUnknownMethodError, match="nope"):
        await call
    with pytest.raises(pul.PulsingUnknownMethodError):
        anyp._private


async def test_as_type_checks_the_class(system):
    await Faulty.spawn(name="f")
    ref = await pul.resolve("f")
    with pytest.raises(pul.PulsingTypeMismatchError):
        ref.as_type(Counter)
    with pytest.raises(pul.PulsingTypeMismatchError):
        await Counter.resolve("f")


async def test_exceptions_carry_type_message_and_traceback(system):
    f = await Faulty.spawn(name="f")
    with pytest.raises(pul.PulsingActorError) as info:
        await f.fail("x")
    err = info.value
    assert err.type_name == "ValueError"
    assert err.message == "bad input: x"
    assert "in fail" in err.remote_traceback and "ValueError: bad input: x" in err.remote_traceback
    assert isinstance(err, pul.PulsingError)
    with pytest.raises(pul.PulsingActorError) as info:
        await f.afail()
    assert info.value.type_name == "KeyError"
    # The actor keeps serving, its state intact.
    assert await f.count() == 2


async def test_per_call_timeout(system):
    f = await Faulty.spawn(name="f")
    t0 = time.monotonic()
    with pytest.raises(pul.PulsingTimeoutError):
        await f.sleep(5).timeout(0.05)
    assert time.monotonic() - t0 < 1
    with pytest.raises(TimeoutError):  # also a builtin TimeoutError
        await f.block(0.5).timeout(0.05)
    assert await f.sleep(0).timeout(1) == "slept"
    with pytest.raises(ValueError):
        f.sleep(0).timeout(-1)
    with pytest.raises(ValueError):
        await pul.resolve("f", timeout=float("nan"))


async def test_resolve_waits_then_raises_not_found(system):
    t0 = time.monotonic()
    with pytest.raises(pul.PulsingNotFoundError):
        await pul.resolve("nobody", timeout=0.2)
    assert 0.15 < time.monotonic() - t0 < 2
    with pytest.raises(pul.PulsingNotFoundError):
        await pul.resolve("nobody")

    async def later():
        await asyncio.sleep(0.1)
        await Counter.spawn(5, name="late")

    task = asyncio.create_task(later())
    ref = await pul.resolve("late", timeout=5)
    assert await ref.as_type(Counter).inc() == 6
    await task


async def test_name_taken(system):
    await Counter.spawn(name="x")
    with pytest.raises(pul.PulsingNameTakenError):
        await Counter.spawn(name="x")


# -- execution model -------------------------------------------------------------------------


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


# -- streams ----------------------------------------------------------------------------------


@pul.remote
class Producer:
    def __init__(self):
        self.produced = 0

    async def agen(self, n, fail_at=None):
        for i in range(n):
            if i == fail_at:
                raise RuntimeError(f"failed at {i}")
            self.produced += 1
            yield i

    def sgen(self, n, fail_at=None):
        for i in range(n):
            if i == fail_at:
                raise RuntimeError(f"failed at {i}")
            self.produced += 1
            yield i

    def count(self):
        return self.produced

    def reset(self):
        self.produced = 0


@pytest.mark.parametrize("method", ["agen", "sgen"])
async def test_stream_error_after_items(system, method):
    p = await Producer.spawn()
    got = []
    with pytest.raises(pul.PulsingActorError) as info:
        async for x in getattr(p, method)(10, fail_at=3):
            got.append(x)
    assert got == [0, 1, 2]
    assert info.value.type_name == "RuntimeError"
    assert "failed at 3" in info.value.message


@pytest.mark.parametrize("method", ["agen", "sgen"])
async def test_breaking_out_stops_the_producer(system, method):
    p = await Producer.spawn()
    async for x in getattr(p, method)(10**9):
        if x == 5:
            break
    await asyncio.sleep(0.05)
    first = await p.count()
    await asyncio.sleep(0.1)
    assert await p.count() == first
    assert first < 10_000  # backpressure: the producer did not run ahead


async def test_stream_and_call_kinds_are_checked(system):
    p = await Producer.spawn()
    with pytest.raises(pul.PulsingBadArgumentsError, match="async for"):
        await p.agen(3)
    with pytest.raises(pul.PulsingBadArgumentsError, match="await"):
        async for _ in p.count():
            pass
    anyp = pul.ActorRef(p.__dict__["_pulsing_target"]).as_any()
    with pytest.raises(pul.PulsingBadArgumentsError, match="async for"):
        await anyp.agen(3)
    with pytest.raises(pul.PulsingBadArgumentsError, match="await"):
        async for _ in anyp.count():
            pass


# -- lifecycle --------------------------------------------------------------------------------


async def test_init_twice_and_shutdown():
    await pul.init()
    await pul.init()  # the same arguments: the same system
    with pytest.raises(pul.PulsingError, match="already initialized"):
        await pul.init(addr="127.0.0.1:0")
    c = await Counter.spawn(name="c")
    await pul.shutdown()
    with pytest.raises(pul.PulsingStoppedError):
        await c.inc()
    with pytest.raises(pul.PulsingError, match="not initialized"):
        await pul.resolve("c")
    await pul.init()
    c2 = await Counter.spawn(name="c")  # the name is free again
    assert await c2.inc() == 1
    await pul.shutdown()


LARGE_BLOCK_FAULTS = """
import resource
import pulsing as pul
from pulsing import _native
pul.init()
def churn():  # eight 1 MiB messages arrive, then are freed
    blocks = [b"x" * (1 << 20) for _ in range(8)]
    del blocks
churn()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    churn()
print(_native.malloc_tuned(), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10)
pul.shutdown()
"""


@pytest.mark.skipif(sys.platform != "linux", reason="the tuning is glibc's mallopt")
@pytest.mark.parametrize("env, tuned", [({}, True), ({"PULSING_MALLOC": "system"}, False)])
def test_init_keeps_large_freed_blocks_for_reuse(env, tuned):
    # Tuned, a process that receives MiB messages stops faulting in fresh pages for each one
    # (8 MiB per round = 2,048 pages with glibc's defaults); PULSING_MALLOC=system opts out.
    out = run_script(LARGE_BLOCK_FAULTS, env=env)
    assert out.returncode == 0, out.stderr
    flag, faults = out.stdout.split()
    assert flag == str(tuned)
    assert (int(faults) < 100) == tuned, out.stdout


def test_init_from_sync_code():
    pul.init()
    try:
        async def main():
            c = await Counter.spawn(1)
            return await c.inc()
        assert asyncio.run(main()) == 2
    finally:
        pul.shutdown()


def test_actor_on_a_loop_pulsing_does_not_own():
    """An actor spawned on a loop in another thread serves callers on the main loop."""
    pul.init()
    ready = threading.Event()
    holder = {}
    loop = asyncio.new_event_loop()

    def run():
        asyncio.set_event_loop(loop)

        async def start():
            holder["proxy"] = await Counter.spawn(100, name="elsewhere")
            ready.set()

        loop.run_until_complete(start())
        loop.run_forever()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    try:
        ready.wait(5)

        async def main():
            ref = await pul.resolve("elsewhere")
            c = ref.as_type(Counter)
            return [await c.inc(), await c.slow_get()]

        assert asyncio.run(main()) == [101, 101]
    finally:
        loop.call_soon_threadsafe(loop.stop)
        th.join(5)
        pul.shutdown()


async def test_stop_releases_the_name(system):
    c = await Counter.spawn(name="c")
    assert await c.inc() == 1
    pul.stop(c)
    with pytest.raises(pul.PulsingStoppedError):
        await c.inc()
    # Like `ActorRef::stop` in Rust, stop returns at once; the runtime lets go of the name a
    # moment later.
    for _ in range(200):
        try:
            await pul.resolve("c")
        except pul.PulsingNotFoundError:
            break
        await asyncio.sleep(0.005)
    else:
        raise AssertionError("the name of a stopped actor is still bound")
    again = await Counter.spawn(7, name="c")
    assert await again.inc() == 8
    (await pul.resolve("c")).stop()
    with pytest.raises(pul.PulsingStoppedError):
        await again.inc()


async def test_slow_def_methods_of_many_actors_run_in_parallel(system):
    actors = [await Faulty.spawn() for _ in range(10)]
    t0 = time.monotonic()
    assert await asyncio.gather(*(a.block(0.3) for a in actors)) == ["blocked"] * 10
    assert time.monotonic() - t0 < 1.5  # not 10 x 0.3 s


async def test_name_taken_by_an_actor_of_another_loop(system):
    """A name held by an actor living on another thread's loop is refused here too."""
    loop = asyncio.new_event_loop()
    th = threading.Thread(target=loop.run_forever, daemon=True)
    th.start()
    try:
        asyncio.run_coroutine_threadsafe(Counter.spawn(name="shared"), loop).result(5)
        with pytest.raises(pul.PulsingNameTakenError):
            await Counter.spawn(name="shared")
        other = await Counter.resolve("shared")
        assert await other.inc() == 1  # served on its own loop
    finally:
        loop.call_soon_threadsafe(loop.stop)
        th.join(5)
        loop.close()


def test_actors_of_a_finished_loop_are_stopped():
    """asyncio.run twice: the first loop's actors are gone, their names free again."""
    pul.init()
    try:
        async def first():
            c = await Counter.spawn(1, name="twice")
            return c, await c.inc()

        old, value = asyncio.run(first())
        assert value == 2

        async def second():
            with pytest.raises(pul.PulsingStoppedError):
                await old.inc()
            c = await Counter.spawn(10, name="twice")  # waits for the runtime to let go
            return await c.inc()

        assert asyncio.run(second()) == 11
    finally:
        pul.shutdown()


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
