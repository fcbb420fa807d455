"""The quick start of issue #4, exactly as written: python examples/python/quickstart.py"""
import asyncio
import pulsing as pul

@pul.remote
class Counter:
    def __init__(self, start=0):
        self.value = start
    def inc(self, by=1):                 # sync method
        self.value += by
        return self.value
    async def slow_get(self):            # async method
        await asyncio.sleep(0.01)
        return self.value
    async def stream(self, n):           # async generator = streaming method
        for i in range(n):
            yield i
    def ticks(self, n):                  # sync generator = streaming method too
        yield from range(n)

async def main():
    await pul.init()                                  # standalone, in-process
    counter = await Counter.spawn(10, name="counter") # constructor args, then name=
    print(await counter.inc())                        # 11
    again = await Counter.resolve("counter")          # typed proxy
    ref = await pul.resolve("counter", timeout=5)     # untyped ref
    print(await ref.as_any().inc(2), await ref.as_type(Counter).slow_get())
    async for chunk in counter.stream(3):
        print(chunk)
    await pul.shutdown()

asyncio.run(main())
