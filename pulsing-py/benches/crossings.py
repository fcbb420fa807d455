"""Thread wake-ups per call, and the floor with and without Pulsing's loop (issue #15).

``crossings.py [def|async]``: 5,000 sequential calls from this process to an actor in another
one; prints the context switches per call of every thread of both processes (their
``voluntary_ctxt_switches`` + ``nonvoluntary_ctxt_switches``), by thread. Run it with
``PULSING_DRIVE=off`` or ``PULSING_SPIN_US=0`` to compare the alternatives (docs/python.md).

``crossings.py floor``: an asyncio TCP echo (16 bytes, 5 blocks of 2,000) between two plain
processes, then between two whose loops Pulsing wraps (``_selector.DrivingSelector``): the
floor ``bench.py`` measures runs in wrapped loops, and this shows what that does to it.
"""

from __future__ import annotations

import asyncio
import collections
import glob
import os
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import bench  # noqa: E402  (the actor and the echo server bench.py measures)

import pulsing as pul  # noqa: E402
from pulsing import _bridge  # noqa: E402


def switches(pid: int) -> collections.Counter:
    out: collections.Counter = collections.Counter()
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(status) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            continue
        name = next(line.split()[1] for line in lines if line.startswith("Name:"))
        tid = status.split("/")[4]
        out[f"{name}-{tid}"] += sum(int(line.split()[1]) for line in lines if "ctxt_switches" in line)
    return out


async def serve(kind: str) -> None:
    if kind == "calls":
        await pul.init(addr="127.0.0.1:0")
        await bench.Bench.spawn(name="target")
        print(pul.local_addr(), flush=True)
    else:
        if kind == "wrapped":
            await pul.init()
            _bridge.running_bridge()
        server = await asyncio.get_running_loop().create_server(bench._Echo, "127.0.0.1", 0)
        print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def start(kind: str) -> "tuple[subprocess.Popen, str]":
    p = subprocess.Popen([sys.executable, __file__, "--serve", kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return p, p.stdout.readline().strip()


async def calls(method: str, n: int = 5000) -> None:
    server, addr = start("calls")
    await pul.init(addr="127.0.0.1:0", seeds=[addr])
    target = await bench.Bench.resolve("target", timeout=20)
    call = target.ping if method == "def" else target.aping
    for i in range(500):
        await call(i)
    mine0, theirs0 = switches(os.getpid()), switches(server.pid)
    for i in range(n):
        await call(i)
    mine1, theirs1 = switches(os.getpid()), switches(server.pid)
    per = lambda a, b: {k: round((b[k] - a[k]) / n, 2) for k in b if b[k] - a[k]}  # noqa: E731
    print(f"{method}: caller {per(mine0, mine1)}; server {per(theirs0, theirs1)}")
    await pul.shutdown()
    server.stdin.close()
    server.wait()


async def echo(kind: str) -> None:
    server, port = start(kind)
    if kind == "wrapped":
        await pul.init()
        _bridge.running_bridge()
    reader, writer = await asyncio.open_connection("127.0.0.1", int(port))
    blocks = []
    for _ in range(5):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(2000):
            writer.write(b"x" * 16)
            await reader.readexactly(16)
        blocks.append(f"{(time.perf_counter() - t0) / 2000 * 1e6:.0f} µs (CPU {(time.process_time() - c0) / 2000 * 1e6:.0f})")
    print(f"asyncio echo, {kind} loops: " + ", ".join(blocks))
    writer.close()
    server.stdin.close()
    server.wait()


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        asyncio.run(serve(sys.argv[2]))
    elif sys.argv[1] == "floor":
        for _ in range(3):
            for kind in ("plain", "wrapped"):
                subprocess.run([sys.executable, __file__, "--echo", kind], check=True)
    elif sys.argv[1] == "--echo":
        asyncio.run(echo(sys.argv[2]))
    else:
        asyncio.run(calls(sys.argv[1]))
