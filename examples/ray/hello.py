"""The Ray bridge in one file (issue #13's example, verbatim): three Ray actors join the Pulsing
network with `pul.mount` and call each other directly. Run: `python examples/ray/hello.py`."""

import ray
import pulsing as pul

@ray.remote
class Worker:
    def __init__(self, name):
        pul.mount(self, name=name)          # one line: join the Pulsing network

    async def call_peer(self, peer_name, msg):
        proxy = (await pul.resolve(peer_name, timeout=30)).as_any()
        return await proxy.greet(msg)      # direct Pulsing call to another Ray actor's process

    async def greet(self, msg):
        return f"hello: {msg}"

ray.init()
workers = [Worker.remote(f"w{i}") for i in range(3)]
ray.get(workers[0].call_peer.remote("w1", "hi"))  # => "hello: hi"
pul.cleanup_ray()
