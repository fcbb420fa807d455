"""Pulsing vs Ray, Python actors: prints medians for the workloads of issue #4.

    pulsing-py/.venv/bin/python pulsing-py/benches/bench.py          # Pulsing, then Ray
    pulsing-py/.venv/bin/python pulsing-py/benches/bench.py --no-ray # Pulsing only

Ray (``pip install ray``, only for this script) runs with ``ray.init(num_cpus=2)``. Across
processes, Pulsing's server is a second Python process on loopback (port 0).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc

import pulsing as pul
from pulsing import _targets  # its `_HOLD_REMOTE_US` decides whether a call holds the loop

SEQ_CALLS = 3000
THROUGHPUT_CALLS = 40_000
REPEATS = 5
MIB = 1 << 20
STREAM_ITEMS = 100_000


@pul.remote
class Bench:
    def ping(self, x):
        return x

    async def aping(self, x):
        return x

    async def echo(self, data):
        return data

    async def stream(self, n):
        for i in range(n):
            yield i

    def sstream(self, n):
        yield from range(n)


@pul.remote
class InlineBench:
    """A class with an ``@pul.inline`` method: all its calls from other processes go through
    its event loop (to keep them in order with the inline ones)."""

    def ping(self, x):
        return x

    @pul.inline
    def iping(self, x):
        return x


@pul.remote
class Empty:
    def ping(self):
        return None


def fmt_us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def fmt_rate(per_s: float, unit: str) -> str:
    return f"{per_s:,.0f} {unit}/s"


def med(xs):
    return statistics.median(xs)


async def seq_latency(call, n=SEQ_CALLS):
    for i in range(200):
        await call(i)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        await call(i)
        times.append(time.perf_counter() - t0)
    return med(times)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def seq_latency_cpu(call, server_pid: int, n=SEQ_CALLS):
    """Like ``seq_latency``, and the CPU per call of this process and of the server."""
    for i in range(200):
        await call(i)
    mine, theirs = time.process_time(), process_cpu(server_pid)
    latency = await seq_latency(call, n)
    mine, theirs = time.process_time() - mine, process_cpu(server_pid) - theirs
    # (200 warm-up calls ran again inside seq_latency)
    per_call = n + 200
    return f"{fmt_us(latency)}  (CPU per call: {fmt_us(mine / per_call)} caller, {fmt_us(theirs / per_call)} server)"


class _Echo(asyncio.Protocol):
    def connection_made(self, transport):
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class _EchoClient(asyncio.Protocol):
    waiter = None

    def connection_made(self, transport):
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.waiter.set_result(data)


async def asyncio_echo(port: int):
    """The floor of a call between two Python processes on asyncio alone: 40 bytes over
    loopback TCP to an asyncio echo server and back (a ``call`` for ``seq_latency``)."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(_EchoClient, "127.0.0.1", port)

    async def call(_):
        client.waiter = loop.create_future()
        transport.write(b"x" * 40)
        return await client.waiter

    return call


async def throughput(call, in_flight, total=THROUGHPUT_CALLS):
    rates = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        done = 0
        while done < total:
            await asyncio.gather(*(call(i) for i in range(in_flight)))
            done += in_flight
        rates.append(done / (time.perf_counter() - t0))
    return med(rates)


def thread_hand_off():
    """The floor of running a call on another thread: a ``SimpleQueue`` to a waiting thread, and
    ``call_soon_threadsafe`` back (what a ``def`` method costs at least, without Pulsing)."""
    loop = asyncio.get_running_loop()
    jobs: "queue.SimpleQueue" = queue.SimpleQueue()

    def work():
        while True:
            fut, x = jobs.get()
            loop.call_soon_threadsafe(fut.set_result, x)

    threading.Thread(target=work, daemon=True).start()

    async def call(x):
        fut = loop.create_future()
        jobs.put((fut, x))
        return await fut

    return call


async def serve(secret=None) -> None:
    await pul.init(addr="127.0.0.1:0", secret=secret)
    await Bench.spawn(name="bench")
    await InlineBench.spawn(name="inline")
    echo = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", 0)
    print("LISTENING", pul.local_addr(), echo.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await pul.shutdown()


async def mib_echo(remote, payload) -> str:
    """Sequential 1 MiB echoes: the rate and the time per echo (median of 30, after 3)."""
    for _ in range(3):
        await remote.echo(payload)
    times = []
    for _ in range(30):
        t0 = time.perf_counter()
        assert await remote.echo(payload) == payload
        times.append(time.perf_counter() - t0)
    return f"{MIB / med(times) / 1e6:,.0f} MB/s ({fmt_us(med(times))} per echo)"


async def pulsing_bench(results: dict) -> None:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        _, addr, echo_port = server.stdout.readline().split()
        await pul.init(addr="127.0.0.1:0", seeds=[addr])
        local = await Bench.spawn()
        remote = await Bench.resolve("bench", timeout=10)
        inline = await InlineBench.spawn()
        remote_inline = await InlineBench.resolve("inline", timeout=10)

        results["call, same process (def)"] = fmt_us(await seq_latency(local.ping))
        results["  floor: a bare hand-off to a thread and back"] = fmt_us(await seq_latency(thread_hand_off()))
        results["call, same process (async def)"] = fmt_us(await seq_latency(local.aping))
        results["call, same process (@pul.inline def)"] = fmt_us(await seq_latency(inline.iping))
        results["call, across processes (def)"] = await seq_latency_cpu(remote.ping, server.pid)
        results["call, across processes (async def)"] = await seq_latency_cpu(remote.aping, server.pid)
        hold, _targets._HOLD_REMOTE_US = _targets._HOLD_REMOTE_US, 0
        results["  async def, the loop never held (PULSING_HOLD=off)"] = await seq_latency_cpu(remote.aping, server.pid)
        _targets._HOLD_REMOTE_US = hold
        results["  floor: asyncio TCP echo between the two processes"] = fmt_us(
            await seq_latency(await asyncio_echo(int(echo_port)))
        )
        results["call, across processes (def, class with an @pul.inline method)"] = await seq_latency_cpu(
            remote_inline.ping, server.pid
        )
        for n in (64, 512):
            results[f"calls/s, {n} in flight, in-process (def)"] = fmt_rate(await throughput(local.ping, n), "calls")
            results[f"calls/s, {n} in flight, in-process (async def)"] = fmt_rate(await throughput(local.aping, n), "calls")
            results[f"calls/s, {n} in flight, across processes (def)"] = fmt_rate(await throughput(remote.ping, n, 20_000), "calls")
            results[f"calls/s, {n} in flight, across processes (async def)"] = fmt_rate(await throughput(remote.aping, n, 20_000), "calls")

        payload = os.urandom(MIB)
        results["1 MiB echo, across processes"] = await mib_echo(remote, payload)
        rates = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            await asyncio.gather(*(remote.echo(payload) for _ in range(8)))
            rates.append(8 * MIB / (time.perf_counter() - t0))
        results["1 MiB echo, across processes, 8 in flight"] = f"{med(rates) / 1e6:,.0f} MB/s"

        for method in ("stream", "sstream"):
            rates = []
            for _ in range(3):
                t0 = time.perf_counter()
                n = 0
                async for _ in getattr(remote, method)(STREAM_ITEMS):
                    n += 1
                assert n == STREAM_ITEMS
                rates.append(n / (time.perf_counter() - t0))
            kind = "async gen" if method == "stream" else "sync gen"
            results[f"100k-item stream, across processes ({kind})"] = fmt_rate(med(rates), "items")

        times, named_times, per_actor = [], [], []
        for r in range(REPEATS):
            gc.collect()
            t0 = time.perf_counter()
            actors = [await Empty.spawn() for _ in range(1000)]
            times.append(time.perf_counter() - t0)
            await actors[-1].ping()
            del actors
            gc.collect()
            t0 = time.perf_counter()
            named = [await Empty.spawn(name=f"e{r}-{i}") for i in range(1000)]
            named_times.append(time.perf_counter() - t0)
            for proxy in named:
                pul.stop(proxy)
            del named
            gc.collect()
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            actors = [await Empty.spawn() for _ in range(1000)]
            per_actor.append((tracemalloc.get_traced_memory()[0] - base) / 1000)
            tracemalloc.stop()
            del actors
        results["spawn 1,000 actors"] = f"{med(times) * 1e3:,.2f} ms, {med(per_actor):,.0f} B per actor (Python heap)"
        results["spawn 1,000 named actors (registered in the runtime)"] = f"{med(named_times) * 1e3:,.2f} ms"
        await pul.shutdown()
    finally:
        server.stdin.close()
        server.wait(10)
    await encrypted_rows(results)


async def encrypted_rows(results: dict) -> None:
    """The across-process rows again with a cluster secret: Noise handshake, AES-GCM records."""
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--secret", "bench"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        _, addr, _ = server.stdout.readline().split()
        await pul.init(addr="127.0.0.1:0", seeds=[addr], secret="bench")
        remote = await Bench.resolve("bench", timeout=10)
        tag = "encrypted: "
        results[tag + "call, across processes (def)"] = await seq_latency_cpu(remote.ping, server.pid)
        results[tag + "call, across processes (async def)"] = await seq_latency_cpu(remote.aping, server.pid)
        for n in (64, 512):
            results[tag + f"calls/s, {n} in flight, across processes (def)"] = fmt_rate(
                await throughput(remote.ping, n, 20_000), "calls"
            )
        results[tag + "1 MiB echo, across processes"] = await mib_echo(remote, os.urandom(MIB))
        rates = []
        for _ in range(3):
            t0 = time.perf_counter()
            n = 0
            async for _ in remote.stream(STREAM_ITEMS):
                n += 1
            rates.append(n / (time.perf_counter() - t0))
        results[tag + "100k-item stream, across processes (async gen)"] = fmt_rate(med(rates), "items")
        await pul.shutdown()
    finally:
        server.stdin.close()
        server.wait(10)


def ray_bench(results: dict) -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)

    @ray.remote
    class RayBench:
        def ping(self, x):
            return x

        def echo(self, data):
            return data

        def stream(self, n):
            for i in range(n):
                yield i

    @ray.remote
    class RayAsyncBench:
        async def aping(self, x):
            return x

    a = RayBench.remote()
    b = RayAsyncBench.remote()
    ray.get(a.ping.remote(0))
    ray.get(b.aping.remote(0))

    def seq(fn, n=1000):
        for i in range(50):
            ray.get(fn.remote(i))
        ts = []
        for i in range(n):
            t0 = time.perf_counter()
            ray.get(fn.remote(i))
            ts.append(time.perf_counter() - t0)
        return med(ts)

    results["call, same process (def)"] = "n/a"
    results["call, same process (async def)"] = "n/a"
    results["call, same process (@pul.inline def)"] = "n/a"
    results["call, across processes (def)"] = fmt_us(seq(a.ping))
    results["call, across processes (async def)"] = fmt_us(seq(b.aping))
    for n in (64, 512):
        for label, fn in (("def", a.ping), ("async def", b.aping)):
            rates = []
            for _ in range(3):
                t0 = time.perf_counter()
                done = 0
                while done < 5000:
                    ray.get([fn.remote(i) for i in range(n)])
                    done += n
                rates.append(done / (time.perf_counter() - t0))
            results[f"calls/s, {n} in flight, in-process ({label})"] = "n/a"
            results[f"calls/s, {n} in flight, across processes ({label})"] = fmt_rate(med(rates), "calls")

    payload = os.urandom(MIB)
    ray.get(a.echo.remote(payload))
    ts = []
    for _ in range(30):
        t0 = time.perf_counter()
        back = ray.get(a.echo.remote(payload))
        ts.append(time.perf_counter() - t0)
    assert back == payload
    results["1 MiB echo, across processes"] = f"{MIB / med(ts) / 1e6:,.0f} MB/s ({fmt_us(med(ts))} per echo)"
    rates = []
    for _ in range(5):
        t0 = time.perf_counter()
        ray.get([a.echo.remote(payload) for _ in range(8)])
        rates.append(8 * MIB / (time.perf_counter() - t0))
    results["1 MiB echo, across processes, 8 in flight"] = f"{med(rates) / 1e6:,.0f} MB/s"

    t0 = time.perf_counter()
    n = 0
    for ref in a.stream.options(num_returns="streaming").remote(STREAM_ITEMS):
        ray.get(ref)
        n += 1
    assert n == STREAM_ITEMS
    results["100k-item stream, across processes (sync gen)"] = fmt_rate(n / (time.perf_counter() - t0), "items")
    results["100k-item stream, across processes (async gen)"] = "see sync gen"
    results["spawn 1,000 actors"] = "n/a (one process per actor)"
    results["spawn 1,000 named actors (registered in the runtime)"] = "n/a"
    ray.shutdown()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--secret", default=None, help=argparse.SUPPRESS)
    p.add_argument("--no-ray", action="store_true")
    args = p.parse_args()
    if args.serve:
        asyncio.run(serve(args.secret))
        return
    pulsing_results: dict = {}
    asyncio.run(pulsing_bench(pulsing_results))
    ray_results: dict = {}
    if not args.no_ray:
        try:
            ray_bench(ray_results)
        except ImportError:
            print("(ray is not installed: pip install ray)")
    width = max(len(k) for k in pulsing_results)
    col = max(len(v) for v in pulsing_results.values())
    print(f"\n{'workload':<{width}}  {'pulsing ' + pul.__version__:<{col}}  ray")
    for key, value in pulsing_results.items():
        print(f"{key:<{width}}  {value:<{col}}  {ray_results.get(key, '')}")


if __name__ == "__main__":
    main()
