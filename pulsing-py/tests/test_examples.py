"""The examples in examples/python run as documented."""

import signal
import subprocess
import sys

from conftest import ROOT, first_line

EXAMPLES = ROOT / "examples" / "python"


def test_two_node_example():
    seed = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "two_node.py"), "seed", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = first_line(seed.stdout)
        assert line.startswith("seed listening on "), seed.stderr.read()
        addr = line.split()[-1]
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / "two_node.py"), "client", "127.0.0.1:0", addr],
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            "HELLO (request #1)",
            "['streamed', 'across', 'processes']",
        ]
    finally:
        seed.send_signal(signal.SIGINT)
        try:
            assert seed.wait(10) == 0
        finally:
            if seed.poll() is None:
                seed.kill()
