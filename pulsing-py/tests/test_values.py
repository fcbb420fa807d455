"""The value mapping between Python and Rust (docs/python.md, "Values across the boundary"),
through a real Rust actor in another process (`Values` in tests/src/values.rs, run by every
test_node as ``values-<NODE>``): one test per row, and property tests (hypothesis) of the round
trip Python -> Value -> Rust -> Value -> Python.

The calls run on an event loop in a background thread, so that hypothesis drives a plain
function and every example reuses one node and one connection."""

import asyncio
import math
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pulsing as pul
from conftest import TEST_NODE, Proc

CALL_TIMEOUT = 20


class Remote:
    """Calls methods of the Rust `Values` actor from synchronous code."""

    def __init__(self, loop, proxy):
        self.loop, self.proxy = loop, proxy

    def __getattr__(self, method):
        def call(*args):
            coro = getattr(self.proxy, method)(*args)
            return asyncio.run_coroutine_threadsafe(_awaited(coro), self.loop).result(CALL_TIMEOUT)

        return call


async def _awaited(call):
    return await call


@pytest.fixture(scope="module")
def rust():
    assert TEST_NODE.exists(), "build it: cargo build -p pulsing-tests --bin test_node"
    node = Proc([str(TEST_NODE), "--name", "v"])
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro):
        return asyncio.run_coroutine_threadsafe(coro, loop).result(CALL_TIMEOUT)

    async def connect():
        await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
        return (await pul.resolve("values-v", timeout=10)).as_any()

    async def shutdown():
        await pul.shutdown()

    try:
        yield Remote(loop, run(connect()))
    finally:
        try:
            run(shutdown())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            node.stop()


def same(a, b):
    """Equal, with NaN equal to itself, -0.0 told from 0.0, and types compared (1 is not True)."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(k in b and same(v, b[k]) for k, v in a.items())
    return a == b


# Plain data as it comes back: tuples become lists except inside keys, which stay hashable.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
keys = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4) | st.binary(max_size=4),
    lambda inner: st.tuples(inner, inner),
    max_leaves=4,
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(values)
def test_plain_data_round_trips_through_a_rust_value(rust, v):
    back = rust.value(v)
    assert same(back, v), (v, back)


@SETTINGS
@given(st.integers(min_value=-(2**127), max_value=2**128 - 1))
def test_ints_reach_every_rust_integer_type_they_fit(rust, n):
    for method, lo, hi in (("i64", -(2**63), 2**63 - 1), ("u64", 0, 2**64 - 1),
                           ("i128", -(2**127), 2**127 - 1), ("u128", 0, 2**128 - 1)):
        if lo <= n <= hi:
            assert rust.__getattr__(method)(n) == n
        else:
            with pytest.raises(pul.PulsingBadArgumentsError, match=f"expected {method}, found int {n}"):
                rust.__getattr__(method)(n)


def test_ints_beyond_64_bits(rust):
    """Bug 4: 2**63 reached Rust as a pickle map ("found map")."""
    assert rust.u64(2**63) == 2**63
    assert rust.u64(2**64 - 1) == 2**64 - 1
    assert rust.i128(-(2**100)) == -(2**100)
    assert rust.value(2**200) == 2**200  # any size, as a Value
    with pytest.raises(pul.PulsingBadArgumentsError, match=r"expected u64, found int 18446744073709551616"):
        rust.u64(2**64)
    with pytest.raises(pul.PulsingBadArgumentsError, match=r"expected u64, found int -1"):
        rust.u64(-1)
    # A dict that looks like the marker is pickled rather than misread (so, without a secret,
    # refused with the pickle error).
    with pytest.raises(pul.PulsingPickleError):
        rust.value({"$int": "5"})


def test_nested_tuple_keys(rust):
    """Bug 4: only the outer key list became a tuple (`unhashable type: 'list'`)."""
    assert rust.value({(1, (2, 3)): "a"}) == {(1, (2, 3)): "a"}
    assert rust.tuple_keys({(1, (2, 3)): "a", (4, (5, 6)): "b"}) == {(1, (2, 3)): "a", (4, (5, 6)): "b"}


def test_bytes(rust):
    """Bug 4: bytes sent to a `Vec<u8>` came back as a list. `serde_bytes` types are bytes both
    ways; a plain `Vec<u8>` takes bytes but is a sequence of numbers to serde: a list back."""
    assert rust.bytes(b"\x00\xffab") == b"\x00\xffab"
    assert rust.bytes(bytearray(b"xy")) == b"xy"
    assert rust.bytes(b"") == b""
    assert rust.vec_u8(b"\x00\xff") == [0, 255]
    assert rust.vec_u8([1, 2]) == [1, 2]


def test_floats(rust):
    for x in (0.0, -0.0, 1.5, math.inf, -math.inf, 1e300, 5e-324):
        assert same(rust.f64(x), x)
    assert math.isnan(rust.f64(math.nan))
    assert math.isnan(rust.f32(math.nan))
    assert rust.f32(math.inf) == math.inf and rust.f32(-math.inf) == -math.inf
    assert same(rust.f32(-0.0), -0.0)
    assert rust.f32(0.1) == pytest.approx(0.1, rel=1e-7)  # rounded to the nearest f32
    assert rust.f64(2**64) == float(2**64)  # a big int as a float
    with pytest.raises(pul.PulsingBadArgumentsError, match="too large for an f32"):
        rust.f32(1e39)


def test_a_repeated_key_keeps_the_last_value(rust):
    assert rust.repeated_key() == {1: "last"}  # as dict(pairs) does
