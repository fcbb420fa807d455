"""The per-loop bridge: completions and calls from Rust arrive on the asyncio loop in batches.

One :class:`_LoopBridge` per event loop wraps one ``_native.Bridge`` (``src/bridge.rs``): the
runtime's threads push plain Rust events into its queue and write one byte to a socket pair the
loop watches (``add_reader``) only when the queue was empty, so one wake-up drains many events.
The loop takes the whole queue under the GIL (``Bridge.take``: a list of tuples whose first item
is an :class:`EventKind`).

Replies (``DONE``, ``OBJ``) settle the future waiting under their token, and a stream's batches
(``ITEMS``) go to the callback its consumer registered under its token; the bridge does that
itself. Every other kind goes to the handler its module registered with :func:`register`
(``_serve`` for ``INCOMING`` and ``HOST_STOPPED``, ``_workers`` for ``DRAIN``): one list lookup per
event, and this module imports none of them.

Holding the loop: when a call through the runtime is the only thing its loop waits for,
:meth:`_LoopBridge.hold_remote` lets the loop thread wait for the answer itself (``Bridge.hold``,
GIL released: in the runtime's reactor, reading the answer on this thread, where the loop drives
the runtime; else parked, woken directly by the runtime's push) instead of sleeping in its
selector; see the constants below. Where the loop drives the runtime, its selector is wrapped
(``_selector.py``) so that every wait of the loop drives it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import weakref
from enum import IntEnum
from threading import get_ident
from typing import Callable, Optional

from . import _native, _selector
from ._errors import from_native


class EventKind(IntEnum):
    """What an event from ``Bridge.take`` is (its tuple's first item); the values are the Rust
    enum's (``_native.EventKind``, ``src/events.rs``)."""

    DONE = int(_native.EventKind.Done)  # (kind, token, ok, value_or_error)
    OBJ = int(_native.EventKind.Obj)  # (kind, token, ok, obj_or_error): a DynRef or a Stream
    ITEMS = int(_native.EventKind.Items)  # (kind, token, items, ended, error_or_None)
    INCOMING = int(_native.EventKind.Incoming)  # (kind, host, method, args, kwargs, reply, stream)
    HOST_STOPPED = int(_native.EventKind.HostStopped)  # (kind, host): the runtime stopped it
    DRAIN = int(_native.EventKind.Drain)  # (kind, host): its `def` calls need a worker


# Holding the loop. When a call is the only thing its event loop waits for, the loop thread
# waits for the answer itself for a short while (parked on a condition variable, with the GIL
# released) before it awaits like any other call: a quick answer then wakes the loop thread
# directly (one futex wake-up) rather than through the socket pair, the selector and a task
# step. It spins first only while other processes leave a CPU idle (`src/spin.rs`). The bounds: a `def` call on the actor's own loop holds
# up to `_HOLD_LOCAL_US` (only while the actor's last run took under `_QUICK_RUN` s), a call
# through the runtime up to `_HOLD_REMOTE_US` (only while that target's last call answered
# within it). Every `_TURN_EVERY`th held call still gives the loop a turn, so a run of quick
# calls does not keep the loop from its other sockets and timers. `PULSING_HOLD=off` turns
# holding off (calls then always await in the selector).
_HOLDS = os.environ.get("PULSING_HOLD", "on").lower() not in ("off", "0", "no", "false")
_HOLD_LOCAL_US = 100 if _HOLDS else 0
_QUICK_RUN = 20e-6
_HOLD_REMOTE_US = 200 if _HOLDS else 0
_TURN_EVERY = 16

# The handlers of the events that are not replies, by kind (None: a reply, settled here).
_HANDLERS: "list[Optional[Callable[[_LoopBridge, tuple], None]]]" = [None] * len(EventKind)
# Kinds whose handler waits for the loop's next turn when the event arrives while a call holds
# the loop (calls for this loop's actors never run inside the holding task).
_DEFERRED: "set[int]" = set()


def register(kind: EventKind, handler: "Callable[[_LoopBridge, tuple], None]", *, deferred: bool = False) -> None:
    """Makes ``handler(bridge, event)`` handle the events of ``kind`` (not a reply kind).
    ``deferred``: while a call holds the loop, it runs on the loop's next turn."""
    if kind in (EventKind.DONE, EventKind.OBJ, EventKind.ITEMS):
        raise ValueError(f"{kind!r} is a reply: the bridge settles it")
    _HANDLERS[kind] = handler
    if deferred:
        _DEFERRED.add(int(kind))


def _unregistered(kind: EventKind) -> "Callable[[_LoopBridge, tuple], None]":
    def handler(bridge: "_LoopBridge", ev: tuple) -> None:
        raise RuntimeError(f"no handler registered for {kind!r} events")

    return handler


for _kind in EventKind:
    if _kind not in (EventKind.DONE, EventKind.OBJ, EventKind.ITEMS):
        _HANDLERS[_kind] = _unregistered(_kind)
del _kind
_ITEMS = int(EventKind.ITEMS)


class _LoopBridge:
    __slots__ = ("loop", "native", "waiters", "tokens", "holds", "draining", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.native = _native.Bridge()
        self.waiters: dict = {}
        self.tokens = itertools.count(1)
        self.holds = 0
        self.draining = False  # inside `_drain`: the rest of its batch waits
        # The loop thread drives the runtime while it waits (before `add_reader`, which then
        # registers through the wrapper).
        _selector.drive(loop, self.native, self._closing)
        loop.add_reader(self.native.fileno(), self._drain)

    def _closing(self) -> None:
        """Its loop is being closed: the module no longer keeps this bridge (and the loop)."""
        global _last_bridge
        if _last_bridge is self:
            _last_bridge = None

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

    def hold_remote(self) -> Optional[bool]:
        """Holds the loop up to ``_HOLD_REMOTE_US`` for an event; settles what came: True if
        something did, False if nothing came in time, None if the loop's own sockets or timers
        needed it first. Replies are settled at once; calls for this loop's actors wait for the
        loop's next turn, so they never run inside the holding task."""
        came = self.native.hold(_HOLD_REMOTE_US)
        if not came:
            return came
        waiters, loop = self.waiters, self.loop
        for ev in self.native.take():
            if ev[0] in _DEFERRED:
                loop.call_soon(self._settle_one, ev, waiters)
            else:
                self._settle_one(ev, waiters)
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
                self._settle_one(ev, waiters)
        finally:
            self.draining = False

    def _settle_one(self, ev, waiters) -> None:
        """Settles one event of a batch; its failure is reported and the batch goes on (the
        queue was already emptied: an exception here would lose every later event)."""
        try:
            self._settle(ev, waiters)
        except Exception as e:  # noqa: BLE001 - isolated per event
            self.loop.call_exception_handler(
                {"message": f"pulsing: handling an event failed: {ev[:1]!r}", "exception": e}
            )

    def _settle(self, ev, waiters) -> None:
        tag = ev[0]
        handler = _HANDLERS[tag]
        if handler is not None:
            handler(self, ev)
            return
        if tag == _ITEMS:  # a stream's batch: its consumer's callback, until the stream ends
            deliver = waiters.pop(ev[1], None) if ev[3] else waiters.get(ev[1])
            if deliver is not None:
                deliver(ev)
            return
        fut = waiters.pop(ev[1], None)
        if fut is None or fut.done():
            return
        if ev[2]:
            fut.set_result(ev[3])
        else:
            fut.set_exception(from_native(ev[3]))


# Each loop's bridge, weakly both ways: while the loop is open its reader (``_drain``) keeps the
# bridge alive, and once it is closed the bridge goes (with its socket pair). A strong value
# here would keep every loop and its descriptors alive for good (a `WeakKeyDictionary` whose
# value refers to its key never drops the entry).
_bridges: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.ref[_LoopBridge]]" = (
    weakref.WeakKeyDictionary()
)
_last_bridge: Optional[_LoopBridge] = None


def bridge_for(loop: asyncio.AbstractEventLoop) -> _LoopBridge:
    global _last_bridge
    b = _last_bridge
    if b is not None and b.loop is loop:
        return b
    ref = _bridges.get(loop)
    b = ref() if ref is not None else None
    if b is None:
        b = _LoopBridge(loop)
        _bridges[loop] = weakref.ref(b)
    _last_bridge = b
    return b


def runs_here(loop: asyncio.AbstractEventLoop) -> bool:
    """True if ``loop`` is the loop running on this thread (called from a coroutine or a
    callback). An asyncio loop says which thread runs it (``_thread_id``), which is read
    without ``asyncio.get_running_loop()``: on Python 3.11 that is a ``getpid`` system call,
    one per call on each side of every call through the runtime (counted with ``strace``)."""
    thread = getattr(loop, "_thread_id", None)
    if thread is not None:
        return thread == get_ident()
    return asyncio.get_running_loop() is loop


def running_bridge() -> _LoopBridge:
    """The bridge of the running loop."""
    b = _last_bridge
    if b is not None and runs_here(b.loop):
        return b
    return bridge_for(asyncio.get_running_loop())
