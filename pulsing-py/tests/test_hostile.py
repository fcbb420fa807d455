"""Hostile or unlucky input across processes (issue #12): one malformed call does not lose the
others that arrived with it (item 6); a ref stays bound to the actor it resolved, so after a
stop and a respawn under the same name it is stopped, not redirected (item 7)."""

import asyncio
import time

import pytest

import pulsing as pul


async def test_a_malformed_call_is_answered_and_its_batch_goes_on(py_node, cluster_system):
    node = py_node("--spawn", "worker", "--name", "far")
    await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
    w = (await pul.resolve("worker", timeout=10)).as_any()
    assert await w.process("warm") == "far processed warm"
    for _ in range(3):
        # A call whose internal call chain is not iterable, amid many good ones sent at once:
        # the remote bridge takes them in batches; the bad one must not lose the rest. (`async
        # def` calls: they go through the actor's loop, where a chain is read; a plain `def`
        # call of a non-serial actor goes straight to a worker, which has no use for one.)
        calls = [w.aecho(f"n{i}") for i in range(100)]
        calls.insert(50, w.aecho("bad", **{"$pulsing_chain": 5}))
        results = await asyncio.wait_for(
            asyncio.gather(*calls, return_exceptions=True), timeout=30
        )
        bad = results.pop(50)
        assert isinstance(bad, pul.PulsingError), bad
        assert results == [f"n{i}" for i in range(100)]
    # A lone `def` call goes straight to a worker, and its malformed chain fails it there too.
    with pytest.raises(pul.PulsingBadArgumentsError, match="malformed call"):
        await w.process("bad", **{"$pulsing_chain": 5})
    assert await w.process("after") == "far processed after"


async def test_an_old_ref_is_stopped_after_a_respawn_under_its_name(rust_node, cluster_system):
    node = rust_node("--spawn", "w", "--name", "rust")
    await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
    old = await pul.resolve("w", timeout=10)
    w = old.as_any()
    assert await w.process("x") == "x processed by rust"
    assert old.is_alive
    probe = (await pul.resolve("probe-rust", timeout=10)).as_any()

    old.stop()
    deadline = time.monotonic() + 10
    while True:  # the name is free once the actor has stopped
        try:
            await probe.spawn_worker("w")
            break
        except pul.PulsingActorError:
            assert time.monotonic() < deadline, "the name was never released"
            await asyncio.sleep(0.05)

    with pytest.raises(pul.PulsingStoppedError):
        await w.process("x")
    assert not old.is_alive
    # A fresh resolve reaches the new actor (once gossip has it).
    deadline = time.monotonic() + 10
    while True:
        fresh = await pul.resolve("w", timeout=10)
        try:
            answer = await fresh.as_any().process("x")
            break
        except pul.PulsingStoppedError:
            assert time.monotonic() < deadline, "the respawned actor was never resolved"
            await asyncio.sleep(0.05)
    assert answer == "x processed by respawned"
    assert fresh.is_alive


async def test_a_python_actor_holds_at_most_its_mailbox_of_calls(py_node, cluster_system):
    # Issue #12 item 4: a Python actor takes calls from peers through its bounded mailbox like
    # any actor. It keeps at most the mailbox capacity (256 by default) in hand; the rest wait,
    # and none is lost once the actor gets going again.
    node = py_node("--spawn-gate", "gate")
    await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
    gate = (await pul.resolve("gate", timeout=10)).as_any()
    keeper = (await pul.resolve("gate-keeper", timeout=10)).as_any()
    calls = [asyncio.ensure_future(gate.enter()) for _ in range(600)]
    deadline = time.monotonic() + 20
    while (await keeper.stats())[0] < 256:
        assert time.monotonic() < deadline, await keeper.stats()
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)  # room for any call beyond the bound to get in
    assert list(await keeper.stats()) == [256, 256]
    await keeper.open()
    results = await asyncio.wait_for(asyncio.gather(*calls), timeout=30)
    assert results == ["through"] * 600
    assert (await keeper.stats())[1] == 256


def test_an_overloaded_node_or_mailbox_is_a_busy_error():
    # Error::Busy (a node's room for one peer's calls is full) and Error::MailboxFull reach
    # Python as their own class, not as a bare PulsingError.
    from pulsing._errors import from_native

    busy = from_native(("Busy", "w.m(): refused", {"actor": "w", "method": "m", "limit": 4096}))
    assert isinstance(busy, pul.PulsingBusyError)
    assert busy.fields["limit"] == 4096
    assert isinstance(from_native(("MailboxFull", "full", {"actor": "w"})), pul.PulsingBusyError)
