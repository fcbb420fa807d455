"""Where a 1 MiB echo between two Python processes spends its time: the request's way (caller to
the method) and the answer's way (method to caller), timed with the wall clock both processes
share (loopback only).

    pulsing-py/.venv/bin/python pulsing-py/benches/mib_phases.py [--rounds N]

Prints medians over N rounds (after 300 echoes of warm-up): the echo's total, its request and
answer legs, a 1 MiB request answered with a timestamp alone, and a 1 MiB answer to a small
request. The request leg is written by the dialing side (masked, ``transport/direct.rs``), the
answer by the accepting side (not masked): the two were 238-297 µs and 344-412 µs on a 2-vCPU
AMD VM before the accepting side wrote large messages a block per write, 174-272 µs after
(BENCHMARKS.md, "Fewer system calls per call, and large answers a block per write").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time

import pulsing as pul

MIB = 1 << 20


@pul.remote
class Phased:
    def __init__(self) -> None:
        self.blob = os.urandom(MIB)

    async def echo(self, data):
        return data, time.time_ns()

    async def enter(self, data):
        return time.time_ns()

    async def give(self):
        return self.blob, time.time_ns()


async def serve() -> None:
    await pul.init(addr="127.0.0.1:0")
    await Phased.spawn(name="phased")
    print("LISTENING", pul.local_addr(), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await pul.shutdown()


async def measure(rounds: int) -> None:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        addr = server.stdout.readline().split()[1]
        await pul.init(addr="127.0.0.1:0", seeds=[addr])
        phased = await Phased.resolve("phased", timeout=10)
        payload = os.urandom(MIB)
        for _ in range(300):
            await phased.echo(payload)
        total, request, answer, request_alone, answer_alone = [], [], [], [], []
        for _ in range(rounds):
            t0 = time.time_ns()
            data, entered = await phased.echo(payload)
            t1 = time.time_ns()
            assert len(data) == MIB
            total.append(t1 - t0)
            request.append(entered - t0)
            answer.append(t1 - entered)
            t0 = time.time_ns()
            request_alone.append(await phased.enter(payload) - t0)
            data, left = await phased.give()
            answer_alone.append(time.time_ns() - left)

        def us(xs) -> str:
            return f"{statistics.median(xs) / 1e3:,.0f} µs"

        print(
            f"1 MiB echo {us(total)}: request {us(request)}, answer {us(answer)}; "
            f"a 1 MiB request alone {us(request_alone)}, a 1 MiB answer alone {us(answer_alone)}"
        )
        await pul.shutdown()
    finally:
        server.stdin.close()
        server.wait(10)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--rounds", type=int, default=400)
    args = p.parse_args()
    asyncio.run(serve() if args.serve else measure(args.rounds))


if __name__ == "__main__":
    main()
