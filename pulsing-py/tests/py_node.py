"""A Python Pulsing node for the multi-process tests.

Usage: python py_node.py [--addr A] [--seed ADDR]... [--spawn NAME]... [--name NODE] [--secret S]
Prints `LISTENING <addr>`, serves until stdin closes.
"""

import argparse
import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pulsing as pul  # noqa: E402
from cluster_actors import Gate, GateKeeper, InlineLog, Overlap, Ping, Tally, Worker  # noqa: E402


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", default="127.0.0.1:0")
    p.add_argument("--seed", action="append", default=[])
    p.add_argument("--spawn", action="append", default=[])
    p.add_argument("--name", default="py")
    p.add_argument("--secret", default=None)
    p.add_argument("--spawn-serial", action="append", default=[])
    p.add_argument("--spawn-ping", action="append", default=[])
    p.add_argument("--spawn-overlap", action="append", default=[])
    p.add_argument("--spawn-inline-log", action="append", default=[])
    p.add_argument("--spawn-gate", action="append", default=[])
    a = p.parse_args()
    await pul.init(addr=a.addr, seeds=a.seed, secret=a.secret)
    for name in a.spawn:
        await Worker.spawn(a.name, name=name)
    for name in a.spawn_serial:
        await Tally.spawn(name=name)
    for name in a.spawn_ping:
        await Ping.spawn(name, name=name)
    for name in a.spawn_overlap:
        await Overlap.spawn(name=name)
    for name in a.spawn_inline_log:
        await InlineLog.spawn(name=name)
    for name in a.spawn_gate:
        await Gate.spawn(name=name)
        await GateKeeper.spawn(name=f"{name}-keeper")
    print("LISTENING", pul.advertised_addr(), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await pul.shutdown()


asyncio.run(main())
