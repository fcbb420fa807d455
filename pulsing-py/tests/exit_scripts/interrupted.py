"""Runs calls until interrupted with Ctrl-C (SIGINT); does not catch it."""
import asyncio
import sys

sys.path.insert(0, sys.path[0])
from common import busy  # noqa: E402


async def main():
    proxy = await busy()
    print("ready", flush=True)
    while True:
        await asyncio.gather(*(proxy.echo(i) for i in range(100)))
        await proxy.inc()


asyncio.run(main())
