"""The Python half of Pulsing: the decorator, actor hosts, proxies and the asyncio bridge.

Execution model
---------------
* A Python actor lives on the asyncio event loop that spawned it.
* ``async def`` methods run on that loop and may interleave at ``await`` points (as in Ray's
  async actors). A local call runs the method directly in the caller's task: no thread hop.
* ``def`` methods run one at a time per actor, on a worker thread (a shared pool; each actor's
  calls are drained in order by one worker at a time), so a slow ``def`` never blocks the loop
  or any other actor. Results go back to the loop in batches.
* ``@pul.remote(serial=True)`` makes an actor strictly one-at-a-time: every method, sync or
  async, waits for the previous one. Calls made by the actor itself while it runs (directly or
  through other actors: A -> B -> A) are re-entrant, so they never deadlock.
* Generator methods (``async def`` with ``yield``, or ``def`` with ``yield``) stream: the consumer
  uses ``async for``. A sync generator is pulled on the worker thread in chunks.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextvars
import importlib
import inspect
import itertools
import os
import sys
import threading
import time
import traceback
import types
import weakref
from typing import Any, Optional

from . import _native
from ._errors import (
    PulsingActorError,
    PulsingBadArgumentsError,
    PulsingDecodeError,
    PulsingError,
    PulsingNameTakenError,
    PulsingNotFoundError,
    PulsingStoppedError,
    PulsingTimeoutError,
    PulsingTypeMismatchError,
    PulsingUnknownMethodError,
    from_native,
)

# ---------------------------------------------------------------------------------------------
# Global state

_state: Optional[tuple] = None  # the arguments of the running init
_generation = 0  # bumped by shutdown: hosts of an older generation are stopped
_NAMES: "dict[str, _Host]" = {}  # named Python actors of this process
_HOSTS: "dict[int, _Host]" = {}  # named Python actors by id, for calls coming through Rust
# Hosts whose `def` calls the runtime may queue, by id: kept (weakly) after they stop, so that
# calls already queued still drain.
_DRAINS: "weakref.WeakValueDictionary[int, _Host]" = weakref.WeakValueDictionary()
_host_ids = itertools.count(1)
class _SyncPool:
    """Worker threads for ``def`` methods: a job is one actor's drain loop.

    Leaner than ``ThreadPoolExecutor`` (no future per job): one native queue that idle workers
    wait on (after handing an answer to a loop that holds for it, a worker spins 50 µs for the
    next job before it sleeps). The runtime queues drains into it too, for calls from other
    processes, but only when a worker waits to take them; a worker is started whenever jobs
    outnumber waiting workers, up to ``max_threads``, so one actor's slow method never holds
    back another's. Workers are daemon threads, so an idle one never delays interpreter exit.
    """

    def __init__(self, max_threads: int = 64) -> None:
        self.jobs = _native.JobQueue()  # counts `pending` and holds the runtime's drains
        self.pending: collections.deque = collections.deque()
        self.lock = threading.Lock()
        self.threads = 0
        self.max_threads = max_threads

    def submit(self, job) -> None:
        self.pending.append(job)
        if not self.jobs.put():
            return  # a waiting worker takes it
        with self.lock:
            if self.threads >= self.max_threads:
                return
            self.threads += 1
        threading.Thread(target=self._work, name="pulsing-sync", daemon=True).start()

    def _work(self) -> None:
        jobs, pending = self.jobs, self.pending
        publish = None
        while True:
            drain = jobs.get(publish)
            publish = None
            try:
                if drain is None:
                    publish = pending.popleft()()
                else:  # drain that actor's calls (queued by the runtime)
                    host = _DRAINS.get(drain)
                    if host is not None:
                        publish = host._drain_sync()
            except BaseException:  # noqa: BLE001 - a worker outlives any job
                traceback.print_exc()


_POOL = _SyncPool()
# Holding the loop. When a call is the only thing its event loop waits for, the loop thread
# waits for the answer itself for a short while (spinning, with the GIL released) before it
# awaits like any other call: a quick answer then needs no wake-up of a sleeping thread, which
# costs 15-30 µs per hop on a small VM. The bounds: a `def` call on the actor's own loop holds
# up to `_HOLD_LOCAL_US` (only while the actor's last run took under `_QUICK_RUN` s), a call
# through the runtime up to `_HOLD_REMOTE_US` (only while that target's last call answered
# within it). Every `_TURN_EVERY`th held call still gives the loop a turn, so a run of quick
# calls does not keep the loop from its other sockets and timers. `PULSING_HOLD=off` turns
# holding off (calls then always await: no spinning, one wake-up more per hop).
_HOLDS = os.environ.get("PULSING_HOLD", "on").lower() not in ("off", "0", "no", "false")
_HOLD_LOCAL_US = 100 if _HOLDS else 0
_QUICK_RUN = 20e-6
_HOLD_REMOTE_US = 200 if _HOLDS else 0
_TURN_EVERY = 16
# The serial actors whose call is in progress up the current call chain, as "process:actor"
# strings; carried along with calls to Python actors in other processes (the `$pulsing_chain`
# keyword), so that A -> B -> A is re-entrant across processes too.
_chain: contextvars.ContextVar[tuple] = contextvars.ContextVar("pulsing_chain", default=())
_PROCESS = os.urandom(6).hex()
_CHAIN_KW = "$pulsing_chain"
# `create_task(context=...)` (Python 3.11+) lets a call's first step run before its task exists.
_EAGER = sys.version_info >= (3, 11)


class _Done:
    """An already-finished awaitable: lets ``init``/``shutdown`` work with or without ``await``."""

    __slots__ = ()

    def __await__(self):
        return iter(())


def init(
    addr: Optional[str] = None,
    *,
    seeds: "list[str] | tuple[str, ...]" = (),
    secret: "str | bytes | None" = None,
    call_timeout: Optional[float] = 30.0,
    advertise: Optional[str] = None,
) -> _Done:
    """Starts Pulsing in this process. Works from sync code too (``await`` is optional).

    Without ``addr`` the system is standalone. With ``addr`` (``"127.0.0.1:0"`` picks a free port,
    read it back with :func:`local_addr`) it joins the cluster through ``seeds``. Calling ``init``
    again with the same arguments returns the running system; with different ones it raises.
    """
    global _state
    if isinstance(secret, str):
        secret = secret.encode()
    args = (addr, tuple(seeds), secret, call_timeout, advertise)
    if _state is not None:
        if _state == args and _native.is_initialized():
            return _Done()
        raise PulsingError(
            "pulsing is already initialized with other arguments; call pul.shutdown() first"
        )
    try:
        _native.init(addr, list(seeds), secret, call_timeout, advertise)
    except _native.PulsingNativeError as e:
        raise from_native(e) from None
    _state = args
    return _Done()


def shutdown() -> _Done:
    """Stops every local actor and leaves the cluster. Works with or without ``await``."""
    global _state, _generation
    _generation += 1
    _NAMES.clear()
    _HOSTS.clear()
    _state = None
    _native.shutdown()
    return _Done()


def _atexit() -> None:
    global _generation
    _generation += 1
    _NAMES.clear()
    _HOSTS.clear()
    # Shuts the system and the tokio runtime down before the interpreter finalizes; no Rust
    # thread holds a Python object, so nothing can touch Python after this.
    _native.finalize()


atexit.register(_atexit)


def _require_init() -> None:
    if _state is None:
        raise PulsingError("pulsing is not initialized: call `await pul.init()` first")


def local_addr() -> Optional[str]:
    """The address this node listens on (``None`` when standalone)."""
    _require_init()
    return _native.local_addr()


def advertised_addr() -> Optional[str]:
    """The address this node advertises to peers (``None`` when standalone)."""
    _require_init()
    return _native.advertised_addr()


def members() -> "list[dict]":
    """The live members of the cluster, this node included."""
    _require_init()
    return _native.members()


def instances(name: str) -> "list[dict]":
    """Every instance of ``name`` in the cluster (local first)."""
    _require_init()
    return _native.instances(name)


# ---------------------------------------------------------------------------------------------
# The bridge: completions from Rust arrive on the loop in batches


class _LoopBridge:
    __slots__ = ("loop", "native", "waiters", "tokens", "holds", "draining", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.native = _native.Bridge()
        self.waiters: dict = {}
        self.tokens = itertools.count(1)
        self.holds = 0
        self.draining = False  # inside `_drain`: the rest of its batch waits
        loop.add_reader(self.native.fileno(), self._drain)

    def may_hold(self) -> bool:
        """True if the loop has nothing else ready to run, so a call may hold it briefly.
        (Only asyncio's own loops say so; on any other loop, calls never hold.)"""
        ready = getattr(self.loop, "_ready", None)
        return ready is not None and not ready and not self.draining

    async def after_hold(self) -> None:
        """Counts a held call; every ``_TURN_EVERY``th gives the loop a turn."""
        self.holds += 1
        if self.holds % _TURN_EVERY == 0:
            await asyncio.sleep(0)

    def hold_remote(self) -> bool:
        """Holds the loop up to ``_HOLD_REMOTE_US`` for an event; settles what came (False if
        nothing did). Replies are settled at once; calls for this loop's actors wait for the
        loop's next turn, so they never run inside the holding task."""
        if not self.native.hold(_HOLD_REMOTE_US):
            return False
        waiters, loop = self.waiters, self.loop
        for ev in self.native.take():
            if ev[0] in (3, 4):
                loop.call_soon(self._settle, ev, waiters)
            else:
                self._settle(ev, waiters)
        return True

    def future(self):
        token = next(self.tokens)
        fut = self.loop.create_future()
        self.waiters[token] = fut
        return token, fut

    def _drain(self) -> None:
        waiters = self.waiters
        self.draining = True
        try:
            for ev in self.native.take():
                self._settle(ev, waiters)
        finally:
            self.draining = False

    def _settle(self, ev, waiters) -> None:
        tag = ev[0]
        if tag == 3:
            _incoming(self, ev)
            return
        if tag == 4:
            host = _HOSTS.get(ev[1])
            if host is not None:
                host.native = None  # already stopped in the runtime
                host.stop()
            return
        if tag == 5:  # an actor's `def` calls from the runtime need a worker
            host = _DRAINS.get(ev[1])
            if host is not None:
                _POOL.submit(host._drain_sync)
            return
        fut = waiters.pop(ev[1], None)
        if fut is None or fut.done():
            return
        if tag == 2:
            fut.set_result(ev)
        elif ev[2]:
            fut.set_result(ev[3])
        else:
            fut.set_exception(from_native(ev[3]))


_bridges: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBridge]" = (
    weakref.WeakKeyDictionary()
)
_last_bridge: Optional[_LoopBridge] = None


def _bridge_for(loop: asyncio.AbstractEventLoop) -> _LoopBridge:
    global _last_bridge
    b = _last_bridge
    if b is not None and b.loop is loop:
        return b
    b = _bridges.get(loop)
    if b is None:
        b = _LoopBridge(loop)
        _bridges[loop] = b
    _last_bridge = b
    return b


def _bridge() -> _LoopBridge:
    return _bridge_for(asyncio.get_running_loop())


# ---------------------------------------------------------------------------------------------
# Classes and hosts


class _ClassInfo:
    """What Pulsing knows of a ``@pul.remote`` class: its methods and how they run."""

    def __init__(self, cls: type, serial: bool) -> None:
        self.cls = cls
        self.name = cls.__qualname__
        self.serial = serial
        self.kinds: dict[str, str] = {}
        spec = []
        for attr in dir(cls):
            if attr.startswith("_"):
                continue
            fn = inspect.getattr_static(cls, attr)
            if isinstance(fn, (staticmethod, classmethod)) or not inspect.isfunction(fn):
                continue
            if inspect.isasyncgenfunction(fn):
                kind = "agen"
            elif inspect.isgeneratorfunction(fn):
                kind = "gen"
            elif inspect.iscoroutinefunction(fn):
                kind = "async"
            elif getattr(fn, "__pulsing_inline__", False):
                kind = "inline"
            else:
                kind = "sync"
            self.kinds[attr] = kind
            try:
                params = [p for p in inspect.signature(fn).parameters][1:]
            except (TypeError, ValueError):
                params = []
            doc = inspect.getdoc(fn) or ""
            spec.append((attr, params, kind in ("gen", "agen"), kind in ("async", "agen"), doc))
        self.spec = spec

    def interface(self) -> dict:
        return {
            "actor": self.name,
            "methods": [
                {
                    "name": name,
                    "params": [{"name": p, "ty": "Any"} for p in params],
                    "returns": "Any",
                    "kind": "Stream" if stream else "Call",
                    "is_async": is_async,
                    "doc": doc,
                }
                for name, params, stream, is_async, doc in self.spec
            ],
        }


def _direct(info: _ClassInfo, host: "_Host"):
    """What the runtime may queue for the workers directly: the plain ``def`` methods of an
    actor that is neither serial (its calls go through its loop and lock) nor has any
    ``@pul.inline`` method."""
    if info.serial or "inline" in info.kinds.values():
        # (`@pul.inline` calls run on the loop, so all calls go through it to keep their order.)
        return None
    methods = [m for m, kind in info.kinds.items() if kind == "sync"]
    return (methods, host.sync, _POOL.jobs) if methods else None


class _Host:
    """One running Python actor: its instance, its loop, and its sync-call queue."""

    __slots__ = (
        "id", "info", "instance", "loop", "lock", "sync_q", "sync",
        "name", "native", "generation", "stopped", "chain_id", "quick", "__weakref__",
    )

    def __init__(self, info: _ClassInfo, instance: Any, loop, name: Optional[str]) -> None:
        self.id = next(_host_ids)
        self.chain_id = f"{_PROCESS}:{self.id}"
        self.info = info
        self.instance = instance
        self.loop = loop
        self.lock = asyncio.Lock() if info.serial else None
        # Its `def` calls from this process (the order of these and of calls through the
        # runtime, and who drains them, is kept by `sync`).
        self.sync_q: collections.deque = collections.deque()
        self.sync = _native.HostQueue()
        self.quick = True  # its last `def` run was short: worth holding the loop for the answer
        self.name = name
        self.native = None
        self.generation = _generation
        self.stopped = False

    def label(self) -> str:
        if self.name is not None:
            return f'{self.info.name}#{self.id} "{self.name}"'
        return f"{self.info.name}#{self.id}"

    def is_stopped(self) -> bool:
        if self.stopped or self.generation != _generation:
            return True
        if self.loop.is_closed():
            # Its event loop has ended (asyncio.run returned): the actor cannot run any more.
            self.stop()
            return True
        return False

    def stop(self) -> None:
        self.stopped = True
        self.sync.close()
        if self.name is not None and _NAMES.get(self.name) is self:
            del _NAMES[self.name]
        _HOSTS.pop(self.id, None)
        if self.native is not None:
            try:
                self.native.stop()
            except Exception:
                pass

    # -- sync methods: one at a time, on a worker thread ---------------------------------

    def run_sync(self, fn, args, kwargs, method: str) -> asyncio.Future:
        fut = self.loop.create_future()
        self._queue_sync((fn, args, kwargs, fut, method, None, None))
        return fut

    async def call_sync(self, fn, args, kwargs, method: str):
        """Runs ``fn`` on the worker; when the actor is idle and its methods are quick, holds
        the loop up to ``_HOLD_LOCAL_US`` for the answer before awaiting it."""
        b = _bridge_for(self.loop)
        if not _HOLD_LOCAL_US or not self.quick or self.sync.busy() or not b.may_hold():
            return await self.run_sync(fn, args, kwargs, method)
        fut = self.loop.create_future()
        slot = _native.Slot()
        self._queue_sync((fn, args, kwargs, fut, method, None, slot))
        answer = slot.wait(_HOLD_LOCAL_US)
        if answer is None:
            return await fut
        await b.after_hold()
        ok, value = answer
        if ok:
            return value
        raise value

    def run_sync_for(self, reply, fn, args, kwargs, method: str) -> None:
        """Like ``run_sync`` for a call that came through the runtime: the worker thread answers
        ``reply`` itself, so the answer does not wait for the event loop to wake up."""
        self._queue_sync((fn, args, kwargs, None, method, reply, None))

    def _queue_sync(self, job) -> None:
        self.sync_q.append(job)
        if self.sync.push_local():
            _POOL.submit(self._drain_sync)

    def _drain_sync(self) -> "Optional[Any]":
        """Runs the actor's queued ``def`` calls in order. Returns a claimed slot that the
        worker publishes once it has let go of the GIL (see ``_native.JobQueue.get``)."""
        done = []  # answers for the loop, delivered in batches
        held = True  # the queue is still ours (busy)
        q, calls = self.sync_q, self.sync
        try:
            while True:
                item = calls.next()
                if item is None:
                    held = False  # the queue is empty and no longer busy
                    return None
                if item is not True:
                    self._run_remote(*item)
                    continue
                fn, args, kwargs, fut, method, reply, slot = q.popleft()
                if reply is not None:
                    _run_for(self, method, reply, fn, args, kwargs)
                    continue
                start = time.perf_counter()
                try:
                    ok, value = True, fn(*args, **kwargs)
                except BaseException as e:  # noqa: BLE001 - every failure goes to the caller
                    ok, value = False, _raised(self, method, e)
                self.quick = time.perf_counter() - start < _QUICK_RUN
                if slot is not None and slot.claim(ok, value):
                    # The loop is holding for this answer.
                    if calls.finish():
                        held = False
                        return slot
                    slot.publish()
                    continue
                done.append((fut, ok, value))
                if len(done) >= 32:
                    self._deliver(done)
                    done = []
        except BaseException:
            if held:
                _POOL.submit(self._drain_sync)  # go on elsewhere with the rest
            raise
        finally:
            if done:
                self._deliver(done)

    def _run_remote(self, method: str, args, kwargs, reply) -> None:
        """A ``def`` call that the runtime queued here directly (from another process or a
        Rust caller): answered by this worker, without the event loop."""
        kwargs.pop(_CHAIN_KW, None)  # only serial actors use the chain; this one is not
        if self.is_stopped():
            reply.stopped(self.label())
            return
        try:
            fn = getattr(self.instance, method)
        except BaseException as e:  # noqa: BLE001 - every failure goes to the caller
            _fail(self, method, reply, e)
            return
        _run_for(self, method, reply, fn, args, kwargs)

    def _deliver(self, done) -> None:
        try:
            self.loop.call_soon_threadsafe(_set_results, done)
        except RuntimeError:
            pass  # the loop is closed: nobody waits any more


def _run_for(host: "_Host", method: str, reply, fn, args, kwargs) -> None:
    """Runs a ``def`` call that came through the runtime and answers ``reply``; never raises,
    so the actor's worker goes on with its next call."""
    try:
        value = fn(*args, **kwargs)
    except BaseException as e:  # noqa: BLE001 - every failure goes to the caller
        try:
            _fail(host, method, reply, _raised(host, method, e))
        except BaseException:  # noqa: BLE001 - even the exception would not report
            reply.raised(host.label(), method, type(e).__name__, "(unprintable exception)", "")
    else:
        _send(host, method, reply, value)


def _set_results(done) -> None:
    for fut, ok, value in done:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def _raised(host: _Host, method: str, e: BaseException) -> PulsingActorError:
    try:
        message = str(e)
    except BaseException:  # noqa: BLE001 - an exception whose message itself fails
        message = "(unprintable exception)"
    try:
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
    except BaseException:  # noqa: BLE001
        tb = ""
    return PulsingActorError(
        message, type_name=type(e).__name__, remote_traceback=tb, actor=host.label(), method=method
    )


def _unknown(host: _Host, method: str) -> PulsingUnknownMethodError:
    available = ", ".join(host.info.kinds)
    return PulsingUnknownMethodError(
        f"{host.label()} has no remote method `{method}` (it has: {available})"
    )


async def _invoke(host: _Host, method: str, args, kwargs):
    """Runs one call of ``method`` on ``host`` from the current task."""
    if host.is_stopped():
        raise PulsingStoppedError(f"{host.label()} is stopped")
    kind = host.info.kinds.get(method)
    if kind is None:
        raise _unknown(host, method)
    if kind in ("gen", "agen"):
        raise PulsingBadArgumentsError(f"{host.label()}.{method}() streams: use `async for`")
    if asyncio.get_running_loop() is not host.loop:
        # The actor lives on another loop (another thread): run the call there.
        cf = asyncio.run_coroutine_threadsafe(_invoke(host, method, args, kwargs), host.loop)
        return await asyncio.wrap_future(cf)
    if host.lock is None:
        return await _run_method(host, kind, method, args, kwargs)
    return await _invoke_serial(host, kind, method, args, kwargs)


async def _run_method(host: _Host, kind: str, method: str, args, kwargs):
    """Runs a call method the way its kind says: `async def` in this task, `@inline` on the loop,
    plain `def` on the actor's worker thread."""
    if kind == "async":
        try:
            return await getattr(host.instance, method)(*args, **kwargs)
        except Exception as e:
            raise _raised(host, method, e) from None
    if kind == "inline" and host.sync.try_enter():
        try:
            return _run_inline(host, method, args, kwargs)
        finally:
            if host.sync.leave():
                _POOL.submit(host._drain_sync)
    return await host.call_sync(getattr(host.instance, method), args, kwargs, method)


async def _invoke_serial(host: _Host, kind: str, method: str, args, kwargs):
    chain = _chain.get()
    reentrant = host.chain_id in chain
    if not reentrant:
        await host.lock.acquire()
    token = _chain.set(chain + (host.chain_id,))
    try:
        return await _run_method(host, kind, method, args, kwargs)
    finally:
        _chain.reset(token)
        if not reentrant:
            host.lock.release()


def _run_inline(host: _Host, method: str, args, kwargs):
    """An ``@pul.inline`` method, on the loop, while it holds the actor's `def` queue (taken only
    when no ``def`` call is queued or running), so ``def`` methods still run one at a time and
    in order."""
    try:
        return getattr(host.instance, method)(*args, **kwargs)
    except Exception as e:
        raise _raised(host, method, e) from None


def _pull_chunk(gen, max_items: int = 256, max_seconds: float = 0.002):
    """Pulls up to ``max_items`` from a sync generator (on the worker thread)."""
    items = []
    deadline = time.monotonic() + max_seconds
    try:
        for item in gen:
            items.append(item)
            if len(items) >= max_items or time.monotonic() >= deadline:
                return items, False, None
        return items, True, None
    except Exception as e:  # noqa: BLE001
        return items, True, e


async def _local_stream(host: _Host, method: str, args, kwargs):
    """The items of a streaming method of a local actor, pulled by the consumer."""
    if host.is_stopped():
        raise PulsingStoppedError(f"{host.label()} is stopped")
    kind = host.info.kinds.get(method)
    if kind is None:
        raise _unknown(host, method)
    if kind not in ("gen", "agen"):
        raise PulsingBadArgumentsError(
            f"{host.label()}.{method}() is not a streaming method: use `await`"
        )
    if asyncio.get_running_loop() is not host.loop:
        raise PulsingError("streams from an actor on another event loop are not supported")
    fn = getattr(host.instance, method)
    if kind == "agen":
        try:
            agen = fn(*args, **kwargs)
        except Exception as e:
            raise _raised(host, method, e) from None
        try:
            while True:
                if host.stopped:
                    raise PulsingStoppedError(f"{host.label()} is stopped")
                try:
                    item = await agen.__anext__()
                except StopAsyncIteration:
                    return
                except Exception as e:
                    raise _raised(host, method, e) from None
                yield item
        finally:
            await agen.aclose()
    else:
        try:
            gen = fn(*args, **kwargs)
        except Exception as e:
            raise _raised(host, method, e) from None
        finished = False
        try:
            while not finished:
                if host.is_stopped():
                    raise PulsingStoppedError(f"{host.label()} is stopped")
                items, finished, exc = await host.run_sync(_pull_chunk, (gen,), {}, method)
                for item in items:
                    yield item
                if exc is not None:
                    raise _raised(host, method, exc) from None
        finally:
            if not finished:
                # On the worker, after a pull that may still run (cancelled while waiting).
                host.run_sync(gen.close, (), {}, method)


# ---------------------------------------------------------------------------------------------
# Calls that arrive through Rust (from another process, or a Rust caller)


def _incoming(bridge: _LoopBridge, ev) -> None:
    _, host_id, method, args, kwargs, reply, stream = ev
    host = _HOSTS.get(host_id)
    if host is None or host.is_stopped():
        if stream:
            reply.raised("actor", method, "PulsingStoppedError", "the actor is stopped", "")
        else:
            reply.stopped(host.label() if host is not None else f"actor#{host_id}")
        return
    if stream:
        bridge.loop.create_task(_serve_stream(bridge, host, method, args, kwargs, reply))
        return
    kind = host.info.kinds.get(method)
    chain = kwargs.pop(_CHAIN_KW, None)
    if chain is not None:
        # A call from a serial actor's call chain in another process: run it in that chain.
        task = bridge.loop.create_task(_in_chain(tuple(chain), _invoke(host, method, args, kwargs)))
        task.add_done_callback(lambda f: _answer(host, method, reply, f))
    elif kind == "sync" and host.lock is None:
        host.run_sync_for(reply, getattr(host.instance, method), args, kwargs, method)
    else:
        coro = _invoke(host, method, args, kwargs)
        if not _EAGER:
            task = bridge.loop.create_task(coro)
            task.add_done_callback(lambda f: _answer(host, method, reply, f))
            return
        # Run the call's first step right here (in its own context, which the task then goes on
        # in): a method that finishes without waiting needs no task at all.
        ctx = contextvars.copy_context()
        try:
            first = ctx.run(coro.send, None)
        except StopIteration as done:
            _send(host, method, reply, done.value)
            return
        except BaseException as e:  # noqa: BLE001 - every failure goes to the caller
            _fail(host, method, reply, e)
            if isinstance(e, (KeyboardInterrupt, SystemExit)):
                raise
            return
        task = bridge.loop.create_task(_resume(coro, first), context=ctx)
        task.add_done_callback(lambda f: _answer(host, method, reply, f))


async def _in_chain(chain: tuple, coro):
    _chain.set(chain)  # the task's own context
    return await coro


@types.coroutine
def _continue(coro, yielded):
    """Drives a coroutine whose first step already ran (it yielded ``yielded``)."""
    while True:
        try:
            sent = yield yielded
        except BaseException as e:  # noqa: BLE001 - thrown in by the task (cancel)
            step, arg = coro.throw, e
        else:
            step, arg = coro.send, sent
        try:
            yielded = step(arg)
        except StopIteration as done:
            return done.value


async def _resume(coro, first):
    return await _continue(coro, first)


def _send(host: _Host, method: str, reply, value) -> None:
    try:
        reply.send(value)
    except Exception as err:  # noqa: BLE001 - the result would not convert
        reply.raised(host.label(), method, type(err).__name__, str(err), "")


def _answer(host: _Host, method: str, reply, fut) -> None:
    if fut.cancelled():
        reply.stopped(host.label())
        return
    e = fut.exception()
    if e is None:
        _send(host, method, reply, fut.result())
        return
    _fail(host, method, reply, e)


def _fail(host: _Host, method: str, reply, e: BaseException) -> None:
    if isinstance(e, PulsingUnknownMethodError) and "has no remote method" in str(e):
        reply.unknown(host.label(), method, ", ".join(host.info.kinds))
    elif isinstance(e, PulsingBadArgumentsError):
        reply.bad_arguments(host.label(), method, f"{method}(...)", str(e))
    elif isinstance(e, PulsingActorError):
        reply.raised(host.label(), method, e.type_name, e.message, e.remote_traceback)
    else:
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        reply.raised(host.label(), method, type(e).__name__, str(e), tb)


async def _serve_stream(bridge: _LoopBridge, host: _Host, method: str, args, kwargs, sink) -> None:
    items = _local_stream(host, method, args, kwargs)
    # If the consumer goes away while the generator waits for something else, stop it.
    task = asyncio.current_task()
    gone_token, gone = bridge.future()
    gone.add_done_callback(lambda _: task.cancel())
    sink.watch_closed(bridge.native, gone_token)
    token = None  # of the wait for room in progress
    try:
        first = True
        async for item in items:
            if first:
                first = False
                sink.open()
            r = sink.try_send(item)
            while r == 1:
                token, fut = bridge.future()
                sink.ready(bridge.native, token)
                r = sink.try_send(item) if await fut else 2
            if r == 2:
                return
        if first:
            sink.open()
        sink.end()
    except BaseException as e:  # noqa: BLE001 - every failure reaches the consumer
        if isinstance(e, PulsingUnknownMethodError) and "has no remote method" in str(e):
            sink.unknown(host.label(), method, ", ".join(host.info.kinds))
        elif isinstance(e, PulsingBadArgumentsError):
            sink.bad_arguments(host.label(), method, f"{method}(...)", str(e))
        elif isinstance(e, PulsingActorError):
            sink.open()
            sink.raised(host.label(), method, e.type_name, e.message, e.remote_traceback)
        else:
            sink.open()
            sink.raised(host.label(), method, type(e).__name__, str(e), "")
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
    finally:
        bridge.waiters.pop(gone_token, None)
        bridge.waiters.pop(token, None)
        await items.aclose()


# ---------------------------------------------------------------------------------------------
# References and proxies


class _LocalTarget:
    """A Python actor in this process: calls run on its loop without leaving Python."""

    __slots__ = ("host",)
    is_local = True

    def __init__(self, host: _Host) -> None:
        self.host = host

    @property
    def name(self) -> Optional[str]:
        return self.host.name

    @property
    def type_name(self) -> str:
        return self.host.info.name

    async def call(self, method, args, kwargs, timeout):
        if timeout is None:
            return await _invoke(self.host, method, args, kwargs)
        try:
            return await asyncio.wait_for(_invoke(self.host, method, args, kwargs), timeout)
        except asyncio.TimeoutError:
            raise PulsingTimeoutError(
                f"{self.host.label()}.{method}() timed out after {timeout}s"
            ) from None

    def stream(self, method, args, kwargs):
        return _local_stream(self.host, method, args, kwargs)

    async def interface(self) -> dict:
        return self.host.info.interface()

    def stop(self) -> None:
        self.host.stop()


class _RemoteTarget:
    """Any actor reached through the Rust runtime (another process, or a Rust actor)."""

    __slots__ = ("native", "_iface", "python", "quick", "skipped")
    is_local = False

    def __init__(self, native) -> None:
        self.native = native
        self._iface = None
        self.python = False  # known to be a Python actor (typed with a @pul.remote class)
        self.quick = True  # its last held call answered within `_HOLD_REMOTE_US`
        self.skipped = 0

    def _probe(self) -> bool:
        """While calls are slow, every ``_TURN_EVERY``th one still tries holding."""
        self.skipped += 1
        return self.skipped % _TURN_EVERY == 0

    @property
    def name(self) -> Optional[str]:
        return self.native.name

    @property
    def type_name(self) -> str:
        return self.native.type_name

    async def call(self, method, args, kwargs, timeout):
        if self.python:
            chain = _chain.get()
            if chain:
                kwargs = {**kwargs, _CHAIN_KW: list(chain)}
        b = _bridge()
        token, fut = b.future()
        try:
            self.native.call(b.native, token, method, args, kwargs or None, timeout)
        except BaseException as e:
            b.waiters.pop(token, None)  # nothing will answer it
            if isinstance(e, _native.PulsingNativeError):
                raise from_native(e) from None
            if not isinstance(e, Exception):
                raise  # KeyboardInterrupt, or a panic in the runtime
            # An argument that neither is plain data nor pickles.
            raise PulsingDecodeError(f"cannot send the arguments of `{method}`: {e!r}") from e
        timed_out = (
            _HOLD_REMOTE_US
            and len(b.waiters) == 1
            and b.may_hold()
            and (self.quick or self._probe())
            and not b.hold_remote()
        )
        if fut.done():
            self.quick = True
            try:
                result = fut.result()
            finally:
                await b.after_hold()  # failed calls too, or a retry loop would never yield
        else:
            if timed_out:
                self.quick = False  # slower than a hold: await the next ones (but probe)
            result = await fut
        if type(result) is dict and len(result) == 1 and ("Err" in result or "Ok" in result):
            return await self._unwrap(method, result)
        return result

    async def _unwrap(self, method, result):
        """A Rust method returning ``Result<T, E>``: ``Ok(v)`` gives ``v``, ``Err(e)`` raises
        :class:`PulsingActorError` (``type_name == "Err"``, ``.value == e``)."""
        if self._iface is None:
            try:
                self._iface = await self.interface()
            except PulsingError:
                self._iface = {}
        info = next((m for m in self._iface.get("methods", ()) if m.get("name") == method), None)
        if info is None or not str(info.get("returns", "")).startswith("Result<"):
            return result
        if "Ok" in result:
            return result["Ok"]
        err = PulsingActorError(
            str(result["Err"]), type_name="Err", actor=self.native.type_name, method=method
        )
        err.value = result["Err"]
        raise err

    def stream(self, method, args, kwargs):
        return _RemoteStream(self.native, method, args, kwargs)

    async def interface(self) -> dict:
        local = self.native.local_interface()
        if local is not None:
            return local
        described = await self.call("$describe", (), None, None)
        iface = described.get("interface") if isinstance(described, dict) else None
        if iface is None:
            raise PulsingError(f"the node of {self.native!r} does not describe interfaces")
        return iface

    def stop(self) -> None:
        self.native.stop()


class _RemoteStream:
    """Items of a stream from the Rust runtime, fetched in batches (one prefetched)."""

    def __init__(self, native, method, args, kwargs) -> None:
        self._native = native
        self._call = (method, args, kwargs)
        self._stream = None
        self._buf: collections.deque = collections.deque()
        self._pending = None
        self._done = False
        self._err = None

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._buf:
            return self._buf.popleft()
        return await self._fill()

    async def _fill(self):
        if self._stream is None:
            if self._done:
                raise StopAsyncIteration
            method, args, kwargs = self._call
            b = _bridge()
            token, fut = b.future()
            try:
                self._native.stream(b.native, token, method, args, kwargs or None)
            except BaseException as e:
                b.waiters.pop(token, None)
                self._done = True
                if not isinstance(e, Exception):
                    raise
                raise PulsingDecodeError(f"cannot send the arguments of `{method}`: {e!r}") from e
            self._stream = await fut
            self._request()
        while not self._buf:
            if self._done:
                err, self._err = self._err, None
                if err is not None:
                    raise err
                raise StopAsyncIteration
            _, _, items, ended, err = await self._pending
            self._pending = None
            self._buf.extend(items)
            if ended:
                self._done = True
                self._err = from_native(err) if err is not None else None
            else:
                self._request()
        return self._buf.popleft()

    def _request(self) -> None:
        b = _bridge()
        token, fut = b.future()
        self._stream.next_batch(b.native, token, 4096)
        self._pending = fut

    async def aclose(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._stream is not None and not self._done:
            self._done = True
            self._stream.close()

    def __del__(self) -> None:
        try:
            self._close()
        except Exception:
            pass


class Call:
    """A call not yet made: ``await`` it for the result, or ``async for`` over a stream.

    ``.timeout(seconds)`` sets this call's deadline.
    """

    __slots__ = ("_target", "_method", "_args", "_kwargs", "_timeout", "_kind")

    def __init__(self, target, method, args, kwargs, kind) -> None:
        self._target = target
        self._method = method
        self._args = args
        self._kwargs = kwargs
        self._timeout = None
        self._kind = kind

    def timeout(self, seconds: Optional[float]) -> "Call":
        if seconds is not None and not seconds >= 0:
            raise ValueError(f"a timeout is a number of seconds >= 0, not {seconds!r}")
        self._timeout = seconds
        return self

    def __await__(self):
        if self._kind in ("gen", "agen"):
            raise PulsingBadArgumentsError(f"`{self._method}` streams: use `async for`")
        return self._target.call(self._method, self._args, self._kwargs, self._timeout).__await__()

    def __aiter__(self):
        if self._kind in ("sync", "inline", "async"):
            raise PulsingBadArgumentsError(f"`{self._method}` is not a streaming method: use `await`")
        return self._target.stream(self._method, self._args, self._kwargs).__aiter__()


class _Method:
    __slots__ = ("_target", "_name", "_kind")

    def __init__(self, target, name, kind) -> None:
        self._target = target
        self._name = name
        self._kind = kind

    def __call__(self, *args, **kwargs) -> Call:
        return Call(self._target, self._name, args, kwargs, self._kind)

    def __repr__(self) -> str:
        return f"<remote method {self._name}>"


class ActorProxy:
    """Calls an actor's methods: ``await proxy.method(args)``, ``async for x in proxy.gen()``.

    A typed proxy (from ``Cls.spawn``, ``Cls.resolve`` or ``ref.as_type(Cls)``) knows the class's
    methods and rejects other names at once; an untyped one (``ref.as_any()``) forwards any
    public name and lets the actor report unknown ones.
    """

    def __init__(self, target, info: Optional[_ClassInfo]) -> None:
        self.__dict__["_pulsing_target"] = target
        self.__dict__["_pulsing_info"] = info

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise PulsingUnknownMethodError(
                f"`{name}` is private: only public methods can be called on an actor"
            )
        info = self.__dict__["_pulsing_info"]
        kind = None
        if info is not None:
            kind = info.kinds.get(name)
            if kind is None:
                raise PulsingUnknownMethodError(
                    f"{info.name} has no remote method `{name}` (it has: {', '.join(info.kinds)})"
                )
        m = _Method(self.__dict__["_pulsing_target"], name, kind)
        self.__dict__[name] = m
        return m

    def __setattr__(self, name, value):
        raise AttributeError("actor proxies are read-only")

    def __repr__(self) -> str:
        t = self.__dict__["_pulsing_target"]
        return f"<ActorProxy {t.type_name} {t.name!r}>"

    def __reduce__(self):
        # Sent to another process (as an argument or a result): travels by name.
        t = self.__dict__["_pulsing_target"]
        info = self.__dict__["_pulsing_info"]
        if t.name is None:
            raise TypeError("only named actors can be sent to another process")
        cls_path = (info.cls.__module__, info.cls.__qualname__) if info is not None else None
        return (_revive_proxy, (t.name, cls_path))


def _revive_proxy(name: str, cls_path) -> "ActorProxy":
    info = None
    if cls_path is not None:
        try:
            obj = importlib.import_module(cls_path[0])
            for part in cls_path[1].split("."):
                obj = getattr(obj, part)
            info = _info_of(obj)
        except (ImportError, AttributeError, TypeError):
            info = None  # the class is not known here: an untyped proxy
    host = _NAMES.get(name)
    if host is not None and not host.is_stopped():
        return ActorProxy(_LocalTarget(host), info)
    return ActorProxy(_LazyTarget(name, info), info)


class _LazyTarget:
    """A proxy that arrived by name: resolved on its first use."""

    __slots__ = ("_name", "_info", "_target", "_resolving")
    is_local = False

    def __init__(self, name: str, info: Optional[_ClassInfo]) -> None:
        self._name = name
        self._info = info
        self._target = None
        self._resolving: Optional[asyncio.Future] = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def type_name(self) -> str:
        if self._target is not None:
            return self._target.type_name
        return self._info.name if self._info is not None else "?"

    async def _get(self):
        if self._target is not None:
            return self._target
        # One resolve for all the calls that wait for it: they go on in the order they came.
        loop = asyncio.get_running_loop()
        if self._resolving is None or self._resolving.get_loop() is not loop:
            self._resolving = loop.create_task(self._resolve())
        try:
            return await asyncio.shield(self._resolving)
        except BaseException:
            if self._resolving.done():
                self._resolving = None  # failed: the next call tries again
            raise

    async def _resolve(self):
        ref = await resolve(self._name, timeout=10)
        if self._info is not None and isinstance(ref._target, _RemoteTarget):
            ref._target.python = True
        self._target = ref._target
        return self._target

    async def call(self, method, args, kwargs, timeout):
        target = await self._get()
        return await target.call(method, args, kwargs, timeout)

    async def stream(self, method, args, kwargs):
        target = await self._get()
        async for item in target.stream(method, args, kwargs):
            yield item

    async def interface(self) -> dict:
        return await (await self._get()).interface()

    def stop(self) -> None:
        if self._target is not None:
            self._target.stop()
        else:
            stop_name = self._name

            async def later():
                (await resolve(stop_name)).stop()

            asyncio.ensure_future(later())


class ActorRef:
    """An untyped reference from :func:`resolve`: ``.as_any()`` or ``.as_type(Cls)``."""

    __slots__ = ("_target",)

    def __init__(self, target) -> None:
        self._target = target

    @property
    def name(self) -> Optional[str]:
        return self._target.name

    @property
    def type_name(self) -> str:
        """The actor's type: a Python class's ``__qualname__``, or a Rust type name."""
        return self._target.type_name

    @property
    def is_local(self) -> bool:
        return self._target.is_local

    def as_any(self) -> ActorProxy:
        """A proxy that forwards any public method name (the actor reports unknown ones)."""
        return ActorProxy(self._target, None)

    def as_type(self, cls) -> ActorProxy:
        """A typed proxy for ``cls`` (a ``@pul.remote`` class); checks the actor's type."""
        info = _info_of(cls)
        if self._target.type_name != info.name:
            raise PulsingTypeMismatchError(
                f"`{self.name}` is bound to a `{self._target.type_name}` actor, not a `{info.name}`"
            )
        if isinstance(self._target, _RemoteTarget):
            self._target.python = True
        return ActorProxy(self._target, info)

    async def interface(self) -> dict:
        """The actor's methods, their parameters and kinds (works for Rust actors too)."""
        return await self._target.interface()

    def stop(self) -> None:
        """Asks the actor to stop; its name is released."""
        self._target.stop()

    def __repr__(self) -> str:
        return f"<ActorRef {self.type_name} {self.name!r}>"


def _info_of(cls) -> _ClassInfo:
    info = getattr(cls, "_pulsing_info", None)
    if not isinstance(info, _ClassInfo):
        raise TypeError(f"{cls!r} is not a @pul.remote class")
    return info


async def resolve(name: str, *, timeout: Optional[float] = None) -> ActorRef:
    """Finds the actor named ``name`` (here first, then in the cluster).

    With ``timeout`` (seconds), waits for the name to appear; then raises
    :class:`PulsingNotFoundError`.
    """
    _require_init()
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"a timeout is a number of seconds >= 0, not {timeout!r}")
    host = _NAMES.get(name)
    if host is not None and not host.is_stopped():
        return ActorRef(_LocalTarget(host))
    b = _bridge()
    token, fut = b.future()
    _native.resolve(b.native, token, name, timeout)
    native = await fut
    # A Python actor of this process found through Rust (another loop registered it).
    return ActorRef(_RemoteTarget(native))


def stop(actor) -> None:
    """Stops an actor given its proxy or ref."""
    if isinstance(actor, ActorProxy):
        actor.__dict__["_pulsing_target"].stop()
    elif isinstance(actor, ActorRef):
        actor.stop()
    else:
        raise TypeError("pul.stop takes an actor proxy or ref")


# ---------------------------------------------------------------------------------------------
# The decorator


class RemoteClass:
    """What ``@pul.remote`` turns a class into: ``await Cls.spawn(...)``, ``await Cls.resolve(name)``."""

    def __init__(self, cls: type, serial: bool) -> None:
        self._pulsing_info = _ClassInfo(cls, serial)
        self.__wrapped__ = cls
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__doc__ = cls.__doc__
        self.__module__ = cls.__module__

    async def spawn(self, *args, name: Optional[str] = None, **kwargs) -> ActorProxy:
        """Creates an actor on the running loop: ``args``/``kwargs`` go to ``__init__``;
        ``name`` registers it in the cluster."""
        _require_init()
        info = self._pulsing_info
        loop = asyncio.get_running_loop()
        if name is not None and name in _NAMES and not _NAMES[name].is_stopped():
            raise PulsingNameTakenError(f"the name `{name}` is already taken by {_NAMES[name].label()}")
        instance = info.cls(*args, **kwargs)
        host = _Host(info, instance, loop, name)
        if name is not None:
            b = _bridge_for(loop)
            _DRAINS[host.id] = host  # before calls can come
            deadline = time.monotonic() + 2.0
            while True:
                try:
                    host.native = _native.spawn_hosted(
                        b.native, host.id, name, info.name, info.spec, _direct(info, host)
                    )
                    break
                except _native.PulsingNativeError as e:
                    err = from_native(e)
                    # A just-stopped actor of ours releases its name in the runtime a moment later.
                    if isinstance(err, PulsingNameTakenError) and time.monotonic() < deadline:
                        await asyncio.sleep(0.005)
                        continue
                    raise err from None
            _NAMES[name] = host
            _HOSTS[host.id] = host
        return ActorProxy(_LocalTarget(host), info)

    async def resolve(self, name: str, *, timeout: Optional[float] = None) -> ActorProxy:
        """A typed proxy to the actor named ``name``."""
        ref = await resolve(name, timeout=timeout)
        return ref.as_type(self)

    def __call__(self, *args, **kwargs):
        """Builds a plain (non-actor) instance of the class."""
        return self.__wrapped__(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<pulsing remote class {self.__qualname__}>"


def inline(fn):
    """Marks a ``def`` method that never blocks to run on the actor's event loop (≈1 µs a call)
    instead of a worker thread. While it runs, nothing else on that loop does."""
    if not inspect.isfunction(fn) or inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn):
        raise TypeError("@pul.inline goes on a plain `def` method")
    fn.__pulsing_inline__ = True
    return fn


def remote(cls=None, *, serial: bool = False):
    """Makes a class an actor class: ``@pul.remote`` or ``@pul.remote(serial=True)``.

    ``serial=True`` runs every method (sync or async) strictly one at a time.
    """
    if cls is None:
        return lambda c: RemoteClass(c, serial)
    return RemoteClass(cls, serial)
