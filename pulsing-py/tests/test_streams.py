"""One process: streams (errors after items, leaving early stops the producer, kinds checked)."""

import pytest

import pulsing as pul
from conftest import eventually


@pul.remote
class Producer:
    def __init__(self):
        self.produced = 0
        self.closed_gens = 0

    async def agen(self, n, fail_at=None):
        try:
            for i in range(n):
                if i == fail_at:
                    raise RuntimeError(f"failed at {i}")
                self.produced += 1
                yield i
        finally:
            self.closed_gens += 1

    def sgen(self, n, fail_at=None):
        try:
            for i in range(n):
                if i == fail_at:
                    raise RuntimeError(f"failed at {i}")
                self.produced += 1
                yield i
        finally:
            self.closed_gens += 1

    def count(self):
        return self.produced

    def closed(self):
        """How many generators have been closed (finished, failed or cancelled)."""
        return self.closed_gens

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
    # The producer's generator is closed (its `finally` runs): flow control alone would only
    # hold it still.
    await eventually(p.closed, 1)
    assert await p.count() < 10_000  # backpressure: the producer did not run ahead


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
