"""The Ray examples in examples/ray run as documented (each starts its own Ray with `ray.init()`;
run after test_ray.py's module has shut its Ray cluster down)."""

import subprocess
import sys

import ray  # noqa: F401  (scripts/test-python installs it: a missing Ray must fail, not skip)

from conftest import ROOT

EXAMPLES = ROOT / "examples" / "ray"


def run(name):
    out = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                         timeout=180, cwd=str(EXAMPLES))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return out.stdout.splitlines()


def test_hello():
    run("hello.py")  # the example, verbatim: no output, exits 0


def test_stream():
    assert run("stream.py") == ["['STREAMED', 'BETWEEN', 'RAY', 'ACTORS']"]


def test_driver():
    assert run("driver.py") == ["hello, driver", "1 11", "111"]
