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
