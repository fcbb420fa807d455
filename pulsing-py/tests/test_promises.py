"""Promises of the Python package that had no test (issue #16): the default ``call_timeout``
fires for calls that set none; an anonymous actor lives while a proxy to it exists, and no
longer. (Ctrl-C during a blocking ``def``: test_exit.py.)"""

import asyncio
import gc
import time
import weakref

import pytest

import pulsing as pul
from cluster_actors import Worker
from local_actors import Counter


@pytest.mark.timeout(60)
async def test_the_default_call_timeout_fires_without_a_per_call_timeout(py_node, cluster_system):
    node = py_node("--spawn", "w", "--name", "n")
    await pul.init(addr="127.0.0.1:0", seeds=[node.addr], call_timeout=0.5)
    w = await Worker.resolve("w", timeout=10)
    assert await w.slow(0) == 0
    start = time.monotonic()
    with pytest.raises(pul.PulsingTimeoutError):
        await w.slow(30)
    assert time.monotonic() - start >= 0.5, "never early"
    # A per-call timeout still overrides it.
    assert await w.slow(1).timeout(10) == 1


def _instance(proxy):
    return proxy.__dict__["_pulsing_target"].host.instance


async def test_an_anonymous_actor_lives_while_a_proxy_exists_and_no_longer(system):
    proxy = await Counter.spawn(5)
    instance = weakref.ref(_instance(proxy))
    assert await proxy.inc() == 6
    again = proxy  # a second reference to the proxy
    del proxy
    gc.collect()
    await asyncio.sleep(0)
    assert instance() is not None, "a proxy still exists"
    assert await again.inc() == 7
    del again
    for _ in range(3):  # finish what the last call left on the loop
        await asyncio.sleep(0)
        gc.collect()
    assert instance() is None, "no proxy left: the actor is gone"
