"""One process: init and shutdown, loops Pulsing does not own, stopping actors, names."""

import asyncio
import sys
import threading

import pytest

import pulsing as pul
from conftest import run_script
from local_actors import Counter


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
