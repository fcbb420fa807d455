"""Process exit is clean: with or without pul.shutdown(), or on Ctrl-C, run many times."""

import signal
import subprocess
import sys
import time

import pytest

from conftest import HERE, first_line

SCRIPTS = HERE / "exit_scripts"
BAD = ("Fatal Python error", "Segmentation fault", "PyGILState", "panicked", "core dumped")


def check_clean(proc, stderr):
    for marker in BAD:
        assert marker not in stderr, stderr


@pytest.mark.parametrize("script", ["with_shutdown.py", "without_shutdown.py"])
def test_scripts_exit_zero_many_times(script):
    for _ in range(15):
        out = subprocess.run(
            [sys.executable, str(SCRIPTS / script)], capture_output=True, text=True, timeout=60
        )
        check_clean(out, out.stderr)
        assert out.returncode == 0, out.stderr
        assert out.stdout == "ok\n"
        assert out.stderr == ""


def interrupt(script):
    p = subprocess.Popen(
        [sys.executable, str(SCRIPTS / script)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert first_line(p.stdout) == "ready\n"
        time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, stdout, stderr


def test_ctrl_c_gives_pythons_normal_status_many_times():
    for _ in range(8):
        rc, _, stderr = interrupt("interrupted.py")
        check_clean(None, stderr)
        # What CPython does for an uncaught KeyboardInterrupt: traceback, then die by SIGINT.
        assert rc == -signal.SIGINT, stderr
        assert "KeyboardInterrupt" in stderr


def test_ctrl_c_caught_exits_zero_many_times():
    for _ in range(8):
        rc, stdout, stderr = interrupt("interrupted_caught.py")
        check_clean(None, stderr)
        assert rc == 0, stderr
        assert stdout.strip() == "interrupted"


def test_ctrl_c_during_a_blocking_def_interrupts_the_caller_at_once():
    """The `def` runs on a worker thread for ten minutes; Ctrl-C reaches the main thread, which
    was only awaiting it: KeyboardInterrupt, and the process ends without waiting for the
    worker (issue #16)."""
    for _ in range(3):
        p = subprocess.Popen(
            [sys.executable, str(SCRIPTS / "interrupted_blocking.py")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert first_line(p.stdout) == "blocking\n"
            time.sleep(0.05)
            p.send_signal(signal.SIGINT)
            _, stderr = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        check_clean(None, stderr)
        assert p.returncode == -signal.SIGINT, stderr
        assert "KeyboardInterrupt" in stderr

