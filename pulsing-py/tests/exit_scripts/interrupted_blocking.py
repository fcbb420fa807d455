"""Ctrl-C (SIGINT) while the main task awaits a blocking `def` method (running on a worker
thread for ten minutes); does not catch it."""
import asyncio
import time

import pulsing as pul


@pul.remote
class Sleeper:
    def block(self):
        print("blocking", flush=True)
        time.sleep(600)


async def main():
    await pul.init()
    sleeper = await Sleeper.spawn()
    await sleeper.block()


asyncio.run(main())
