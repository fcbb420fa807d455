"""The Ray driver joins the Pulsing network with one call (`pul.init_in_ray()`) and calls
mounted actors by name: a sync actor (its Pulsing calls take turns with Ray's) and an async one.
Run: `python examples/ray/driver.py`."""

import asyncio

import ray
import pulsing as pul


@ray.remote
class Counter:  # a sync actor
    def __init__(self, name):
        pul.mount(self, name=name)
        self.value = 0

    def inc(self, by=1):
        self.value += by
        return self.value


@ray.remote
class Greeter:  # an async actor
    def __init__(self, name):
        pul.mount(self, name=name)

    async def greet(self, who):
        return f"hello, {who}"


async def main():
    counter = (await pul.resolve("counter", timeout=30)).as_any()
    greeter = (await pul.resolve("greeter", timeout=30)).as_any()
    print(await greeter.greet("driver"))
    print(await counter.inc(), await counter.inc(10))


ray.init()
actors = [Counter.remote("counter"), Greeter.remote("greeter")]
pul.init_in_ray()  # the driver joins the Pulsing cluster of this Ray cluster
asyncio.run(main())
print(ray.get(actors[0].inc.remote(100)))  # Ray's own calls see the same state
pul.cleanup_ray()
