"""Calls made at once to an actor in another process, mixing `@pul.inline` and `def` methods,
run in the order they were made; lone `def` calls (straight to a worker) still answer.

Run by `scripts/test-python` on every other CPython found, from the wheel: on Python 3.10 a
call through the loop starts in a task of its own (no eager first step), a path the pytest
suites, on the venv's Python, do not take. Prints "ordered" and exits 0, or fails.

    python pulsing-py/tests/order_check.py
"""

import asyncio
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # run from anywhere, as a script
import pulsing as pul  # noqa: E402
from cluster_actors import InlineLog  # noqa: E402  (the multi-process suites' actor)


async def serve() -> None:
    await pul.init(addr="127.0.0.1:0")
    await InlineLog.spawn(name="log")
    print(pul.local_addr(), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await pul.shutdown()


async def check(addr: str) -> None:
    await pul.init(addr="127.0.0.1:0", seeds=[addr])
    log = await InlineLog.resolve("log", timeout=20)
    for _ in range(5):
        methods = (log.irecord, log.record, log.record)
        await asyncio.wait_for(asyncio.gather(*(methods[i % 3](i) for i in range(300))), 30)
        assert await log.take_log() == list(range(300))
    for i in range(50):
        await log.record(i)
    assert await log.take_log() == list(range(50))
    await pul.shutdown()
    print("ordered")


def main() -> None:
    if sys.argv[1:] == ["--serve"]:
        asyncio.run(serve())
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        asyncio.run(check(server.stdout.readline().strip()))
    finally:
        server.stdin.close()
        server.wait(20)


if __name__ == "__main__":
    main()
