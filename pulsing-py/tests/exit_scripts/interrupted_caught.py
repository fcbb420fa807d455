"""Catches Ctrl-C and exits 0 without calling pul.shutdown()."""
import asyncio
import sys

sys.path.insert(0, sys.path[0])
from common import busy  # noqa: E402


async def main():
    proxy = await busy()
    print("ready", flush=True)
    async for _ in proxy.forever():
        await proxy.inc()


try:
    asyncio.run(main())
except KeyboardInterrupt:
    print("interrupted")
