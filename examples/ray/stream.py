"""A stream between two Ray actors through Pulsing: the consumer pulls items straight from the
producer's process (backpressure, no Ray object per item). Run: `python examples/ray/stream.py`."""

import ray
import pulsing as pul


@ray.remote
class Producer:
    def __init__(self, name):
        pul.mount(self, name=name)

    async def tokens(self, text):
        for word in text.split():
            yield word.upper()


@ray.remote
class Consumer:
    def __init__(self, name):
        pul.mount(self, name=name)

    async def shout(self, producer, text):
        proxy = (await pul.resolve(producer, timeout=30)).as_any()
        return [token async for token in proxy.tokens(text)]


ray.init()
producer, consumer = Producer.remote("producer"), Consumer.remote("consumer")
print(ray.get(consumer.shout.remote("producer", "streamed between ray actors")))
pul.cleanup_ray()
