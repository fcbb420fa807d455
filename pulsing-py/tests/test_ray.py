"""The Ray bridge with real Ray (issue #13): ``pul.mount`` in Ray actors, discovery and the
secret through Ray's key-value store, one thread of control per mounted instance, failures.

One Ray cluster (``ray.init(num_cpus=2)``) serves the whole module; actors take no CPU
(``num_cpus=0``) so that 20 fit, and each test kills its own. Tests that need a fresh Ray
cluster (init/cleanup twice, a dead first process) run a script in a subprocess.
"""

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from fractions import Fraction

import pytest

import ray  # scripts/test-python installs it: a missing Ray must fail, not skip

import pulsing as pul  # noqa: E402

from conftest import HERE, ROOT  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    # Ray's workers import the test actors from `tests/ray_actors.py`.
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), old) if p)
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        yield
    finally:
        pul.cleanup_ray()
        ray.shutdown()
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


import ray_actors as ra  # noqa: E402


@pytest.fixture
def actors():
    """Ray actors to kill after the test."""
    made = []
    yield made
    for a in made:
        ray.kill(a)


def until(condition, timeout=20.0, what="condition"):
    """Polls ``condition()`` until it is truthy (returns it) or the deadline passes (fails)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def test_issue_example(actors):
    workers = [ra.Worker.remote(f"w{i}") for i in range(3)]
    actors.extend(workers)
    assert ray.get(workers[0].call_peer.remote("w1", "hi")) == "hello: hi"


def test_all_pairs_of_three_and_pickles(actors):
    names = [f"pair{i}" for i in range(3)]
    peers = [ra.Peer.remote(n) for n in names]
    actors.extend(peers)
    calls = {
        (a, b): peers[a].ask.remote(names[b], "greet", f"from {names[a]}")
        for a in range(3) for b in range(3) if a != b
    }
    for (a, b), ref in calls.items():
        assert ray.get(ref) == f"{names[b]} greets from {names[a]}"
    # Objects that are not plain data are pickled: allowed, since Ray's secret is set.
    value = {"set": {1, 2, 3}, "fraction": Fraction(1, 3)}
    assert ray.get(peers[0].ask.remote(names[1], "echo", value)) == value
    assert ray.get(peers[0].ask.remote(names[2], "type_of", Fraction(2, 3))) == "Fraction"


def test_counting_game_of_ten(actors):
    names = [f"game{i}" for i in range(10)]
    peers = [ra.Peer.remote(n) for n in names]
    actors.extend(peers)
    # Every actor tells every actor (itself included), all at the same time.
    counts = ray.get([p.broadcast.remote(names) for p in peers], timeout=120)
    assert all(len(c) == 10 for c in counts)
    for p in peers:
        assert ray.get(p.received_from.remote()) == sorted(names)


def test_streams_between_mounted_actors(actors):
    producer, consumer = ra.Peer.remote("producer"), ra.Peer.remote("consumer")
    actors.extend([producer, consumer])
    assert ray.get(consumer.collect.remote("producer", "numbers", 1000)) == list(range(1000))
    assert ray.get(consumer.collect.remote("producer", "squares", 100)) == [i * i for i in range(100)]
    items, type_name, message = ray.get(consumer.collect_error.remote("producer", "fails_after", 3))
    assert (items, type_name, message) == ([0, 1, 2], "ValueError", "stopped after 3")


def test_errors_are_those_of_remote_actors(actors):
    a, b = ra.Peer.remote("err-a"), ra.SyncCounter.remote("err-sync")
    actors.extend([a, b])
    for target in ("err-a", "err-sync"):
        cls, type_name, message, tb = ray.get(a.ask_error.remote(target, "boom", "key"))
        assert (cls, type_name, message) == ("PulsingActorError", "KeyError", "'key'")
        assert "in boom" in tb
    cls, *_ = ray.get(a.ask_error.remote("err-a", "no_such_method"))
    assert cls == "PulsingUnknownMethodError"
    # A sync actor's generator streams too.
    assert ray.get(a.collect.remote("err-sync", "squares", 5)) == [0, 1, 4, 9, 16]


@pytest.mark.parametrize("kind", ["async", "sync"])
def test_counter_hammered_from_ray_and_pulsing_at_once(actors, kind):
    """100k increments, half through Ray handles, half through Pulsing, at the same time: the
    total is exact, and in an async actor every one ran on Ray's event-loop thread."""
    cls = ra.AsyncCounter if kind == "async" else ra.SyncCounter
    name = f"counter-{kind}"
    counter = cls.remote(name)
    hammer = ra.Hammer.remote(f"hammer-{kind}")
    actors.extend([counter, hammer])
    ray.get(counter.state.remote())  # both are up before the race starts
    calls, n = 1000, 50
    from_pulsing = hammer.hammer.remote(name, "inc", calls, n, 16)
    from_ray = [counter.inc.remote(n, "ray") for _ in range(calls)]
    if kind == "async":
        from_ray += [counter.ainc.remote(n, "ray") for _ in range(calls)]
        from_pulsing2 = hammer.hammer.remote(name, "ainc", calls, n, 16)
        ray.get(from_pulsing2, timeout=120)
    ray.get(from_ray, timeout=120)
    ray.get(from_pulsing, timeout=120)
    value, threads, sides, loop_thread = ray.get(counter.state.remote())
    expected = 2 * calls * n * (2 if kind == "async" else 1)
    assert value == expected
    # Both sides really ran at the same time: their calls alternate many times.
    switches = sum(1 for x, y in zip(sides, sides[1:]) if x != y)
    print(f"\n{kind}: {value} increments, the two sides alternated {switches} times")
    assert switches >= 10, f"the sides barely overlapped ({switches} switches)"
    if kind == "async":
        assert threads == [loop_thread]


def test_sync_actor_is_not_called_before_init_returns(actors):
    a = ra.HalfBuilt.remote("half-built", 0.5)
    actors.append(a)
    assert ray.get(a.result.remote(), timeout=60) == (False, 42)


def test_killed_actor_fails_fast_and_its_name_disappears(actors):
    victim, watcher = ra.Peer.remote("victim"), ra.Peer.remote("watcher")
    actors.append(watcher)
    assert ray.get(watcher.warm.remote("victim")) == "victim greets warm"
    pul.init_in_ray()
    # `init_in_ray` returns once this node has heard from one other node; the directory's names
    # arrive with the next gossip rounds (asserting them at once failed now and then).
    until(lambda: pul.instances("victim"), what="the driver to learn the name 'victim'")
    failing = watcher.call_until_failure.remote("victim", 10.0)
    ray.kill(victim)
    cls, seconds = ray.get(failing)
    print(f"\nafter ray.kill: {cls} in {seconds:.3f}s")
    assert cls in ("PulsingTransportError", "PulsingStoppedError", "PulsingNotFoundError"), cls
    assert seconds < 5.0
    # The name disappears everywhere: here (the driver) and in the other actor.
    until(lambda: not pul.instances("victim"), what="the name to disappear in the driver")
    until(lambda: not ray.get(watcher.instances.remote("victim")), what="the name to disappear")
    cls, seconds = ray.get(watcher.first_failure.remote("victim"))
    assert cls == "PulsingNotFoundError" and seconds < 1.0


def test_driver_resolves_and_calls_mounted_actors(actors):
    peer, counter = ra.Peer.remote("drv-peer"), ra.SyncCounter.remote("drv-sync")
    actors.extend([peer, counter])
    pul.init_in_ray()
    pul.init_in_ray()  # again: a no-op

    async def main():
        p = (await pul.resolve("drv-peer", timeout=30)).as_any()
        assert await p.greet("the driver") == "drv-peer greets the driver"
        assert [x async for x in p.numbers(5)] == [0, 1, 2, 3, 4]
        c = (await pul.resolve("drv-sync", timeout=30)).as_any()
        assert await c.inc(3, "driver") == 3
        with pytest.raises(pul.PulsingActorError) as e:
            await c.boom("x")
        assert e.value.type_name == "KeyError"

    asyncio.run(main())
    # Unmounting takes the name away everywhere; the Ray actor goes on.
    ray.get(peer.unmount.remote())
    until(lambda: not pul.instances("drv-peer"), what="the unmounted name to disappear")
    assert ray.get(peer.greet.remote("ray")) == "drv-peer greets ray"


def test_twenty_actors_mounting_at_once_form_one_cluster(actors):
    started = time.monotonic()
    peers = [ra.Peer.remote(f"crowd{i}") for i in range(20)]
    actors.extend(peers)
    addrs = set(ray.get([p.addr.remote() for p in peers], timeout=120))
    mounted = time.monotonic()
    assert len(addrs) == 20

    def converged():
        views = ray.get([p.members.remote() for p in peers])
        return all(addrs <= set(v) for v in views)

    until(converged, timeout=10.0, what="one cluster of 20")
    print(f"\n20 actors: mounted in {mounted - started:.1f}s, one cluster "
          f"{time.monotonic() - mounted:.2f}s later")


def run(code, timeout=180):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(HERE), os.environ.get("PYTHONPATH", "")))}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                         text=True, timeout=timeout, env=env, cwd=str(ROOT))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
    return out.stdout


def test_init_cleanup_shutdown_twice_and_a_dead_first_process():
    out = run("""
        import asyncio, time
        import ray
        import pulsing as pul
        from ray.experimental import internal_kv
        import ray_actors as ra

        def until(condition, what):
            deadline = time.monotonic() + 20
            while not condition():
                assert time.monotonic() < deadline, what
                time.sleep(0.02)

        for round in range(2):
            ray.init(num_cpus=2, include_dashboard=False)
            first = ra.Peer.remote("first")
            first_addr = ray.get(first.addr.remote())
            ray.kill(first)
            # The first process is gone: newcomers still find each other (not a cluster of one).
            b, c = ra.Peer.remote("b"), ra.Peer.remote("c")
            b_addr, c_addr = ray.get([b.addr.remote(), c.addr.remote()])
            until(lambda: c_addr in ray.get(b.members.remote()), "b and c in one cluster")
            assert b_addr in ray.get(c.members.remote())
            recorded = internal_kv._internal_kv_list(b"node:", namespace="pulsing")
            assert f"node:{first_addr}".encode() not in recorded, recorded
            pul.init_in_ray()
            async def main():
                return await (await pul.resolve("c", timeout=30)).as_any().greet("driver")
            assert asyncio.run(main()) == "c greets driver"
            pul.cleanup_ray()
            assert internal_kv._internal_kv_list(b"", namespace="pulsing") == []
            assert not pul._native.is_initialized()
            ray.shutdown()
            print("round", round, "ok")
    """)
    assert out.splitlines()[-2:] == ["round 0 ok", "round 1 ok"]


def test_mount_without_ray_says_what_to_install():
    out = run("""
        import sys
        sys.modules["ray"] = None  # as if Ray were not installed
        import pulsing as pul

        class Thing:
            def hello(self):
                return "hi"

        try:
            pul.mount(Thing(), name="thing")
        except ImportError as e:
            print(e)
        else:
            raise SystemExit("mount worked without Ray")
    """, timeout=60)
    assert "pip install 'pulsing[ray]'" in out
