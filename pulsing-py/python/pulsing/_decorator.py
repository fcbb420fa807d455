"""``@pul.remote`` (``RemoteClass``: ``spawn`` and ``resolve``) and ``@pul.inline``."""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Optional

from . import _native
from ._bridge import bridge_for
from ._errors import PulsingNameTakenError, from_native
from ._host import _NAMES, _ClassInfo, _Host, register
from ._proxy import ActorProxy, ActorRef
from ._runtime import _require_init
from ._targets import _LocalTarget, resolve_target


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
            b = bridge_for(loop)
            deadline = time.monotonic() + 2.0
            while True:
                try:
                    register(host, b)
                    break
                except _native.PulsingNativeError as e:
                    err = from_native(e)
                    # A just-stopped actor of ours releases its name in the runtime a moment later.
                    if isinstance(err, PulsingNameTakenError) and time.monotonic() < deadline:
                        await asyncio.sleep(0.005)
                        continue
                    raise err from None
        return ActorProxy(_LocalTarget(host), info)

    async def resolve(self, name: str, *, timeout: Optional[float] = None) -> ActorProxy:
        """A typed proxy to the actor of this class named ``name``: a local one if there is one,
        else a live one on another node; actors of other types under the name are passed over
        (none of this type: :class:`PulsingTypeMismatchError`)."""
        target = await resolve_target(name, timeout=timeout, type_name=self._pulsing_info.name)
        return ActorRef(target).as_type(self)

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
