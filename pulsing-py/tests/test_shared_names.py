"""One name, actors of several types (issue #16, bug 1): ``Class.resolve(name)`` promises "a
local one of the right type, else a live remote one of the right type", so actors of other types
under the name (a Rust one, another Python class, here or elsewhere) are passed over."""

import asyncio
import time

import pytest

import pulsing as pul
from cluster_actors import Ping, Tally


async def known(name, count, within=20):
    deadline = time.monotonic() + within
    while len(pul.instances(name)) != count:
        assert time.monotonic() < deadline, f"not {count} instances of {name!r}: {pul.instances(name)}"
        await asyncio.sleep(0.05)


@pytest.mark.timeout(120)
async def test_a_class_resolves_its_own_type_beside_a_rust_actor(rust_node, py_node, cluster_system):
    """The bug: a Rust `Worker` and a Python `Tally` both named "dup"; `Tally.resolve("dup")`
    raised PulsingTypeMismatchError 10 times out of 10."""
    rust = rust_node("--spawn", "dup", "--name", "rust")
    py_node("--spawn-serial", "dup", "--seed", rust.addr, "--name", "py")
    await pul.init(addr="127.0.0.1:0", seeds=[rust.addr])
    await known("dup", 2)
    for _ in range(10):
        tally = await Tally.resolve("dup")
        assert await tally.quick() == 0
        assert (await Tally.resolve("dup", timeout=5)).__class__ is tally.__class__
    # The Rust one is still there for untyped callers that ask for its methods.
    types = sorted(i["type_name"] for i in pul.instances("dup"))
    assert types == ["Tally", "Worker"]
    # A class nobody under the name has: a mismatch, at once.
    with pytest.raises(pul.PulsingTypeMismatchError):
        await Ping.resolve("dup")


@pytest.mark.timeout(120)
async def test_a_local_actor_of_another_class_does_not_hide_a_remote_one(py_node, cluster_system):
    py = py_node("--spawn-serial", "dup", "--name", "py")
    await pul.init(addr="127.0.0.1:0", seeds=[py.addr])
    await Ping.spawn("here", name="dup")
    await known("dup", 2)
    for _ in range(10):
        tally = await Tally.resolve("dup")
        assert await tally.quick() == 0
        ping = await Ping.resolve("dup")
        assert await ping.bounce("nobody", 0) == ["here"]
