"""Two processes, one cluster: a seed node that hosts a `Worker`, and a client that finds it by
name and calls it.

    python examples/python/two_node.py seed 0.0.0.0:8000
    python examples/python/two_node.py client 0.0.0.0:8001 127.0.0.1:8000

Port 0 picks a free port; the seed prints the address it listens on. Both processes use the
same cluster secret (from PULSING_SECRET, or a demo value): connections are then authenticated
and encrypted, and nobody without the secret can join or call the worker.
"""

import asyncio
import os
import sys

import pulsing as pul


@pul.remote
class Worker:
    def __init__(self):
        self.handled = 0

    def process(self, text):
        self.handled += 1
        return f"{text.upper()} (request #{self.handled})"

    async def words(self, text):
        for word in text.split():
            await asyncio.sleep(0)
            yield word


SECRET = os.environ.get("PULSING_SECRET", "pulsing example secret")


async def seed(addr):
    await pul.init(addr=addr, secret=SECRET)
    await Worker.spawn(name="worker")
    print("seed listening on", pul.advertised_addr(), flush=True)
    try:
        await asyncio.Event().wait()  # serve until interrupted
    finally:
        await pul.shutdown()


async def client(addr, seed_addr):
    await pul.init(addr=addr, seeds=[seed_addr], secret=SECRET)
    worker = await Worker.resolve("worker")  # waits for the first gossip after joining
    print(await worker.process("hello"))
    print([w async for w in worker.words("streamed across processes")])
    await pul.shutdown()


if __name__ == "__main__":
    role, *args = sys.argv[1:]
    try:
        asyncio.run(seed(*args) if role == "seed" else client(*args))
    except KeyboardInterrupt:
        pass
