"""One process: the quick start, calls of every kind, proxies, errors, timeouts, names."""

import asyncio
import pickle
import subprocess
import sys
import time

import pytest

import pulsing as pul
from conftest import ROOT
from local_actors import Counter, Faulty


def test_quickstart_runs_exactly_as_written():
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples/python/quickstart.py")],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n") == ["11", "13 13", "0", "1", "2", ""]
    assert out.stderr == ""


def test_version_and_stubs():
    import pathlib
    assert isinstance(pul.__version__, str) and pul.__version__.count(".") == 2
    pkg = pathlib.Path(pul.__file__).parent
    assert (pkg / "py.typed").exists()
    assert (pkg / "__init__.pyi").exists()


async def test_all_method_kinds(system):
    c = await Counter.spawn(10, name="c")
    assert await c.inc() == 11
    assert await c.inc(by=4) == 15
    assert await c.slow_get() == 15
    assert [x async for x in c.stream(4)] == [0, 1, 2, 3]
    assert [x async for x in c.ticks(1000)] == list(range(1000))
    again = await Counter.resolve("c")
    assert await again.inc() == 16
    ref = await pul.resolve("c", timeout=5)
    assert ref.name == "c" and ref.type_name == "Counter" and ref.is_local
    assert await ref.as_any().inc(2) == 18
    assert await ref.as_type(Counter).slow_get() == 18


async def test_anonymous_actors_are_independent(system):
    a = await Counter.spawn()
    b = await Counter.spawn(start=100)
    assert await a.inc() == 1
    assert await b.inc() == 101


async def test_typed_proxy_rejects_unknown_and_private_names_at_once(system):
    c = await Counter.spawn(name="c")
    with pytest.raises(pul.PulsingUnknownMethodError, match="no remote method `nope`"):
        c.nope
    with pytest.raises(pul.PulsingUnknownMethodError, match="private"):
        c._private
    with pytest.raises(AttributeError):  # also an AttributeError: hasattr works
        c.__secret
    assert not hasattr(c, "nope")
    typed = (await pul.resolve("c")).as_type(Counter)
    with pytest.raises(pul.PulsingUnknownMethodError):
        typed.nope
    # An untyped proxy forwards the name; the actor reports it.
    anyp = (await pul.resolve("c")).as_any()
    call = anyp.nope(1)
    with pytest.raises(pul.PulsingUnknownMethodError, match="nope"):
        await call
    with pytest.raises(pul.PulsingUnknownMethodError):
        anyp._private


async def test_as_type_checks_the_class(system):
    await Faulty.spawn(name="f")
    ref = await pul.resolve("f")
    with pytest.raises(pul.PulsingTypeMismatchError):
        ref.as_type(Counter)
    with pytest.raises(pul.PulsingTypeMismatchError):
        await Counter.resolve("f")


async def test_exceptions_carry_type_message_and_traceback(system):
    f = await Faulty.spawn(name="f")
    with pytest.raises(pul.PulsingActorError) as info:
        await f.fail("x")
    err = info.value
    assert err.type_name == "ValueError"
    assert err.message == "bad input: x"
    assert "in fail" in err.remote_traceback and "ValueError: bad input: x" in err.remote_traceback
    assert isinstance(err, pul.PulsingError)
    with pytest.raises(pul.PulsingActorError) as info:
        await f.afail()
    assert info.value.type_name == "KeyError"
    # The actor keeps serving, its state intact.
    assert await f.count() == 2


async def test_per_call_timeout(system):
    f = await Faulty.spawn(name="f")
    t0 = time.monotonic()
    with pytest.raises(pul.PulsingTimeoutError):
        await f.sleep(5).timeout(0.05)
    assert time.monotonic() - t0 < 1
    with pytest.raises(TimeoutError):  # also a builtin TimeoutError
        await f.block(0.5).timeout(0.05)
    assert await f.sleep(0).timeout(1) == "slept"
    with pytest.raises(ValueError):
        f.sleep(0).timeout(-1)
    with pytest.raises(ValueError):
        await pul.resolve("f", timeout=float("nan"))


async def test_resolve_waits_then_raises_not_found(system):
    t0 = time.monotonic()
    with pytest.raises(pul.PulsingNotFoundError):
        await pul.resolve("nobody", timeout=0.2)
    assert 0.15 < time.monotonic() - t0 < 2
    with pytest.raises(pul.PulsingNotFoundError):
        await pul.resolve("nobody")

    async def later():
        await asyncio.sleep(0.1)
        await Counter.spawn(5, name="late")

    task = asyncio.create_task(later())
    ref = await pul.resolve("late", timeout=5)
    assert await ref.as_type(Counter).inc() == 6
    await task


async def test_name_taken(system):
    await Counter.spawn(name="x")
    with pytest.raises(pul.PulsingNameTakenError):
        await Counter.spawn(name="x")


async def test_a_named_proxy_pickles_under_a_stable_path(system):
    """Pickled proxies call `pulsing._core._revive_proxy`, the path earlier versions used."""
    c = await Counter.spawn(5, name="c")
    data = pickle.dumps(c)
    assert b"pulsing._core" in data and b"_revive_proxy" in data
    assert await pickle.loads(data).inc() == 6
