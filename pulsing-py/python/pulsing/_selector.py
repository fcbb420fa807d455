"""The loop's selector, wrapped so that the loop thread drives Pulsing's runtime while it waits.

When an asyncio loop has nothing to run, it waits in its selector. Wrapped by
:class:`DrivingSelector`, it waits in the runtime's reactor instead (``Bridge.idle``, GIL
released; the selector's own descriptor is registered there, so the loop's sockets and timers
still end the wait): a call's answer, or a call for one of the loop's actors, is then read,
decoded and queued on the loop's own thread — one thread wake-up per message, as for a plain
asyncio socket (``src/drive.rs``; measurements in docs/python.md, issue #15).

Only asyncio's own selector loops are wrapped (``loop._selector``); on any other loop
(uvloop), or with ``PULSING_DRIVE=off``, the runtime's driver thread reads every message and
the bridge wakes the loop through its socket pair, as before.
"""

from __future__ import annotations

import selectors


class DrivingSelector(selectors.BaseSelector):
    """``inner`` (the loop's selector) with a ``select`` that drives the runtime while it waits;
    everything else is ``inner``'s."""

    __slots__ = ("_inner", "_native", "_fd", "_on_close")

    def __init__(self, inner: selectors.BaseSelector, native, bridge_fd: int, on_close) -> None:
        self._inner = inner
        self._native = native  # the loop's `_native.Bridge`, watching `inner`'s descriptor
        self._fd = bridge_fd  # the bridge's socket pair, the loop's reader of its events
        self._on_close = on_close  # the loop is closing: its bridge lets go of it

    def register(self, fileobj, events, data=None):
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self._inner.unregister(fileobj)

    def modify(self, fileobj, events, data=None):
        return self._inner.modify(fileobj, events, data)

    def get_key(self, fileobj):
        return self._inner.get_key(fileobj)

    def get_map(self):
        return self._inner.get_map()

    def fileno(self):
        return self._inner.fileno()

    def close(self) -> None:
        self._native.unwatch_selector()  # its duplicate of the descriptor, at once
        self._on_close()
        self._inner.close()

    def select(self, timeout=None):
        inner = self._inner
        if timeout is not None and timeout <= 0:
            return inner.select(timeout)
        ready = inner.select(0)
        if ready:
            return ready
        pending = self._native.idle(timeout)
        if pending is None:  # another thread drives the runtime: wait as usual
            return inner.select(timeout)
        if pending:
            # Events reached the bridge while this thread drove: no byte was written to its
            # socket pair, so report its reader. The loop's own sockets are not polled again
            # here (one system call fewer per message): whatever became ready meanwhile is
            # seen by the `select(0)` that opens the next turn, after these events are handled.
            return [(inner.get_key(self._fd), selectors.EVENT_READ)]
        return inner.select(0)


def drive(loop, native, on_close) -> bool:
    """Wraps ``loop``'s selector if it is asyncio's own and the runtime lets loops drive it
    (``on_close()`` runs when the loop closes it); True if it did."""
    inner = getattr(loop, "_selector", None)
    if not isinstance(inner, selectors.BaseSelector) or isinstance(inner, DrivingSelector):
        return False
    try:
        fd = inner.fileno()
    except (AttributeError, NotImplementedError, OSError):
        return False  # a selector without a descriptor of its own (select, poll)
    if not native.watch_selector(fd):
        return False
    loop._selector = DrivingSelector(inner, native, native.fileno(), on_close)
    return True
