"""Byte strings of every size across the boundary (issue #15: fewer copies of a payload).

A `bytes` argument is lent to its `Value` instead of copied (src/convert.rs, `Lent`), a
`bytearray` is copied at once, and a received `Value::Bytes` of 512 bytes or more is a slice of
the frame it came in (pulsing/src/value/shared.rs). Sizes around each threshold: 512 (lent /
shared from), 16 KiB (a frame travels alone, spare buffers), and large ones. Through real calls:
to a Python actor in another process, to a Rust actor in another process, and to a Python
actor of this process reached through the runtime (the `Value` is handed over without a frame).
"""

import asyncio
import os
import sys

import pytest

import pulsing as pul
from pulsing import _bridge, _native
from pulsing._proxy import ActorRef
from pulsing._targets import _RemoteTarget
from cluster_actors import Worker
from conftest import TEST_NODE, eventually

KIB, MIB = 1 << 10, 1 << 20
SIZES = [0, 1, 511, 512, 16 * KIB - 1, 16 * KIB, MIB, 16 * MIB]


def payloads():
    """Random `bytes` of every size (distinct content, so a mix-up shows)."""
    return [os.urandom(n) for n in SIZES]


async def check_echoes(proxy, method="echo", nested=True):
    """Every size, alone, nested (if the method takes any value) and as a `bytearray`, comes
    back equal, as `bytes`; so do many large ones at once."""
    echo = getattr(proxy, method)
    for data in payloads():
        back = await echo(data)
        assert type(back) is bytes and back == data, len(data)
        back = await echo(bytearray(data))
        assert type(back) is bytes and back == data, len(data)
    if nested:
        data = payloads()
        back = await echo([data, {"k": data[-2], b"key": data[3]}])
        assert back == [data, {"k": data[-2], b"key": data[3]}]
    # Many in flight at once, each its own payload.
    many = [os.urandom(MIB + i) for i in range(8)]
    assert await asyncio.gather(*(echo(d) for d in many)) == many


async def through_the_runtime(name):
    """A proxy of this process's actor `name` that calls it through the runtime (a native
    `DynRef`), as a call from another loop or another process would, not the Python-only path."""
    b = _bridge.running_bridge()
    token, fut = b.future()
    _native.resolve(b.native, token, name, 10, None)
    return ActorRef(_RemoteTarget(await fut)).as_any()


async def test_bytes_to_a_python_actor_in_another_process(py_node, cluster_system):
    node = py_node("--spawn", "worker", "--name", "n")
    await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
    worker = await Worker.resolve("worker", timeout=10)
    await check_echoes(worker, "echo")  # a `def` method
    await check_echoes(worker, "aecho")  # an `async def` one
    big, other = os.urandom(MIB), os.urandom(3 * MIB)
    assert await worker.add(big, b=other) == big + other  # keyword arguments


async def test_bytes_to_a_rust_actor_in_another_process(rust_node, cluster_system):
    assert TEST_NODE.exists(), "build it: cargo build -p pulsing-tests --bin test_node"
    node = rust_node("--name", "v")
    await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
    values = (await pul.resolve("values-v", timeout=10)).as_any()
    await check_echoes(values, "bytes", nested=False)  # `serde_bytes::ByteBuf` both ways
    await check_echoes(values, "value")  # a `Value` back as it came
    assert await values.vec_u8(bytes(range(256)) * 4) == list(range(256)) * 4


async def test_bytes_through_the_runtime_in_this_process(cluster_system):
    await pul.init(addr="127.0.0.1:0")
    await Worker.spawn("here", name="local-worker")
    worker = await through_the_runtime("local-worker")
    assert isinstance(worker.__dict__["_pulsing_target"], _RemoteTarget)
    await check_echoes(worker, "echo")
    await check_echoes(worker, "aecho")


async def test_large_byte_strings_are_read_straight_into_python_bytes(py_node, cluster_system):
    """A large byte string arrives as a WebSocket fragment of its own, read by the loop's
    thread straight into the `bytes` object the answer becomes (src/landing.rs): no copy
    after the kernel's. Both sides do it: the answers here, and the arguments in the node."""
    node = py_node("--spawn", "worker", "--name", "n")
    await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
    worker = await Worker.resolve("worker", timeout=10)
    before = _native.landed_count()
    for _ in range(10):
        data = os.urandom(MIB)
        back = await worker.echo(data)
        assert type(back) is bytes and back == data
        assert hash(back) == hash(data)
    assert _native.landed_count() > before, "no answer was landed in a bytes object"
    assert await worker.landed() > 0, "no argument was landed in the node"


@pytest.mark.parametrize("count", [31, 32, 200])
async def test_a_value_with_many_large_byte_strings(count, py_node, cluster_system):
    """Up to 31 large byte strings, each is a fragment of its own; with more, the message is
    sent whole (a peer takes at most 64 fragments). Both arrive the same."""
    node = py_node("--spawn", "worker", "--name", "n")
    await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
    worker = await Worker.resolve("worker", timeout=10)
    data = [os.urandom(16 * KIB + i) for i in range(count)]
    assert await worker.echo(data) == data
    assert await worker.echo({"a": data, "b": [data[0], 7, "x"]}) == {"a": data, "b": [data[0], 7, "x"]}


async def test_a_bytearray_is_copied_when_the_call_is_made(py_node, cluster_system):
    """A `bytearray` can change after the call is made; what was sent is what it held then."""
    node = py_node("--spawn", "worker", "--name", "n")
    await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
    worker = await Worker.resolve("worker", timeout=10)
    data = bytearray(os.urandom(MIB))
    sent = bytes(data)
    call = asyncio.ensure_future(worker.echo(data))
    await asyncio.sleep(0)  # the call's first step converts its arguments
    data[:] = b"\0" * len(data)
    assert await call == sent


@pytest.mark.parametrize("where", ["another process", "this process"])
async def test_lent_bytes_are_released(where, py_node, cluster_system):
    """The reference a `Value` holds on a lent `bytes` is given back once the call is done,
    even when the runtime's thread drops it (PyO3 releases it when a thread next enters Python)."""
    if where == "another process":
        node = py_node("--spawn", "worker", "--name", "n")
        await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
        worker = await Worker.resolve("worker", timeout=10)
    else:
        await pul.init(addr="127.0.0.1:0")
        await Worker.spawn("here", name="local-worker")
        worker = await through_the_runtime("local-worker")
    data = os.urandom(MIB)
    before = sys.getrefcount(data)
    for _ in range(20):
        await worker.echo(data)
    await asyncio.gather(*(worker.echo(data) for _ in range(20)))

    async def references():
        pul.local_addr()  # enters the extension: PyO3 releases references dropped elsewhere
        return sys.getrefcount(data)

    await eventually(references, before)


async def test_a_memoryview_is_not_plain_data(py_node, cluster_system):
    """As before lending: a `memoryview` is not converted (its exporter could change under the
    call); it would need pickle, refused without a secret, and pickle refuses it with one."""
    node = py_node("--spawn", "worker", "--name", "n", "--secret", "s")
    await pul.init(addr="127.0.0.1:0", seeds=[node.addr], secret="s")
    worker = await Worker.resolve("worker", timeout=10)
    view = memoryview(os.urandom(MIB))
    with pytest.raises(pul.PulsingDecodeError, match="cannot pickle memoryview"):
        await worker.echo(view)
    assert await worker.echo(bytes(view)) == bytes(view)


async def test_a_memoryview_needs_pickle_without_a_secret(py_node, cluster_system):
    node = py_node("--spawn", "worker", "--name", "n")
    await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
    worker = await Worker.resolve("worker", timeout=10)
    with pytest.raises(pul.PulsingPickleError, match="memoryview"):
        await worker.echo(memoryview(b"abc"))
