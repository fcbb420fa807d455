"""What a proxy calls: an actor in this process, or one reached through the runtime.

* ``_LocalTarget``: a Python actor of this process; calls run on its loop without leaving Python
  (``_host._invoke``).
* ``_RemoteTarget``: any actor behind a native ``DynRef`` (another process, a Rust actor, a Python
  actor registered from another loop); the answer comes back through the loop's bridge, and a
  call that is the only thing its loop waits for may hold the loop for it (``_bridge``).
* ``_RemoteStream``: a stream from the runtime, pushed to the loop in batches (up to 4,096 items
  per event, at most 8,192 unconsumed).
* ``_LazyTarget``: a proxy that arrived by name (unpickled); resolved on its first use.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from typing import Optional

from . import _native
from ._bridge import _HOLD_REMOTE_US, _TURN_EVERY, running_bridge
from ._errors import (
    PulsingActorError,
    PulsingDecodeError,
    PulsingError,
    PulsingPickleError,
    PulsingTimeoutError,
    from_native,
)
from ._host import _CHAIN_KW, _NAMES, _chain, _ClassInfo, _Host, _invoke, _local_stream
from ._runtime import _require_init



def _unsendable(method: str, e: Exception) -> PulsingDecodeError:
    """The error for arguments that cannot be sent: they need pickle and this process has no
    cluster secret (``PulsingPickleError``), or they neither are plain data nor pickle."""
    cls = PulsingPickleError if isinstance(e, PulsingPickleError) else PulsingDecodeError
    text = str(e) if isinstance(e, PulsingPickleError) else repr(e)
    return cls(f"cannot send the arguments of `{method}`: {text}")

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

    @property
    def is_alive(self) -> bool:
        return not self.host.is_stopped()

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
        b = running_bridge()
        token, fut = b.future()
        try:
            self.native.call(b.native, token, method, args, kwargs or None, timeout)
        except BaseException as e:
            b.waiters.pop(token, None)  # nothing will answer it
            if isinstance(e, _native.PulsingNativeError):
                raise from_native(e) from None
            if not isinstance(e, Exception):
                raise  # KeyboardInterrupt, or a panic in the runtime
            raise _unsendable(method, e) from e
        timed_out = (
            _HOLD_REMOTE_US
            and len(b.waiters) == 1
            and b.may_hold()
            and (self.quick or self._probe())
            and b.hold_remote() is False  # None: the loop had other work, not a slow target
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
            try:
                result = await fut
            except asyncio.CancelledError:
                # The caller gave up: drop the call (a remote actor then skips it if it has
                # not started), and forget its token.
                b.native.cancel(token)
                b.waiters.pop(token, None)
                raise
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

    @property
    def is_alive(self) -> bool:
        """Whether the actor still runs, as far as this process knows (its node is connected,
        no call found it stopped, gossip still shows its name bound to it)."""
        return self.native.is_alive()

    def stop(self) -> None:
        self.native.stop()


def _deliver_to(ref):
    """The bridge's callback for a stream's batches; weak, so that a stream its consumer left
    is collected (and closed: ``__del__``)."""

    def deliver(ev) -> None:
        stream = ref()
        if stream is not None:
            stream._on_items(ev)

    return deliver


class _RemoteStream:
    """Items of a stream from the Rust runtime, pushed to the loop in batches.

    Once open, one runtime task per stream posts batches (``ITEMS`` events, up to ``_BATCH``
    items each) without being asked, so batches that arrive while the loop is busy are taken in
    one wake-up; they land in ``_buf`` through :meth:`_on_items`. The consumer acknowledges what
    it consumed each time the buffer runs dry; the task pauses while ``_WINDOW`` items are
    unacknowledged, which bounds the buffer.
    """

    _BATCH = 4096
    _WINDOW = 2 * _BATCH

    def __init__(self, native, method, args, kwargs) -> None:
        self._native = native
        self._call = (method, args, kwargs)
        self._stream = None
        self._buf: collections.deque = collections.deque()
        self._bridge = None
        self._token = None
        self._waiting = None  # the consumer's future while the buffer is empty
        self._delivered = 0  # items delivered since the last acknowledgement
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
            b = running_bridge()
            token, fut = b.future()
            try:
                self._native.stream(b.native, token, method, args, kwargs or None)
            except BaseException as e:
                b.waiters.pop(token, None)
                self._done = True
                if not isinstance(e, Exception):
                    raise
                raise _unsendable(method, e) from e
            self._stream = await fut
            self._bridge, self._token = b, next(b.tokens)
            b.waiters[self._token] = _deliver_to(weakref.ref(self))
            self._stream.start(b.native, self._token, self._BATCH, self._WINDOW)
        while not self._buf:
            if self._done:
                err, self._err = self._err, None
                if err is not None:
                    raise err
                raise StopAsyncIteration
            if self._delivered:
                self._stream.ack(self._delivered)  # all consumed: the buffer is empty
                self._delivered = 0
            self._waiting = self._bridge.loop.create_future()
            try:
                await self._waiting
            finally:
                self._waiting = None
        return self._buf.popleft()

    def _on_items(self, ev) -> None:
        """A batch from the runtime (an ``ITEMS`` event: ``(kind, token, items, ended, err)``)."""
        _, _, items, ended, err = ev
        self._buf.extend(items)
        self._delivered += len(items)
        if ended:
            self._done = True
            self._err = from_native(err) if err is not None else None
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def aclose(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._bridge is not None:
            self._bridge.waiters.pop(self._token, None)
        if self._stream is not None and not self._done:
            self._done = True
            self._stream.close()

    def __del__(self) -> None:
        try:
            self._close()
        except Exception:
            pass



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
        type_name = self._info.name if self._info is not None else None
        target = await resolve_target(self._name, timeout=10, type_name=type_name)
        if self._info is not None and isinstance(target, _RemoteTarget):
            target.python = True
        self._target = target
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

    @property
    def is_alive(self) -> bool:
        # Not resolved yet: nothing says it is gone.
        return self._target is None or self._target.is_alive

    def stop(self) -> None:
        if self._target is not None:
            self._target.stop()
        else:
            stop_name = self._name

            async def later():
                (await resolve_target(stop_name)).stop()

            asyncio.ensure_future(later())


async def resolve_target(name: str, *, timeout: Optional[float] = None, type_name: Optional[str] = None):
    """The target of the actor named ``name`` (here first, then in the cluster): what
    ``pul.resolve`` wraps in an ``ActorRef``. With ``type_name``, only an actor of that type
    (``Class.resolve``): others under the name, here or elsewhere, are passed over."""
    _require_init()
    if timeout is not None and not timeout >= 0:
        raise ValueError(f"a timeout is a number of seconds >= 0, not {timeout!r}")
    host = _NAMES.get(name)
    if host is not None and not host.is_stopped() and type_name in (None, host.info.name):
        return _LocalTarget(host)
    b = running_bridge()
    token, fut = b.future()
    _native.resolve(b.native, token, name, timeout, type_name)
    native = await fut
    # A Python actor of this process found through Rust (another loop registered it).
    return _RemoteTarget(native)

