import asyncio
import os
import pathlib
import subprocess
import sys

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
