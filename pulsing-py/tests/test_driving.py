"""The loop thread drives the runtime while it waits (``src/drive.rs``, ``_selector.py``): answers
from another process are read on the loop's own thread; the loop's own sockets, timers and
signals still wake it; a loop busy with Python leaves the runtime to the driver thread; and
``PULSING_DRIVE=off`` restores the runtime's own thread."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import pulsing as pul
from conftest import HERE, first_line, run_script
from pulsing import _bridge, _selector, _targets

_CALLS = """
import asyncio, sys
sys.path.insert(0, sys.argv[2])
import pulsing as pul
from pulsing import _bridge
from cluster_actors import Worker

async def main():
    await pul.init(addr="127.0.0.1:0", seeds=[sys.argv[1]])
    w = await Worker.resolve("w", timeout=20)
    assert [await w.add(i, 1) for i in range(200)] == [i + 1 for i in range(200)]
    assert [await w.aecho(i) for i in range(50)] == list(range(50))
    b = _bridge.running_bridge()
    print(type(asyncio.get_running_loop()._selector).__name__, *b.native.wake_ups())
    await pul.shutdown()

asyncio.run(main())
"""


def _wake_ups(node_addr, drive):
    out = run_script(_CALLS, node_addr, str(HERE), env={"PULSING_DRIVE": drive})
    assert out.returncode == 0, out.stderr
    selector, through_pair, while_driving = out.stdout.split()
    return selector, int(through_pair), int(while_driving)


def test_answers_from_another_process_are_read_on_the_loop_thread(py_node):
    node = py_node("--spawn", "w")
    selector, through_pair, while_driving = _wake_ups(node.addr, "on")
    assert selector == "DrivingSelector"
    # 250 sequential calls: each answer reached a loop that was driving the runtime itself,
    # unless the driver thread had it at that moment (the loop away for over a millisecond).
    assert while_driving > through_pair, (through_pair, while_driving)


def test_the_runtime_keeps_its_own_thread_when_loops_do_not_drive(py_node):
    node = py_node("--spawn", "w")
    selector, through_pair, while_driving = _wake_ups(node.addr, "off")
    assert selector != "DrivingSelector"
    assert while_driving == 0 and through_pair > 0


async def test_the_loops_own_sockets_and_timers_still_wake_it(system):
    b = _bridge.running_bridge()  # the bridge wraps the loop's selector
    loop = asyncio.get_running_loop()
    assert isinstance(loop._selector, _selector.DrivingSelector)

    async def echo(reader, writer):
        while data := await reader.read(100):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i in range(100):
        writer.write(b"%d;" % i)
        assert await asyncio.wait_for(reader.readexactly(len(b"%d;" % i)), 10) == b"%d;" % i
    writer.close()
    server.close()
    fired = []
    for i in range(5):
        loop.call_later(0.001 * i, fired.append, i)
    await asyncio.sleep(0.05)
    assert fired == [0, 1, 2, 3, 4]
    # A thread waking the loop (call_soon_threadsafe writes to the loop's self-pipe).
    done = loop.create_future()
    threading.Timer(0.01, loop.call_soon_threadsafe, (done.set_result, "woken")).start()
    assert await asyncio.wait_for(done, 10) == "woken"
    assert b.native.wake_ups() is not None


_BLOCKED = """
import asyncio, sys
import pulsing as pul

async def main():
    await pul.init(addr="127.0.0.1:0", seeds=[sys.argv[1]])
    setter = await pul.resolve("setter", timeout=20)
    pending = []
    for method in sys.argv[2:]:  # calls through its loop first: answered, failed, or pending
        if method.endswith("&"):  # started, not awaited
            pending.append(asyncio.ensure_future(getattr(setter.as_any(), method[:-1])()))
            continue
        try:
            await getattr(setter.as_any(), method)()
        except pul.PulsingActorError:
            pass
    print("READY", flush=True)
    sys.stdin.readline()
    print(await setter.as_any().set(), flush=True)
    await pul.shutdown()

asyncio.run(main())
"""

_RELEASED = threading.Event()


class _Setting:
    def set(self):
        _RELEASED.set()
        return "set"

    def noop(self):
        return None


@pul.remote
class Setter(_Setting):
    pass


@pul.remote
class InlineSetter(_Setting):
    """With an `@pul.inline` method, its `def` calls keep their order with calls on the way
    through the loop; with none on the way, they too go straight to a worker."""

    @pul.inline
    def peek(self):
        return _RELEASED.is_set()

    @pul.inline
    def fail(self):
        raise ValueError("an inline call that fails")

    async def later(self):
        await asyncio.sleep(0.01)

    async def linger(self):
        await asyncio.sleep(60)


# InlineSetter's calls through the loop first (answered, failed, after a wait, and one that
# started and still waits: `peek` after it is answered only once the loop has taken it) must
# leave its `def` calls free to go straight to a worker again.
@pytest.mark.parametrize(
    "cls, warm_up",
    [(Setter, ()), (InlineSetter, ("peek", "fail", "later", "linger&", "peek"))],
)
async def test_a_loop_busy_with_python_leaves_the_runtime_to_the_driver_thread(cls, warm_up):
    # This process's loop blocks in plain Python until a `def` method of one of its own
    # actors runs, called from another process. Nothing reads that call unless the driver
    # thread takes the runtime over from the blocked loop.
    _RELEASED.clear()
    await pul.init(addr="127.0.0.1:0")
    try:
        setter = await cls.spawn(name="setter")
        # A `def` worker now waits for work: a call from another process goes straight to it
        # (with none waiting, the runtime would ask the blocked loop to start one).
        await setter.noop()
        caller = subprocess.Popen(
            [sys.executable, "-c", _BLOCKED, pul.local_addr(), *warm_up],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, first_line, caller.stdout) == "READY\n"
            caller.stdin.write("go\n")
            caller.stdin.flush()
            released = _RELEASED.wait(20)  # the loop thread blocks here, not in its selector
            assert released, "the call was never read while the loop was busy"
            answer = await loop.run_in_executor(None, caller.stdout.readline)
            assert answer == "set\n", caller.stderr.read()
        finally:
            caller.kill()
            caller.wait()
    finally:
        await pul.shutdown()


_IDLE = """
import asyncio
import pulsing as pul
from pulsing import _bridge

async def main():
    await pul.init()
    _bridge.running_bridge()
    print("READY", flush=True)
    await asyncio.sleep(120)

asyncio.run(main())
"""


def test_ctrl_c_reaches_a_loop_that_drives_the_runtime():
    # The loop waits in the runtime's reactor, not in its selector, so Python's signal handler
    # runs only when that wait returns: it is bounded (100 ms) so Ctrl-C is not held up.
    child = subprocess.Popen(
        [sys.executable, "-c", _IDLE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert first_line(child.stdout) == "READY\n"
        time.sleep(0.2)  # waiting in `idle` by now
        child.send_signal(signal.SIGINT)
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            pytest.fail("Ctrl-C did not stop a loop that waits in the runtime")
        assert "KeyboardInterrupt" in child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_closing_a_loop_releases_what_its_bridge_watches():
    code = """
import asyncio, os
import pulsing as pul
from pulsing import _bridge

async def one():
    _bridge.running_bridge()

pul.init()
for _ in range(3):
    asyncio.run(one())
before = len(os.listdir("/proc/self/fd"))
for _ in range(30):
    asyncio.run(one())
print(len(os.listdir("/proc/self/fd")) - before)
pul.shutdown()
"""
    out = run_script(code)
    assert out.returncode == 0, out.stderr
    # Each loop's bridge has a socket pair and a duplicate of the loop's selector: a bridge
    # kept alive after its loop closed would hold 2-3 descriptors per loop for good.
    assert int(out.stdout) < 30, out.stdout


async def test_a_hold_cut_short_by_the_loops_own_socket_does_not_mark_the_target_slow(py_node, cluster_system):
    # A hold ends early when the loop's selector has work (here: a socket with unread data): that
    # says nothing about the target, which must still count as quick (a timed-out hold would
    # mark it slow, and its next calls would no longer hold).
    import socket

    from cluster_actors import Worker

    node = py_node("--spawn", "w")
    await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
    w = await Worker.resolve("w", timeout=20)
    assert await w.add(1, 1) == 2
    target = w.__dict__["_pulsing_target"]
    target = getattr(target, "_target", None) or target  # a lazily resolved target
    assert isinstance(target, _targets._RemoteTarget)
    target.quick = True  # as after a quick call (the first ones may not be, on a busy machine)
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    got = []
    try:
        a.setblocking(False)
        b.send(b"x")  # ready before the call: its reader runs on the loop's next turn
        loop.add_reader(a, lambda: got.append(a.recv(1)))
        assert await w.slow(0.05) == 0.05  # longer than a hold
        assert got == [b"x"]
        assert target.quick, "an interrupted hold marked the target slow"
    finally:
        loop.remove_reader(a)
        a.close()
        b.close()


async def test_the_loops_own_sockets_are_served_while_answers_keep_arriving(py_node, cluster_system):
    # A wait that ends with answers reports only the bridge; the loop's own sockets are polled
    # at the start of its next turn. So a socket must be served between answers, not only once
    # they stop: here calls go on until 200 echoes over a socket are done (a starved socket
    # would keep them going until the bound, and fail).
    from cluster_actors import Worker

    node = py_node("--spawn", "w")
    await pul.init(addr="127.0.0.1:0", seeds=[node.addr])
    w = await Worker.resolve("w", timeout=20)
    assert await w.add(1, 1) == 2

    async def echo(reader, writer):
        while data := await reader.read(100):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])

    async def echoes():
        for i in range(200):
            writer.write(b"%d;" % i)
            assert await reader.readexactly(len(b"%d;" % i)) == b"%d;" % i

    echoing = asyncio.ensure_future(echoes())
    calls = 0
    deadline = asyncio.get_running_loop().time() + 30
    try:
        # Two calls in flight, so an answer is usually on its way while the loop waits.
        while not echoing.done() and asyncio.get_running_loop().time() < deadline:
            assert await asyncio.gather(w.add(calls, 1), w.add(1, calls)) == [calls + 1] * 2
            calls += 1
        assert echoing.done(), f"the socket was starved: {calls} rounds of calls"
        echoing.result()
    finally:
        echoing.cancel()
        await asyncio.gather(echoing, return_exceptions=True)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()


def test_a_wait_ended_by_events_reports_the_bridge_and_the_next_turn_the_rest():
    # A wait in the runtime that ends with events for the loop reports the bridge's reader
    # alone (no second poll of the loop's selector); a socket that became ready during that
    # wait is reported by the poll that opens the next turn, not lost.
    import selectors
    import socket

    class Runtime:  # stands in for `_native.Bridge`: its wait ends with events pending
        def __init__(self, during):
            self.during = during

        def idle(self, timeout):
            self.during()
            return True

    inner = selectors.DefaultSelector()
    bridge_r, bridge_w = socket.socketpair()
    sock_r, sock_w = socket.socketpair()
    try:
        inner.register(bridge_r, selectors.EVENT_READ, "bridge")
        inner.register(sock_r, selectors.EVENT_READ, "socket")
        wrapped = _selector.DrivingSelector(
            inner, Runtime(lambda: sock_w.send(b"x")), bridge_r.fileno(), lambda: None
        )
        assert [key.data for key, _ in wrapped.select(1)] == ["bridge"]
        assert [key.data for key, _ in wrapped.select(1)] == ["socket"]
    finally:
        inner.close()
        for s in (bridge_r, bridge_w, sock_r, sock_w):
            s.close()


def test_two_loops_in_two_threads_both_get_every_answer(py_node):
    # One loop at a time can drive the runtime; the other waits in its selector and is woken
    # through its bridge's socket pair by whichever thread drives. Both must get every answer.
    node = py_node("--spawn", "w")
    code = """
import asyncio, sys, threading
sys.path.insert(0, sys.argv[2])
import pulsing as pul
from pulsing import _bridge
from cluster_actors import Worker

pul.init(addr="127.0.0.1:0", seeds=[sys.argv[1]])
results, errors = {}, []

def run(tag):
    async def calls():
        w = await Worker.resolve("w", timeout=20)
        got = [await w.add(i, 1) for i in range(300)]
        got += await asyncio.gather(*(w.aecho(i) for i in range(100)))
        b = _bridge.running_bridge()
        return got, b.native.wake_ups()
    try:
        results[tag] = asyncio.run(calls())
    except BaseException as e:
        errors.append(repr(e))

threads = [threading.Thread(target=run, args=(t,)) for t in "ab"]
for t in threads: t.start()
for t in threads: t.join(60)
assert not errors, errors
for tag, (got, wake_ups) in sorted(results.items()):
    assert got == [i + 1 for i in range(300)] + list(range(100)), tag
    print(tag, *wake_ups)
pul.shutdown()
"""
    out = run_script(code, node.addr, str(HERE), timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert [line.split()[0] for line in lines if line] == ["a", "b"], out.stdout
