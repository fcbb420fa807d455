"""Calls and streams that arrive through the runtime (from another process, or a Rust caller).

The bridge hands them over as ``INCOMING`` events (handler :func:`_incoming`); ``HOST_STOPPED``
says the runtime stopped one of this loop's actors. A call's first step runs at once in its own
context and becomes a task only if it waits (Python 3.11+); a plain ``def`` call of a non-serial
actor goes to its worker, which answers the native ``Reply`` itself. A streamed method is pushed
into the native ``Sink`` (``src/sink.rs``), waiting only while it is full; the sink passes items
on to the runtime in batches, and :class:`_Flusher` passes on a partial batch on the loop's next
turn (so an item waits at most until the producer suspends).
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import types
from enum import IntEnum

from . import _native
from ._bridge import EventKind, _LoopBridge, register
from ._errors import PulsingActorError, PulsingBadArgumentsError
from ._host import (
    _CHAIN_KW,
    _HOSTS,
    _SYNC,
    _chain,
    _fail,
    _Host,
    _invoke,
    _local_stream,
    _send,
    is_unknown_method,
)


class SendResult(IntEnum):
    """What ``Sink.try_send`` did; the values are the Rust enum's (``_native.SinkSend``)."""

    SENT = int(_native.SendResult.Sent)
    FULL = int(_native.SendResult.Full)  # wait with `ready`, then send again
    CLOSED = int(_native.SendResult.Closed)  # the consumer left


_FULL = int(SendResult.FULL)
_CLOSED = int(SendResult.CLOSED)
# `create_task(context=...)` (Python 3.11+) lets a call's first step run before its task exists.
_EAGER = sys.version_info >= (3, 11)


def _incoming(bridge: _LoopBridge, ev) -> None:
    _, host_id, method, args, kwargs, reply, stream = ev
    try:
        _serve_call(bridge, host_id, method, args, kwargs, reply, stream)
    except Exception as e:  # noqa: BLE001 - a malformed call is answered, never lost
        # E.g. a non-iterable `$pulsing_chain`: this call gets the error; the rest of the
        # batch it came in goes on (the bridge also isolates events from one another).
        host = _HOSTS.get(host_id)
        if host is not None:
            _bad_call(host, method, reply, stream, e)


def _bad_call(host: _Host, method: str, reply, stream: bool, e: BaseException) -> None:
    """Answers a call that failed before it ran (if nothing answered it yet)."""
    try:
        if stream:
            reply.bad_arguments(host.label(), method, f"{method}(...)", str(e))
        else:
            _fail(host, method, reply, PulsingBadArgumentsError(f"malformed call: {e!r}"))
    except Exception:  # noqa: BLE001 - already answered
        pass


def _serve_call(bridge: _LoopBridge, host_id, method, args, kwargs, reply, stream) -> None:
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
    if reply.is_abandoned():
        return  # its caller gave up before it started: skipped, as Rust actors do
    kind = host.info.kinds.get(method)
    chain = kwargs.pop(_CHAIN_KW, None)
    if chain is not None:
        # A call from a serial actor's call chain in another process: run it in that chain.
        chain = tuple(chain)  # (a malformed chain fails this call: see `_incoming`)
    if not _EAGER:
        # Python 3.10: a call's first step waits for its task, so every call becomes one and
        # they start in the order they came.
        call = _invoke(host, method, args, kwargs, reply)
        task = bridge.loop.create_task(call if chain is None else _in_chain(chain, call))
        task.add_done_callback(lambda f: _answer(host, method, reply, f))
        return
    if chain is None and kind == _SYNC and host.lock is None:
        host.run_sync_for(reply, getattr(host.instance, method), args, kwargs, method)
        reply.placed()
        return
    # Run the call's first step right here, in its own context (with the chain, if any), which
    # its task then goes on in: a method that finishes without waiting needs no task at all.
    coro = _invoke(host, method, args, kwargs, reply)
    ctx = contextvars.copy_context()
    if chain is not None:
        ctx.run(_chain.set, chain)
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
    # Started: it runs inline or waits in the actor's `def` queue, or it is an `async def`
    # that awaits. Later calls can no longer overtake it (`src/host.rs`, `LoopCalls`).
    reply.placed()
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



def _answer(host: _Host, method: str, reply, fut) -> None:
    if fut.cancelled():
        reply.stopped(host.label())
        return
    e = fut.exception()
    if e is None:
        _send(host, method, reply, fut.result())
        return
    _fail(host, method, reply, e)



class _Flusher:
    """Passes on a sink's partial batch on the loop's next turn: armed by each item sent, it
    runs once the producer suspends (or yields the loop); if the runtime's buffer is full, it
    runs again when there is room."""

    __slots__ = ("bridge", "sink", "armed", "token", "done")

    def __init__(self, bridge: _LoopBridge, sink) -> None:
        self.bridge, self.sink = bridge, sink
        self.armed = False
        self.token = None  # of the wait for room in progress
        self.done = False

    def arm(self) -> None:
        self.armed = True
        self.bridge.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.armed = False
        if self.done or self.token is not None or self.sink.flush() != _FULL:
            return
        self.token, fut = self.bridge.future()
        self.sink.ready(self.bridge.native, self.token)
        fut.add_done_callback(self._room)

    def _room(self, fut) -> None:
        self.token = None
        if not self.done and not fut.cancelled() and fut.exception() is None and fut.result():
            self._flush()

    def stop(self) -> None:
        self.done = True
        if self.token is not None:
            self.bridge.waiters.pop(self.token, None)


async def _serve_stream(bridge: _LoopBridge, host: _Host, method: str, args, kwargs, sink) -> None:
    items = _local_stream(host, method, args, kwargs)
    # If the consumer goes away while the generator waits for something else, stop it.
    task = asyncio.current_task()
    gone_token, gone = bridge.future()
    gone.add_done_callback(lambda _: task.cancel())
    sink.watch_closed(bridge.native, gone_token)
    token = None  # of the wait for room in progress
    flusher = _Flusher(bridge, sink)
    try:
        first = True
        async for item in items:
            if first:
                first = False
                sink.open()
            r = sink.try_send(item)
            while r == _FULL:
                token, fut = bridge.future()
                sink.ready(bridge.native, token)
                r = sink.try_send(item) if await fut else _CLOSED
            if r == _CLOSED:
                return
            if not flusher.armed:
                flusher.arm()
        if first:
            sink.open()
        sink.end()
    except BaseException as e:  # noqa: BLE001 - every failure reaches the consumer
        if is_unknown_method(e):
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
        flusher.stop()
        bridge.waiters.pop(gone_token, None)
        bridge.waiters.pop(token, None)
        await items.aclose()



def _host_stopped(bridge: _LoopBridge, ev) -> None:
    """The runtime stopped one of this loop's actors (from a peer, or a Rust caller)."""
    host = _HOSTS.get(ev[1])
    if host is not None:
        host.native = None  # already stopped in the runtime
        host.stop()


register(EventKind.INCOMING, _incoming, deferred=True)
register(EventKind.HOST_STOPPED, _host_stopped, deferred=True)
