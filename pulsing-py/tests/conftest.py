import asyncio
import os
import pathlib
import select
import subprocess
import sys
import time

import pytest

import pulsing as pul

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent


@pytest.fixture
async def system():
    """A standalone system for one test."""
    await pul.init()
    yield
    await pul.shutdown()


def run_script(code: str, *args: str, timeout: float = 60, env=None) -> subprocess.CompletedProcess:
    """Runs ``code`` in a fresh interpreter; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def first_line(stream, within: float = 30) -> str:
    """The first line a child process prints on ``stream`` (a pipe), or AssertionError after
    ``within`` seconds: a child that hangs before printing fails the test instead of hanging
    it. Only for the first read (later lines may sit in Python's buffer, unseen by select)."""
    ready, _, _ = select.select([stream], [], [], within)
    assert ready, f"the child printed nothing within {within} s"
    return stream.readline()


async def eventually(read, expected, within: float = 10):
    """Awaits ``read()`` every 50 ms until it returns ``expected``; fails after ``within``
    seconds, showing the last value."""
    deadline = time.monotonic() + within
    while True:
        got = await read()
        if got == expected:
            return
        assert time.monotonic() < deadline, f"still {got!r}, not {expected!r}, after {within} s"
        await asyncio.sleep(0.05)


async def longest_run_without_a_turn(calls) -> int:
    """Awaits each of ``calls`` (coroutine factories) in turn; returns the longest run of
    consecutive calls during which the event loop never polled its selector (took no turn)."""
    selector = asyncio.get_running_loop()._selector
    select = selector.select
    turns = 0

    def counted(timeout=None):
        nonlocal turns
        turns += 1
        return select(timeout)

    selector.select = counted
    run = longest = 0
    try:
        for call in calls:
            before = turns
            await call()
            run = run + 1 if turns == before else 0
            longest = max(longest, run)
    finally:
        selector.select = select
    return longest


# Built by scripts/test-python, which says where (CARGO_TARGET_DIR moves them).
TEST_NODE = pathlib.Path(os.environ.get("PULSING_TEST_NODE", ROOT / "target" / "debug" / "test_node"))
RUST_CALLER = pathlib.Path(
    os.environ.get("PULSING_RUST_CALLER", ROOT / "pulsing-py" / "target" / "release" / "examples" / "rust_caller")
)


class Proc:
    """A node process that printed `LISTENING <addr>`; stopped (stdin closed, then killed)."""

    def __init__(self, argv):
        self.p = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines = []
        try:
            line = first_line(self.p.stdout)
        except AssertionError:
            line = ""
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"node did not start: {line!r} {self.p.stderr.read()}")
        self.addr = line.split()[1]

    async def read_until(self, marker, timeout=20):
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = await asyncio.wait_for(loop.run_in_executor(None, self.p.stdout.readline), timeout)
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if line.startswith(marker):
                return self.lines
        raise AssertionError(f"no {marker!r} in {self.lines}")

    def stop(self):
        if self.p.poll() is None:
            try:
                self.p.stdin.close()
                self.p.wait(5)
            except Exception:
                self.p.kill()
                self.p.wait()


@pytest.fixture
def py_node():
    procs = []

    def start(*args):
        proc = Proc([sys.executable, str(HERE / "py_node.py"), *args])
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
def rust_node():
    assert TEST_NODE.exists(), "build it: cargo build -p pulsing-tests --bin test_node"
    procs = []

    def start(*args):
        proc = Proc([str(TEST_NODE), *args])
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
async def cluster_system():
    yield
    await pul.shutdown()
