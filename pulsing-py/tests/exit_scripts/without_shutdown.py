"""Ends without pul.shutdown(), with calls (`def` ones on worker threads too) and a stream
still in flight."""
import asyncio
import sys

sys.path.insert(0, sys.path[0])
from common import busy  # noqa: E402


async def main():
    proxy = await busy("127.0.0.1:0")
    for i in range(200):
        asyncio.ensure_future(proxy.echo(i))
        asyncio.ensure_future(proxy.inc())  # `def` calls on the workers, queued by the runtime
    stream = proxy.forever().__aiter__()
    await stream.__anext__()
    print("ok")


asyncio.run(main())
