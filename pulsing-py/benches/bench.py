"""Pulsing vs Ray, Python actors: every latency row beside a floor measured in the same run.

    pulsing-py/.venv/bin/python pulsing-py/benches/bench.py          # Pulsing, then Ray
    pulsing-py/.venv/bin/python pulsing-py/benches/bench.py --no-ray # Pulsing only
    pulsing-py/.venv/bin/python pulsing-py/benches/bench.py --no-ray --busy  # with `yes > /dev/null`
    pulsing-py/.venv/bin/python pulsing-py/benches/bench.py --no-ray --only mib  # the 1 MiB rows
    pulsing-py/.venv/bin/python pulsing-py/benches/bench.py --no-ray --only calls  # the call rows

Latencies on a small VM swing threefold with host load, so each latency row is measured in
blocks that alternate with its floor (same moment, same processes) and printed as a ratio to it,
with the CPU per call of caller and server (the server's from ``/proc/<pid>/task/*/schedstat``,
nanoseconds) beside the floor's. Floors: an asyncio TCP echo between the same two processes (a
call across processes), a raw asyncio 1 MiB echo (the 1 MiB rows), a bare thread hand-off
(``SimpleQueue`` + ``call_soon_threadsafe``: a same-process ``def`` call). ``--busy`` keeps one
CPU busy with ``yes > /dev/null`` for the whole run. ``--json FILE`` appends the figures. Each
row warms up for a second first (``WARM_UP_S``), and prints "moves": how often the threads of
caller (+ server) moved between CPUs during its measured blocks, the row's and its floor's.

Ray (``pip install ray``, only for this script) runs with ``ray.init(num_cpus=2)``. Across
processes, Pulsing's server is a second Python process on loopback (port 0).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import queue
import resource
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
BLOCKS = 6  # a latency row and its floor alternate in this many blocks
# Each row warms up (alternating with its floor) for at least this long. For about a second
# after a process starts a thread (the first `def` call starts a worker), Linux keeps moving
# the threads of both processes between the two vCPUs: 80-750 migrations of each loop thread
# over a row's 3,000 calls and 3,000 floor echoes, against 0-15 afterwards (2026-12-05; each
# row prints its "moves"). A row measured then shows the migrations, not the call: 1.22-1.59x
# against 1.09-1.19x for the same row a moment later. 200 calls, the warm-up before, took 20 ms.
WARM_UP_S = 1.0
THROUGHPUT_CALLS = 40_000
REPEATS = 5
MIB = 1 << 20
STREAM_ITEMS = 100_000
FIGURES: dict = {}  # machine-readable figures of this run (--json)
ONLY = None  # --only mib: just the 1 MiB echo rows (plain, 8 in flight, encrypted); calls: the call rows


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


def process_cpu(pid: int) -> float:
    """CPU seconds of process ``pid`` so far: the sum of its live threads' run time from
    ``/proc/<pid>/task/*/schedstat`` (nanoseconds; ``/proc/<pid>/stat`` counts 10 ms ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # a thread that just ended
    return total / 1e9


def thread_migrations(pid: int) -> "dict | None":
    """How often each thread of process ``pid`` moved between CPUs so far, by thread id
    (``se.nr_migrations`` in ``/proc/<pid>/task/*/sched``); None where the kernel does not show
    it (built without ``CONFIG_SCHED_DEBUG``) or ``/proc`` is missing."""
    counts = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/sched") as f:
                line = next((line for line in f if line.startswith("se.nr_migrations")), None)
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that just ended
        if line is None:
            return None
        counts[tid] = int(float(line.split(":")[1]))
    return counts or None


def moved_since(before: "dict | None", pid: int) -> "int | None":
    """Migrations since ``before`` (``thread_migrations``) of the threads alive at both ends."""
    after = thread_migrations(pid) if before is not None else None
    if after is None:
        return None
    return sum(after[tid] - before[tid] for tid in before.keys() & after.keys())


def process_faults(pid: "int | None") -> int:
    """Page faults (minor + major) of process ``pid`` so far (``None``: this process)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_minflt + usage.ru_majflt
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[7]) + int(fields[9])  # minflt, majflt (fields 10 and 12 of stat)


class Cost:
    """Latency (median per call) and CPU per call of caller and server, over many blocks."""

    def __init__(self) -> None:
        self.times: list = []
        self.caller = 0.0
        self.server = 0.0
        self.faults = [0, 0]  # page faults of caller and server
        self.migrations: list = [0, 0]  # threads moved between CPUs, caller and server (None: n/a)

    async def block(self, call, n, server_pid) -> None:
        # Before the CPU readings: reading every thread's `sched` file is not the call's CPU.
        moved = thread_migrations(os.getpid()), thread_migrations(server_pid) if server_pid else None
        mine, theirs = time.process_time(), process_cpu(server_pid) if server_pid else 0.0
        faults = process_faults(None), process_faults(server_pid) if server_pid else 0
        for i in range(n):
            t0 = time.perf_counter()
            await call(i)
            self.times.append(time.perf_counter() - t0)
        self.caller += time.process_time() - mine
        self.faults[0] += process_faults(None) - faults[0]
        if server_pid:
            self.server += process_cpu(server_pid) - theirs
            self.faults[1] += process_faults(server_pid) - faults[1]
        for side, pid in enumerate((os.getpid(), server_pid)):
            if pid:
                since = moved_since(moved[side], pid)
                known = since is not None and self.migrations[side] is not None
                self.migrations[side] = self.migrations[side] + since if known else None

    @property
    def latency(self) -> float:
        return med(self.times)

    def cpu(self) -> "tuple[float, float]":
        n = len(self.times)
        return self.caller / n, self.server / n

    def faults_per_call(self) -> "tuple[float, float]":
        n = len(self.times)
        return self.faults[0] / n, self.faults[1] / n


async def paired(call, floor, server_pid=None, n=SEQ_CALLS) -> "tuple[Cost, Cost]":
    """``call`` and its ``floor`` measured in alternating blocks, after a warm-up of both (at
    least 200 of each, alternating, for at least ``WARM_UP_S``)."""
    start, i = time.perf_counter(), 0
    while i < 200 or time.perf_counter() - start < WARM_UP_S:
        await call(i)
        await floor(i)
        i += 1
    costs = Cost(), Cost()
    for _ in range(BLOCKS):
        await costs[0].block(call, n // BLOCKS, server_pid)
        await costs[1].block(floor, n // BLOCKS, server_pid)
    return costs


def row(name: str, cost: Cost, floor: Cost, *, server: bool, unit=None) -> str:
    """One latency row: the figure, its ratio to the floor (for a rate row, ``unit``, our rate over
    the floor's), CPU per call (caller+server) and its ratio to the floor's."""
    (c, s), (fc, fs) = cost.cpu(), floor.cpu()
    # a rate row (``unit``: MB/s) compares rates, so its ratio is the floor's time over ours
    ratio = cost.latency / floor.latency if unit is None else floor.latency / cost.latency
    cpu_ratio = (c + s) / (fc + fs)
    FIGURES[name] = {
        "latency_us": cost.latency * 1e6,
        "floor_us": floor.latency * 1e6,
        "ratio": ratio,
        "cpu_caller_us": c * 1e6,
        "cpu_server_us": s * 1e6,
        "floor_cpu_caller_us": fc * 1e6,
        "floor_cpu_server_us": fs * 1e6,
        "cpu_ratio": cpu_ratio,
    }
    shown = fmt_us(cost.latency) if unit is None else unit(cost.latency)
    floor_shown = fmt_us(floor.latency) if unit is None else unit(floor.latency)
    cpu = f"{c * 1e6:,.0f}+{s * 1e6:,.0f}" if server else f"{c * 1e6:,.0f}"
    fcpu = f"{fc * 1e6:,.0f}+{fs * 1e6:,.0f}" if server else f"{fc * 1e6:,.0f}"
    text = (
        f"{shown} = {ratio:.2f}× floor ({floor_shown}); "
        f"CPU/call {cpu} µs = {cpu_ratio:.2f}× floor's ({fcpu})"
    )
    moved = [None if a is None or b is None else a + b for a, b in zip(cost.migrations, floor.migrations)]
    FIGURES[name]["migrations"] = moved
    shown = ["n/a" if m is None else f"{m:,}" for m in moved]
    text += f"; moves {shown[0]}+{shown[1]}" if server else f"; moves {shown[0]}"
    if unit is not None:  # the large-message rows: page faults per call too
        (pc, ps), (pfc, pfs) = cost.faults_per_call(), floor.faults_per_call()
        FIGURES[name].update(faults_caller=pc, faults_server=ps, floor_faults_caller=pfc, floor_faults_server=pfs)
        text += f"; faults/call {pc:,.0f}+{ps:,.0f} (floor's {pfc:,.0f}+{pfs:,.0f})"
    return text


class _Echo(asyncio.Protocol):
    def connection_made(self, transport):
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class _EchoWhole(asyncio.Protocol):
    """An echo that answers each 1 MiB only once all of it is in, as an actor call must (the
    streaming ``_Echo`` sends each piece back as it comes, overlapping both directions)."""

    def connection_made(self, transport):
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport = transport
        self.chunks: list = []
        self.got = 0

    def data_received(self, data):
        self.chunks.append(data)
        self.got += len(data)
        if self.got >= MIB:
            self.transport.write(b"".join(self.chunks))
            self.chunks, self.got = [], 0


class _EchoClient(asyncio.Protocol):
    """Completes ``waiter`` once ``expect`` bytes came back (joined into one ``bytes``)."""

    waiter = None
    expect = 0

    def connection_made(self, transport):
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.chunks: list = []
        self.got = 0

    def data_received(self, data):
        self.chunks.append(data)
        self.got += len(data)
        if self.got >= self.expect:
            data = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
            self.chunks, self.got = [], 0
            self.waiter.set_result(data)


async def asyncio_echo(port: int, payload: bytes = b"x" * 40):
    """The floor of a call between two Python processes on asyncio alone: ``payload`` over
    loopback TCP to an asyncio echo server and back (a ``call`` for ``paired``)."""
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(_EchoClient, "127.0.0.1", port)
    client.expect = len(payload)

    async def call(_):
        client.waiter = loop.create_future()
        transport.write(payload)
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
    whole = await asyncio.get_running_loop().create_server(_EchoWhole, "127.0.0.1", 0)
    ports = echo.sockets[0].getsockname()[1], whole.sockets[0].getsockname()[1]
    print("LISTENING", pul.local_addr(), *ports, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await pul.shutdown()


def mib_rate(seconds: float) -> str:
    return f"{MIB / seconds / 1e6:,.0f} MB/s"


async def mib_echo(remote, echo_port, server_pid) -> "tuple[Cost, Cost]":
    """Sequential 1 MiB echoes through Pulsing and through raw asyncio (120 of each in six
    alternating blocks, after a warm-up (``paired``); 36 before 2026-12-05 left the floor's median
    swinging 0.9-2.3 GB/s between runs)."""
    payload = os.urandom(MIB)
    floor = await asyncio_echo(echo_port, payload)

    async def call(_):
        assert await remote.echo(payload) == payload

    async def raw(_):
        assert await floor(0) == payload

    return await paired(call, raw, server_pid, n=120)


async def raw_whole_echo(echo_port, whole_port, server_pid) -> "tuple[Cost, Cost]":
    """Not Pulsing: raw asyncio echoing each 1 MiB once all of it is in (what any actor call
    does: a method runs on its whole argument), against the streaming floor. The ratio is the
    most a call can reach against that floor, whatever its transport."""
    payload = os.urandom(MIB)
    floor, whole = await asyncio_echo(echo_port, payload), await asyncio_echo(whole_port, payload)

    async def answered_whole(_):
        assert await whole(0) == payload

    async def raw(_):
        assert await floor(0) == payload

    return await paired(answered_whole, raw, server_pid, n=120)


async def stream_rate(remote, method: str) -> float:
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        n = 0
        async for _ in getattr(remote, method)(STREAM_ITEMS):
            n += 1
        assert n == STREAM_ITEMS
        rates.append(n / (time.perf_counter() - t0))
    return med(rates)


def start_server(*extra):
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", *extra], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    _, addr, echo_port, whole_port = server.stdout.readline().split()
    return server, addr, int(echo_port), int(whole_port)


async def call_rows(results, local, remote, inline, remote_inline, hand_off, tcp, server_pid) -> None:
    """The latency and calls/s rows (all but the 1 MiB, stream and spawn rows)."""
    for label, call in (
        ("call, same process (def)", local.ping),
        ("call, same process (async def)", local.aping),
        ("call, same process (@pul.inline def)", inline.iping),
    ):
        cost, floor = await paired(call, hand_off)
        results[label] = row(label, cost, floor, server=False)
    for label, call in (
        ("call, across processes (def)", remote.ping),
        ("call, across processes (async def)", remote.aping),
        ("call, across processes (def, class with an @pul.inline method)", remote_inline.ping),
    ):
        cost, floor = await paired(call, tcp, server_pid)
        results[label] = row(label, cost, floor, server=True)
    hold, _targets._HOLD_REMOTE_US = _targets._HOLD_REMOTE_US, 0
    label = "  async def, the loop never held (PULSING_HOLD=off)"
    cost, floor = await paired(remote.aping, tcp, server_pid)
    results[label] = row(label, cost, floor, server=True)
    _targets._HOLD_REMOTE_US = hold

    for n in (64, 512):
        for kind, target, total in (
            ("in-process (def)", local.ping, THROUGHPUT_CALLS),
            ("in-process (async def)", local.aping, THROUGHPUT_CALLS),
            ("across processes (def)", remote.ping, 20_000),
            ("across processes (async def)", remote.aping, 20_000),
        ):
            label = f"calls/s, {n} in flight, {kind}"
            rate = await throughput(target, n, total)
            FIGURES[label] = rate
            results[label] = fmt_rate(rate, "calls")


async def other_rows(results, remote) -> None:
    """The stream and spawn rows."""
    for method, kind in (("stream", "async gen"), ("sstream", "sync gen")):
        label = f"100k-item stream, across processes ({kind})"
        FIGURES[label] = rate = await stream_rate(remote, method)
        results[label] = fmt_rate(rate, "items")

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


async def pulsing_bench(results: dict) -> None:
    server, addr, echo_port, whole_port = start_server()
    try:
        await pul.init(addr="127.0.0.1:0", seeds=[addr])
        local = await Bench.spawn()
        remote = await Bench.resolve("bench", timeout=10)
        inline = await InlineBench.spawn()
        remote_inline = await InlineBench.resolve("inline", timeout=10)
        hand_off = thread_hand_off()
        tcp = await asyncio_echo(echo_port)
        if ONLY != "mib":
            await call_rows(results, local, remote, inline, remote_inline, hand_off, tcp, server.pid)

        if ONLY != "calls":
            label = "1 MiB echo, across processes"
            cost, floor = await mib_echo(remote, echo_port, server.pid)
            results[label] = row(label, cost, floor, server=True, unit=mib_rate)
            FIGURES[label]["MB_s"] = MIB / cost.latency / 1e6
            payload = os.urandom(MIB)
            rates = []
            for _ in range(REPEATS):
                t0 = time.perf_counter()
                await asyncio.gather(*(remote.echo(payload) for _ in range(8)))
                rates.append(8 * MIB / (time.perf_counter() - t0))
            results["1 MiB echo, across processes, 8 in flight"] = f"{med(rates) / 1e6:,.0f} MB/s"
            label = "(raw asyncio answering whole messages: 1 MiB echo)"
            cost, floor = await raw_whole_echo(echo_port, whole_port, server.pid)
            results[label] = row(label, cost, floor, server=True, unit=mib_rate)

            if ONLY != "mib":
                await other_rows(results, remote)
        await pul.shutdown()
    finally:
        server.stdin.close()
        server.wait(10)
    if ONLY != "calls":
        await encrypted_rows(results)


async def encrypted_rows(results: dict) -> None:
    """The across-process rows again with a cluster secret: Noise handshake, AES-GCM records."""
    server, addr, echo_port, _ = start_server("--secret", "bench")
    try:
        await pul.init(addr="127.0.0.1:0", seeds=[addr], secret="bench")
        remote = await Bench.resolve("bench", timeout=10)
        tcp = await asyncio_echo(echo_port)
        tag = "encrypted: "
        if ONLY != "mib":
            for label, call in (("call, across processes (def)", remote.ping), ("call, across processes (async def)", remote.aping)):
                cost, floor = await paired(call, tcp, server.pid)
                results[tag + label] = row(tag + label, cost, floor, server=True)
            for n in (64, 512):
                label = tag + f"calls/s, {n} in flight, across processes (def)"
                FIGURES[label] = rate = await throughput(remote.ping, n, 20_000)
                results[label] = fmt_rate(rate, "calls")
        label = tag + "1 MiB echo, across processes"
        cost, floor = await mib_echo(remote, echo_port, server.pid)
        results[label] = row(label, cost, floor, server=True, unit=mib_rate)
        if ONLY != "mib":
            label = tag + "100k-item stream, across processes (async gen)"
            FIGURES[label] = rate = await stream_rate(remote, "stream")
            results[label] = fmt_rate(rate, "items")
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
    p.add_argument("--busy", action="store_true", help="keep one CPU busy (`yes > /dev/null`)")
    p.add_argument("--json", default=None, help="append this run's figures to FILE (one line)")
    p.add_argument(
        "--only", choices=["mib", "calls"], default=None,
        help="mib: only the 1 MiB echo rows; calls: only the call rows (quick A/Bs)",
    )
    args = p.parse_args()
    global ONLY
    ONLY = args.only
    if args.serve:
        asyncio.run(serve(args.secret))
        return
    busy = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) if args.busy else None
    try:
        pulsing_results: dict = {}
        asyncio.run(pulsing_bench(pulsing_results))
        ray_results: dict = {}
        if not args.no_ray:
            try:
                ray_bench(ray_results)
            except ImportError:
                print("(ray is not installed: pip install ray)")
    finally:
        if busy is not None:
            busy.kill()
            busy.wait()
    load = os.getloadavg()[0]
    hold = os.environ.get("PULSING_HOLD", "on")
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, busy={args.busy}, PULSING_HOLD={hold}, load (1 min) {load:.2f}")
    width = max(len(k) for k in pulsing_results)
    col = max(len(v) for v in pulsing_results.values())
    print(f"{'workload':<{width}}  {'pulsing ' + pul.__version__:<{col}}  ray")
    for key, value in pulsing_results.items():
        print(f"{key:<{width}}  {value:<{col}}  {ray_results.get(key, '')}")
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps({"time": time.time(), "busy": args.busy, "hold": hold, "load": load, "figures": FIGURES}) + "\n")


if __name__ == "__main__":
    main()
