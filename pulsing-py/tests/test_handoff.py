"""`def` methods called from the actor's own loop: the loop holds briefly for a quick answer,
never for long, and every answer arrives whichever way it goes."""

import asyncio
import collections
import threading
import time

import pytest

import pulsing as pul
from conftest import HERE, longest_run_without_a_turn, run_script
from pulsing import _bridge, _native, _targets


@pul.remote
class Worker:
    def __init__(self):
        self.loop = asyncio.get_running_loop()
        self.calls = 0

    def quick(self, x):
        self.calls += 1
        return x

    def quick_fail(self):
        raise ValueError("quick failure")

    def slow_fail(self):
        time.sleep(0.01)
        raise ValueError("slow failure")

    def ask_loop(self):
        """Needs the actor's own loop while it runs: a loop held without bound would hang."""
        done = asyncio.run_coroutine_threadsafe(asyncio.sleep(0, "from the loop"), self.loop)
        return done.result(timeout=5)


async def test_quick_answers_and_errors_arrive(system):
    w = await Worker.spawn()
    assert [await w.quick(i) for i in range(200)] == list(range(200))
    for _ in range(3):
        with pytest.raises(pul.PulsingActorError, match="quick failure") as e:
            await w.quick_fail()
        assert e.value.type_name == "ValueError"
    assert await w.quick(1) == 1  # the actor keeps serving


async def test_held_calls_still_let_the_loop_turn(system):
    w = await Worker.spawn()
    holds = _bridge.running_bridge().holds
    calls = [lambda i=i: w.quick(i) for i in range(500)]
    assert await longest_run_without_a_turn(calls) <= 2 * _bridge._TURN_EVERY
    assert _bridge.running_bridge().holds > holds  # the loop did hold (a quick answer within 100 µs)
    assert await w.quick("last") == "last"


async def test_answers_after_the_loop_stopped_holding(system):
    w = await Worker.spawn()
    for _ in range(3):
        with pytest.raises(pul.PulsingActorError, match="slow failure"):
            await w.slow_fail()
    # Its last run was slow, so the next call does not hold; then quick ones hold again.
    assert [await w.quick(i) for i in range(10)] == list(range(10))


async def test_a_def_method_may_wait_for_its_own_loop(system):
    w = await Worker.spawn()
    for _ in range(3):
        assert await asyncio.wait_for(w.ask_loop(), 10) == "from the loop"


async def test_concurrent_callers_get_their_own_answers(system):
    w = await Worker.spawn()
    got = await asyncio.gather(*(w.quick(i) for i in range(1000)))
    assert got == list(range(1000))
    assert await w.quick(None) is None


@pul.remote(serial=True)
class SerialWorker:
    async def slow(self):
        await asyncio.sleep(0.05)
        return "slow"

    def quick(self):
        return "quick"


@pul.remote
class Ticker:
    def ticks(self):
        i = 0
        while True:  # endless: only a stop ends it
            time.sleep(0.0005)
            yield i
            i += 1

    async def aticks(self):
        i = 0
        while True:
            await asyncio.sleep(0.0005)
            yield i
            i += 1


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no message either")


@pul.remote
class Raiser:
    def boom(self):
        raise Unprintable()

    def ok(self):
        return "ok"


async def test_def_calls_queued_around_a_stop_still_answer(system):
    """Calls already on their way into the actor's queue when it stops run as queued."""
    s = await SerialWorker.spawn()
    first = asyncio.ensure_future(s.slow())
    second = asyncio.ensure_future(s.quick())  # waits for the serial lock
    await asyncio.sleep(0.01)
    pul.stop(s)
    assert await asyncio.wait_for(first, 5) == "slow"
    assert await asyncio.wait_for(second, 5) == "quick"

    for method in ("ticks", "aticks"):
        t = await Ticker.spawn()
        got = []

        async def consume():
            async for x in getattr(t, method)():
                got.append(x)
                if len(got) == 3:
                    pul.stop(t)

        # An endless stream of a stopped actor ends (after the items already made).
        with pytest.raises(pul.PulsingStoppedError):
            await asyncio.wait_for(consume(), 5)
        assert got[:3] == [0, 1, 2] and len(got) < 1000


async def test_an_exception_that_cannot_print_still_reaches_the_caller(system):
    r = await Raiser.spawn()
    for _ in range(2):
        with pytest.raises(pul.PulsingActorError, match="unprintable") as e:
            await asyncio.wait_for(r.boom(), 5)
        assert e.value.type_name == "Unprintable"
    assert await asyncio.wait_for(r.ok(), 5) == "ok"


def test_host_queue_keeps_local_calls_after_close():
    q = _native.HostQueue()
    assert q.push_local() is True  # start a drain
    assert q.busy()
    q.close()  # the actor stopped: its queued local calls still run
    assert q.push_local() is False  # already being drained
    assert q.next() is True and q.next() is True
    assert q.next() is None and not q.busy()
    assert q.try_enter() and not q.try_enter()
    assert q.leave() is False and not q.busy()


def test_slot_gives_up_then_refuses_the_claim():
    slot = _native.Slot()
    assert slot.wait(200) is None
    assert slot.claim(True, "late") is False


def test_slot_answer_claimed_before_the_wait():
    slot = _native.Slot()
    assert slot.claim(False, "err") is True
    slot.publish()
    assert slot.wait(0) == (False, "err")


def test_a_claimed_slot_is_the_waiters_even_unpublished():
    slot = _native.Slot()
    assert slot.claim(True, 42) is True
    assert slot.wait(100) == (True, 42)  # a worker that never publishes cannot hang the loop
    assert slot.claim(True, 43) is False


def test_job_queue_hands_jobs_to_a_sleeping_worker_and_publishes():
    jobs = _native.JobQueue()
    pending = collections.deque()  # the callables, as `_SyncPool` keeps them
    got = []

    def worker():
        slot = None
        while got[-1:] != ["stop"]:
            assert jobs.get(slot) is None  # a local job (an int would be a drain)
            slot = pending.popleft()()

    def submit(job):
        pending.append(job)
        return jobs.put()

    slot = _native.Slot()

    def job():
        got.append("ran")
        assert slot.claim(True, "answer")
        return slot  # published by `get`, after the worker let go of the GIL

    assert submit(lambda: got.append("first")) is True  # no worker waits: start one
    t = threading.Thread(target=worker, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    # Until it ran the first job and waits for the next (it counts as waiting from the moment
    # it enters `get`, before it takes even the first job).
    while not (got == ["first"] and jobs.waiting() == 1):
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert submit(job) is False  # a waiting worker takes it
    assert slot.wait(5_000_000) == (True, "answer")
    submit(lambda: got.append("stop"))
    t.join(5)
    assert got == ["first", "ran", "stop"] and not t.is_alive() and len(jobs) == 0


HOLD_OFF = """
import asyncio, sys
sys.path.insert(0, sys.argv[1])
import pulsing as pul
from conftest import HERE, longest_run_without_a_turn, run_script
from pulsing import _bridge

@pul.remote
class W:
    def quick(self, x):
        return x

async def main():
    await pul.init()
    w = await W.spawn()
    calls = [lambda i=i: w.quick(i) for i in range(200)]
    print(await longest_run_without_a_turn(calls), _bridge.running_bridge().holds)
    await pul.shutdown()

asyncio.run(main())
"""


def test_holding_can_be_turned_off():
    """`PULSING_HOLD=off`: every call awaits its answer, so each one gives the loop a turn."""
    out = run_script(HOLD_OFF, str(HERE), env={"PULSING_HOLD": "off"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "0"]


@pul.remote
class Numbers:
    def numbers(self, n):
        yield from range(n)


async def test_a_stream_served_through_the_runtime_leaves_no_waiter(system):
    """A stream that met a full buffer leaves nothing behind on its loop (a stale waiter would
    also stop that loop's calls from ever holding)."""
    await Numbers.spawn(name="numbers")
    b = _bridge.running_bridge()
    token, fut = b.future()
    _native.resolve(b.native, token, "numbers", None)
    through_runtime = pul.ActorRef(_targets._RemoteTarget(await fut)).as_any()
    got = 0
    async for _ in through_runtime.numbers(20_000):
        got += 1
        if got % 1000 == 0:
            await asyncio.sleep(0.002)  # a slow consumer: the producer waits for room
    assert got == 20_000
    await asyncio.sleep(0.05)
    assert b.waiters == {}


def test_spinning_can_be_turned_off():
    """`PULSING_SPIN_US=0`: waiters on a call's path park at once, whatever the machine's load
    (issue #15); holding still works, parked."""
    script = HOLD_OFF.replace(
        "print(await longest_run_without_a_turn(calls), _bridge.running_bridge().holds)",
        "await longest_run_without_a_turn(calls)\n"
        "    print(pul._native.spin_allowed(), _bridge.running_bridge().holds > 0)",
    )
    out = run_script(script, str(HERE), env={"PULSING_SPIN_US": "0"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
