import asyncio
import sys

sys.path.insert(0, sys.path[0])
import pulsing as pul  # noqa: E402
from common import busy  # noqa: E402


async def main():
    await busy("127.0.0.1:0")
    await pul.shutdown()
    print("ok")


asyncio.run(main())
