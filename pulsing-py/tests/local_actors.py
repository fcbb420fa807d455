"""Actor classes shared by the single-process test files."""

import asyncio
import time

import pulsing as pul


@pul.remote
class Counter:
    def __init__(self, start=0):
        self.value = start

    def inc(self, by=1):
        self.value += by
        return self.value

    async def slow_get(self):
        await asyncio.sleep(0.01)
        return self.value

    async def stream(self, n):
        for i in range(n):
            yield i

    def ticks(self, n):
        yield from range(n)

    def _private(self):
        return "secret"


@pul.remote
class Faulty:
    def __init__(self):
        self.calls = 0

    def fail(self, why):
        self.calls += 1
        raise ValueError(f"bad input: {why}")

    async def afail(self):
        await asyncio.sleep(0)
        raise KeyError("missing")

    def count(self):
        self.calls += 1
        return self.calls

    async def sleep(self, seconds):
        await asyncio.sleep(seconds)
        return "slept"

    def block(self, seconds):
        time.sleep(seconds)
        return "blocked"
