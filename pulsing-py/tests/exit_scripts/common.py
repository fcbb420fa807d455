"""Shared by the exit scripts: an actor, and a proxy to it that goes through the Rust runtime
(by-name calls via the native bridge), so that Rust threads are busy when the script ends."""

import asyncio

import pulsing as pul
from pulsing import _bridge, _native, _targets


@pul.remote
class Echo:
    def __init__(self):
        self.n = 0

    def inc(self):
        self.n += 1
        return self.n

    async def echo(self, x):
        await asyncio.sleep(0)
        return x

    async def forever(self):
        i = 0
        while True:
            yield i
            i += 1


async def through_rust(name):
    """A proxy whose calls go Python -> Rust (DynRef) -> hosted actor -> Python."""
    b = _bridge.running_bridge()
    token, fut = b.future()
    _native.resolve(b.native, token, name, None)
    return pul.ActorRef(_targets._RemoteTarget(await fut)).as_any()


async def busy(addr=None):
    if addr:
        await pul.init(addr=addr)
    else:
        await pul.init()
    await Echo.spawn(name="echo")
    proxy = await through_rust("echo")
    results = await asyncio.gather(*(proxy.echo(i) for i in range(2000)))
    assert results == list(range(2000))
    assert await proxy.inc() == 1
    return proxy
