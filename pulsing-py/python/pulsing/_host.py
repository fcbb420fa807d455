"""Hosting Python actors: what a ``@pul.remote`` class offers (``_ClassInfo``), one running actor
(``_Host``) and how its methods run.

* ``async def`` methods run in the caller's task on the actor's loop (a local call never enters
  Rust); ``@pul.inline`` ``def`` methods run on the loop too, in order with the other ``def``
  methods; plain ``def`` methods run one at a time on a worker thread (``_workers``), in the order
  kept by the actor's native ``HostQueue`` (``src/handoff.rs``), which also holds the calls the
  runtime queued for it from other processes.
* ``serial=True`` actors take a lock per call; the chain of serial actors in progress (a context
  variable, carried across processes as the ``$pulsing_chain`` keyword) makes A -> B -> A
  re-entrant.
* ``_send``/``_fail`` answer a call that came through the runtime (its native ``Reply``).

The registries of named actors (``_NAMES``, ``_HOSTS``) are forgotten at shutdown (a hook
registered with ``_runtime.on_shutdown``).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import inspect
import itertools
import os
import time
import traceback
from enum import IntEnum
from typing import Any, Optional

from . import _native, _runtime
from ._bridge import _HOLD_LOCAL_US, _QUICK_RUN, bridge_for, runs_here
from ._errors import (
    PulsingActorError,
    PulsingBadArgumentsError,
    PulsingError,
    PulsingStoppedError,
    PulsingUnknownMethodError,
)
from ._workers import _DRAINS, _POOL


class MethodKind(IntEnum):
    """How a public method of an actor class runs."""

    SYNC = 0  # `def`: on a worker thread, one at a time
    INLINE = 1  # `@pul.inline def`: on the actor's loop, in order with the `def` methods
    ASYNC = 2  # `async def`: in the caller's task on the actor's loop
    GEN = 3  # `def` with `yield`: a stream pulled on a worker thread in chunks
    AGEN = 4  # `async def` with `yield`: a stream on the actor's loop


_SYNC, _INLINE, _ASYNC, _GEN, _AGEN = MethodKind
STREAMING = frozenset((MethodKind.GEN, MethodKind.AGEN))
CALLS = frozenset((MethodKind.SYNC, MethodKind.INLINE, MethodKind.ASYNC))

_generation = 0  # bumped by shutdown: hosts of an older generation are stopped
_NAMES: "dict[str, _Host]" = {}  # named Python actors of this process
_HOSTS: "dict[int, _Host]" = {}  # named Python actors by id, for calls coming through Rust
_host_ids = itertools.count(1)


@_runtime.on_shutdown
def _forget_hosts() -> None:
    """The system stops: every host of this generation is stopped, no name is bound."""
    global _generation
    _generation += 1
    _NAMES.clear()
    _HOSTS.clear()


# The serial actors whose call is in progress up the current call chain, as "process:actor"
# strings; carried along with calls to Python actors in other processes (the `$pulsing_chain`
# keyword), so that A -> B -> A is re-entrant across processes too.
_chain: contextvars.ContextVar[tuple] = contextvars.ContextVar("pulsing_chain", default=())
_PROCESS = os.urandom(6).hex()
_CHAIN_KW = "$pulsing_chain"


# Where a class's `def` methods run (`_ClassInfo.placement`).
THREADS = "threads"  # `def` on a worker thread, `@pul.inline` on the loop (`@pul.remote` classes)
ON_LOOP = "loop"  # every method on the actor's loop: a mounted instance of an async Ray actor
WORKERS = "workers"  # every `def` on a worker thread, none on the loop: a mounted sync instance


class _ClassInfo:
    """What Pulsing knows of a ``@pul.remote`` class (or a mounted instance's class): its
    methods and how they run.

    ``placement`` says where ``def`` methods run: ``THREADS`` (the default), ``ON_LOOP`` (plain
    ``def`` methods become inline and ``def`` generators are pulled on the loop, so the loop's
    thread is the only one that runs the instance's code) or ``WORKERS`` (``@pul.inline`` is
    ignored: no method runs on the loop; ``pul.mount`` wraps them in the instance's lock).
    """

    def __init__(self, cls: type, serial: bool, placement: str = THREADS) -> None:
        self.cls = cls
        self.name = cls.__qualname__
        self.serial = serial
        self.placement = placement
        self.kinds: dict[str, MethodKind] = {}
        spec = []
        for attr in dir(cls):
            if attr.startswith("_"):
                continue
            fn = inspect.getattr_static(cls, attr)
            if isinstance(fn, (staticmethod, classmethod)) or not inspect.isfunction(fn):
                continue
            if inspect.isasyncgenfunction(fn):
                kind = MethodKind.AGEN
            elif inspect.isgeneratorfunction(fn):
                kind = MethodKind.GEN
            elif inspect.iscoroutinefunction(fn):
                kind = MethodKind.ASYNC
            elif placement == ON_LOOP:
                kind = MethodKind.INLINE
            elif placement == THREADS and getattr(fn, "__pulsing_inline__", False):
                kind = MethodKind.INLINE
            else:
                kind = MethodKind.SYNC
            self.kinds[attr] = kind
            try:
                params = [p for p in inspect.signature(fn).parameters][1:]
            except (TypeError, ValueError):
                params = []
            doc = inspect.getdoc(fn) or ""
            spec.append((attr, params, kind in STREAMING, kind in (MethodKind.ASYNC, MethodKind.AGEN), doc))
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
    actor that is not serial (its calls go through its loop and lock). If the actor has
    ``@pul.inline`` methods (which run on the loop), only while none of its calls is on the way
    through the loop, so a ``def`` call never overtakes an earlier one (``src/host.rs``)."""
    if info.serial:
        return None
    methods = [m for m, kind in info.kinds.items() if kind == MethodKind.SYNC]
    in_order = MethodKind.INLINE in info.kinds.values()
    return (methods, host.sync, _POOL.jobs, in_order) if methods else None


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
        b = bridge_for(self.loop)
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
                if fut is not None and fut.cancelled():
                    continue  # its caller gave up (timed out, cancelled) before it started
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
        chain = kwargs.pop(_CHAIN_KW, None)  # only serial actors use the chain; this one is not
        if chain is not None:
            try:
                tuple(chain)  # but a malformed one fails the call, as on the loop (`_serve.py`)
            except Exception as e:  # noqa: BLE001
                _fail(self, method, reply, PulsingBadArgumentsError(f"malformed call: {e!r}"))
                return
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
    so the actor's worker goes on with its next call. A call whose caller has gone (timed out,
    cancelled) before it started is skipped, as a Rust actor skips it."""
    if reply.is_abandoned():
        return
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
    err = PulsingUnknownMethodError(
        f"{host.label()} has no remote method `{method}` (it has: {available})"
    )
    err.kind = "UnknownMethod"  # type: ignore[attr-defined] - as `from_native` marks the runtime's
    return err


def is_unknown_method(e: BaseException) -> bool:
    """True for "no such method" (``_unknown``, or the runtime's ``UnknownMethod`` error), told by
    its kind, not its text; a proxy refusing a private name is no such error."""
    return isinstance(e, PulsingUnknownMethodError) and getattr(e, "kind", None) == "UnknownMethod"


async def _invoke(host: _Host, method: str, args, kwargs, reply=None):
    """Runs one call of ``method`` on ``host`` from the current task. ``reply`` (a call through
    the runtime) lets a serial actor skip the call if its caller gave up while it waited."""
    if host.is_stopped():
        raise PulsingStoppedError(f"{host.label()} is stopped")
    kind = host.info.kinds.get(method)
    if kind is None:
        raise _unknown(host, method)
    if kind in STREAMING:
        raise PulsingBadArgumentsError(f"{host.label()}.{method}() streams: use `async for`")
    if not runs_here(host.loop):
        # The actor lives on another loop (another thread): run the call there.
        cf = asyncio.run_coroutine_threadsafe(_invoke(host, method, args, kwargs, reply), host.loop)
        return await asyncio.wrap_future(cf)
    if host.lock is None:
        return await _run_method(host, kind, method, args, kwargs)
    return await _invoke_serial(host, kind, method, args, kwargs, reply)


async def _run_method(host: _Host, kind: MethodKind, method: str, args, kwargs):
    """Runs a call method the way its kind says: `async def` in this task, `@inline` on the loop,
    plain `def` on the actor's worker thread."""
    if kind == _ASYNC:
        try:
            return await getattr(host.instance, method)(*args, **kwargs)
        except Exception as e:
            raise _raised(host, method, e) from None
    if kind == _INLINE and host.sync.try_enter():
        try:
            return _run_inline(host, method, args, kwargs)
        finally:
            if host.sync.leave():
                _POOL.submit(host._drain_sync)
    return await host.call_sync(getattr(host.instance, method), args, kwargs, method)


async def _invoke_serial(host: _Host, kind: MethodKind, method: str, args, kwargs, reply=None):
    chain = _chain.get()
    reentrant = host.chain_id in chain
    if not reentrant:
        await host.lock.acquire()
    token = _chain.set(chain + (host.chain_id,))
    try:
        if reply is not None and reply.is_abandoned():
            return None  # its caller gave up while it waited: skipped, as Rust actors do
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
    if kind not in STREAMING:
        raise PulsingBadArgumentsError(
            f"{host.label()}.{method}() is not a streaming method: use `await`"
        )
    if not runs_here(host.loop):
        raise PulsingError("streams from an actor on another event loop are not supported")
    fn = getattr(host.instance, method)
    if kind == _AGEN:
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
        if host.info.placement == ON_LOOP:
            async for item in _on_loop(host, method, gen):
                yield item
            return
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



async def _on_loop(host: _Host, method: str, gen):
    """The items of a ``def`` generator pulled on the actor's loop (``ON_LOOP`` placement),
    giving the loop a turn every 256 items."""
    try:
        n = 0
        while True:
            if host.is_stopped():
                raise PulsingStoppedError(f"{host.label()} is stopped")
            try:
                item = next(gen)
            except StopIteration:
                return
            except Exception as e:
                raise _raised(host, method, e) from None
            yield item
            n += 1
            if n % 256 == 0:
                await asyncio.sleep(0)
    finally:
        gen.close()


def register(host: _Host, bridge) -> None:
    """Registers a named ``host`` in the runtime (calls from peers arrive through ``bridge``,
    its loop's) and in this process's names. Raises ``PulsingNativeError`` (for example: the
    name is taken)."""
    info = host.info
    _DRAINS[host.id] = host  # before calls can come
    host.native = _native.spawn_hosted(
        bridge.native, host.id, host.name, info.name, info.spec, _direct(info, host)
    )
    _NAMES[host.name] = host
    _HOSTS[host.id] = host


def _send(host: _Host, method: str, reply, value) -> None:
    try:
        reply.send(value)
    except Exception as err:  # noqa: BLE001 - the result would not convert
        reply.raised(host.label(), method, type(err).__name__, str(err), "")



def _fail(host: _Host, method: str, reply, e: BaseException) -> None:
    if is_unknown_method(e):
        reply.unknown(host.label(), method, ", ".join(host.info.kinds))
    elif isinstance(e, PulsingBadArgumentsError):
        reply.bad_arguments(host.label(), method, f"{method}(...)", str(e))
    elif isinstance(e, PulsingActorError):
        reply.raised(host.label(), method, e.type_name, e.message, e.remote_traceback)
    else:
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        reply.raised(host.label(), method, type(e).__name__, str(e), tb)

