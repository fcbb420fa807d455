"""Sequential (or ``--inflight N``) byte-string echoes to a Python actor in another process:
rate, CPU per echo of both processes and page faults per echo, over many more echoes than
``bench.py``'s 1 MiB row (for A/B runs of two builds; BENCHMARKS.md, issue #15).

    pulsing-py/.venv/bin/python pulsing-py/benches/mib_soak.py [--n 600] [--size 1048576] [--inflight 1]

The server is ``bench.py --serve`` (its ``Bench.echo``, an ``async def``). CPU: this process's
``time.process_time()``, the server's ``/proc/<pid>/task/*/schedstat``; faults: minor + major.
``--pause S`` prints both pids and waits S seconds before measuring (to attach ``perf``).
"""

import argparse
import asyncio
import os
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench  # noqa: E402  (the server, the Bench class, the CPU and fault readers)

import pulsing as pul  # noqa: E402


async def main(n: int, size: int, inflight: int, pause: float) -> None:
    server, addr, _, _ = bench.start_server()
    try:
        await pul.init(addr="127.0.0.1:0", seeds=[addr])
        remote = await bench.Bench.resolve("bench", timeout=10)
        payload = os.urandom(size)
        for _ in range(20):
            assert await remote.echo(payload) == payload
        if pause:
            print("PIDS", os.getpid(), server.pid, flush=True)
            await asyncio.sleep(pause)
        cpu = time.process_time(), bench.process_cpu(server.pid)
        faults = bench.process_faults(None), bench.process_faults(server.pid)
        t0 = time.perf_counter()
        for _ in range(n // inflight):
            outs = await asyncio.gather(*(remote.echo(payload) for _ in range(inflight)))
        dt = time.perf_counter() - t0
        c, s = time.process_time() - cpu[0], bench.process_cpu(server.pid) - cpu[1]
        f, g = bench.process_faults(None) - faults[0], bench.process_faults(server.pid) - faults[1]
        assert all(o == payload for o in outs)
        print(
            f"{n} echoes of {size} B, {inflight} in flight: {n * size / dt / 1e6:,.0f} MB/s, "
            f"{dt / n * 1e6:,.0f} µs/echo, CPU/echo {c / n * 1e6:,.0f}+{s / n * 1e6:,.0f} µs, "
            f"faults/echo {f / n:,.1f}+{g / n:,.1f}"
        )
        await pul.shutdown()
    finally:
        server.stdin.close()
        server.wait(10)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--size", type=int, default=1 << 20)
    p.add_argument("--inflight", type=int, default=1)
    p.add_argument("--pause", type=float, default=0)
    a = p.parse_args()
    asyncio.run(main(a.n, a.size, a.inflight, a.pause))
