"""The raw asyncio 1 MiB echo (``bench.py``'s floor for the 1 MiB rows) on its own: how its rate
moves with idle gaps (issue #15, BENCHMARKS.md, "A second of warm-up, and large messages masked
ahead of their writes").

    pulsing-py/.venv/bin/python pulsing-py/benches/floor_modes.py [--connections 6] [--gap-ms 50]

A second process runs the asyncio echo server (``bench._Echo``). For each of several fresh
connections: 200 echoes to warm up, then 12 blocks of 20 echoes, each block's median printed as
MB/s, first back to back, then with ``--gap-ms`` of idle before each block. No Pulsing at all.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import statistics
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench  # noqa: E402  (the echo server and client the floor uses)

MIB = 1 << 20


async def serve() -> None:
    server = await asyncio.get_running_loop().create_server(bench._Echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def blocks(call, gap: float) -> "list[float]":
    rates = []
    for _ in range(12):
        if gap:
            await asyncio.sleep(gap)
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            await call(0)
            times.append(time.perf_counter() - t0)
        rates.append(MIB / statistics.median(times) / 1e6)
    return rates


async def measure(port: int, connections: int, gap: float) -> None:
    payload = os.urandom(MIB)
    for c in range(connections):
        call = await bench.asyncio_echo(port, payload)
        for _ in range(200):
            await call(0)
        for label, pause in (("back to back", 0.0), (f"{gap * 1e3:.0f} ms gaps", gap)):
            rates = await blocks(call, pause)
            print(f"connection {c}, {label:>12}: " + " ".join(f"{r:,.0f}" for r in rates) + " MB/s")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--connections", type=int, default=6)
    p.add_argument("--gap-ms", type=float, default=50.0)
    args = p.parse_args()
    if args.serve:
        asyncio.run(serve())
        return
    server = subprocess.Popen([sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        asyncio.run(measure(port, args.connections, args.gap_ms / 1e3))
    finally:
        server.stdin.close()
        server.wait(10)


if __name__ == "__main__":
    main()
