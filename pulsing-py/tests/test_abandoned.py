"""A queued call whose caller has gone (timed out, cancelled) before it started is skipped, in
this process and from another one, as a Rust actor skips it (issue #16, bug 3)."""

import asyncio
import time

import pytest

import pulsing as pul


@pul.remote
class Queue:
    """`def` methods run one at a time: `work` holds the rest back."""

    def __init__(self):
        self.log = []

    def work(self, seconds):
        time.sleep(seconds)

    def record(self, i):
        self.log.append(i)

    def take_log(self):
        log, self.log = self.log, []
        return log


@pul.remote(serial=True)
class SerialQueue:
    def __init__(self):
        self.log = []

    async def work(self, seconds):
        await asyncio.sleep(seconds)

    async def record(self, i):
        self.log.append(i)

    async def take_log(self):
        log, self.log = self.log, []
        return log


async def _give_up_while_queued(actor):
    """Two calls queued behind a busy one give up (a timeout, a cancel); a third waits."""
    busy = asyncio.ensure_future(actor.work(0.6))
    await asyncio.sleep(0.1)  # `work` is running
    with pytest.raises(pul.PulsingTimeoutError):
        await actor.record(1).timeout(0.1)
    cancelled = asyncio.ensure_future(actor.record(2))
    await asyncio.sleep(0.05)
    cancelled.cancel()
    kept = asyncio.ensure_future(actor.record(3))
    await asyncio.wait_for(busy, 10)
    await asyncio.wait_for(kept, 10)
    return await actor.take_log()


@pytest.mark.parametrize("cls", [Queue, SerialQueue])
async def test_in_this_process(cls):
    await pul.init()
    try:
        assert await _give_up_while_queued(await cls.spawn()) == [3]
    finally:
        await pul.shutdown()


async def test_from_another_process(py_node, cluster_system):
    node = py_node("--spawn-overlap", "queue")
    await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
    queue = (await pul.resolve("queue", timeout=10)).as_any()
    assert await _give_up_while_queued(queue) == [3]
