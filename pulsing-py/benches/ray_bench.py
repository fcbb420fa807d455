"""The Ray bridge (issue #13): a call between two Ray actors through Pulsing vs through a plain
Ray handle, and a 100k-item stream between two mounted actors.

    pulsing-py/.venv/bin/python pulsing-py/benches/ray_bench.py

Starts Ray (``ray.init(num_cpus=2)``) and two async Ray actors in their own processes, both
``pul.mount``-ed. The client actor measures, in one run, each workload ``REPEATS`` times:
sequential latency (median of per-call times) and 64-in-flight throughput of ``greet(msg)``,
once through Pulsing (``await proxy.greet(msg)``) and once through Ray
(``await handle.greet.remote(msg)``), then a stream of 100k ints from the server's async
generator through Pulsing, beside 5k items of a Ray streaming generator
(``num_returns="streaming"``) and the same 100k stream between two plain Pulsing processes
(this script and a child, with a secret: what the bridge adds). Prints per-repeat figures, then medians, ranges and ratios.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time

import ray

import pulsing as pul

REPEATS = 3
PUL_SEQ, RAY_SEQ = 5_000, 1_000
PUL_TPUT, RAY_TPUT = 50_000, 5_000
IN_FLIGHT = 64
STREAM_ITEMS = 100_000
RAY_STREAM_ITEMS = 5_000


@ray.remote(num_cpus=0)
class Server:
    def __init__(self, name):
        pul.mount(self, name=name)

    async def greet(self, msg):
        return msg

    async def numbers(self, n):
        for i in range(n):
            yield i

    async def ray_numbers(self, n):  # a Ray streaming generator (the baseline)
        for i in range(n):
            yield i


async def items_per_second(stream, n: int) -> float:
    """Items per second of consuming ``stream``, which must yield exactly ``n`` items."""
    t = time.perf_counter()
    count = 0
    async for _ in stream:
        count += 1
    assert count == n
    return n / (time.perf_counter() - t)


@ray.remote(num_cpus=0)
class Client:
    def __init__(self, name, server_name, server_handle):
        pul.mount(self, name=name)
        self.server_name = server_name
        self.handle = server_handle
        self.proxy = None

    async def _proxy(self):
        if self.proxy is None:
            self.proxy = (await pul.resolve(self.server_name, timeout=30)).as_any()
        return self.proxy

    def _call(self, via):
        if via == "pulsing":
            greet = self.proxy.greet
            return lambda msg: greet(msg)
        greet = self.handle.greet
        return lambda msg: greet.remote(msg)

    async def sequential(self, via, n):
        """Median seconds per call, one call at a time."""
        await self._proxy()
        call = self._call(via)
        for _ in range(min(n // 10, 200)):  # warm up
            await call("warm")
        times = []
        for _ in range(n):
            t = time.perf_counter()
            await call("hi")
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    async def throughput(self, via, n, in_flight):
        """Calls per second with ``in_flight`` calls outstanding."""
        await self._proxy()
        call = self._call(via)
        await asyncio.gather(*(call("warm") for _ in range(in_flight)))
        per_task = n // in_flight

        async def worker():
            for _ in range(per_task):
                await call("hi")

        t = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return per_task * in_flight / (time.perf_counter() - t)

    async def stream(self, n):
        """Items per second of a stream of ``n`` ints from the server."""
        proxy = await self._proxy()
        return await items_per_second(proxy.numbers(n), n)

    async def ray_stream(self, n):
        """Items per second of a Ray streaming generator of ``n`` ints from the server."""
        async def items():
            async for ref in self.handle.ray_numbers.options(num_returns="streaming").remote(n):
                yield await ref

        return await items_per_second(items(), n)


@pul.remote
class PlainServer:
    async def numbers(self, n):
        for i in range(n):
            yield i


def plain_server(secret: str) -> None:
    """The baseline's server: a plain Pulsing process (no Ray), until stdin closes."""

    async def serve():
        await pul.init("127.0.0.1:0", secret=secret)
        await PlainServer.spawn(name="plain")
        print(pul.local_addr(), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

    asyncio.run(serve())


async def plain_stream(n: int) -> float:
    proxy = (await pul.resolve("plain", timeout=30)).as_any()
    return await items_per_second(proxy.numbers(n), n)


def fmt_rate(x):
    return f"{x / 1000:,.1f}k/s"


def fmt_us(x):
    return f"{x * 1e6:,.0f} µs"


def main():
    # The baseline of the stream: the same stream between two plain Pulsing processes (this
    # script and a child), with a secret as in Ray (encrypted), measured in each repeat.
    secret = os.urandom(16).hex()
    child = subprocess.Popen([sys.executable, __file__, "--plain-server", secret],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pul.init("127.0.0.1:0", seeds=[child.stdout.readline().strip()], secret=secret)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    server = Server.remote("bench-server")
    client = Client.remote("bench-client", "bench-server", server)
    results = {k: [] for k in ("pul_seq", "ray_seq", "pul_tput", "ray_tput", "stream", "ray_stream", "plain")}
    for r in range(REPEATS):
        row = {
            "pul_seq": ray.get(client.sequential.remote("pulsing", PUL_SEQ)),
            "ray_seq": ray.get(client.sequential.remote("ray", RAY_SEQ)),
            "pul_tput": ray.get(client.throughput.remote("pulsing", PUL_TPUT, IN_FLIGHT)),
            "ray_tput": ray.get(client.throughput.remote("ray", RAY_TPUT, IN_FLIGHT)),
            "stream": ray.get(client.stream.remote(STREAM_ITEMS)),
            "ray_stream": ray.get(client.ray_stream.remote(RAY_STREAM_ITEMS)),
            "plain": asyncio.run(plain_stream(STREAM_ITEMS)),
        }
        for k, v in row.items():
            results[k].append(v)
        print(f"repeat {r + 1}: sequential pulsing {fmt_us(row['pul_seq'])}, ray {fmt_us(row['ray_seq'])}; "
              f"{IN_FLIGHT} in flight pulsing {fmt_rate(row['pul_tput'])}, ray {fmt_rate(row['ray_tput'])}; "
              f"stream pulsing {fmt_rate(row['stream'])}, ray {fmt_rate(row['ray_stream'])}, "
              f"plain processes {fmt_rate(row['plain'])}", flush=True)

    med = {k: statistics.median(v) for k, v in results.items()}

    def rng(k, f):
        return f"{f(min(results[k]))} – {f(max(results[k]))}"

    print()
    print(f"Between two Ray actors (Ray 2.60, ray.init(num_cpus=2)); medians of {REPEATS} repeats [range]:")
    print(f"  sequential call   pulsing {fmt_us(med['pul_seq']):>9} [{rng('pul_seq', fmt_us)}]   "
          f"ray handle {fmt_us(med['ray_seq']):>9} [{rng('ray_seq', fmt_us)}]   "
          f"ratio {med['ray_seq'] / med['pul_seq']:.1f}x (goal >= 10x)")
    print(f"  {IN_FLIGHT} in flight      pulsing {fmt_rate(med['pul_tput']):>9} [{rng('pul_tput', fmt_rate)}]   "
          f"ray handle {fmt_rate(med['ray_tput']):>9} [{rng('ray_tput', fmt_rate)}]   "
          f"ratio {med['pul_tput'] / med['ray_tput']:.1f}x (goal >= 10x)")
    print(f"  stream            pulsing {fmt_rate(med['stream']):>9} [{rng('stream', fmt_rate)}]   "
          f"ray generator {fmt_rate(med['ray_stream']):>7} [{rng('ray_stream', fmt_rate)}]   "
          f"ratio {med['stream'] / med['ray_stream']:.0f}x (goal >= 300k/s)")
    print(f"                    same stream between two plain Pulsing processes (no Ray) "
          f"{fmt_rate(med['plain'])} [{rng('plain', fmt_rate)}]: "
          f"ratio {med['stream'] / med['plain']:.2f}")
    pul.cleanup_ray()  # also shuts this process's (baseline) Pulsing down
    ray.shutdown()
    child.stdin.close()
    child.wait(10)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--plain-server"]:
        plain_server(sys.argv[2])
    else:
        main()
