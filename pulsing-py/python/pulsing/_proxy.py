"""What users hold: ``ActorRef`` (from ``pul.resolve``), ``ActorProxy`` (method calls) and the
``Call`` a method call builds; ``pul.resolve`` and ``pul.stop``.

A proxy of a named actor pickles by name, as a call of ``pulsing._core._revive_proxy`` (that path
is kept stable for pickled data: ``_core`` re-exports it from here).
"""

from __future__ import annotations

import importlib
from typing import Optional

from ._errors import PulsingBadArgumentsError, PulsingTypeMismatchError, PulsingUnknownMethodError
from ._host import _NAMES, CALLS, STREAMING, _ClassInfo
from ._targets import _LazyTarget, _LocalTarget, _RemoteTarget, resolve_target


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
        if self._kind in STREAMING:
            raise PulsingBadArgumentsError(f"`{self._method}` streams: use `async for`")
        return self._target.call(self._method, self._args, self._kwargs, self._timeout).__await__()

    def __aiter__(self):
        if self._kind in CALLS:
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


# Pickled proxies name this function `pulsing._core._revive_proxy`, as before the Python side was
# split by role: pickles stay byte-for-byte the same, and `_core` re-exports it from here.
_revive_proxy.__module__ = "pulsing._core"



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

    @property
    def is_alive(self) -> bool:
        """Whether the actor still runs, as far as this process knows. A ref stays bound to the
        actor it resolved: once that actor stopped, it is false (and calls raise
        :class:`PulsingStoppedError`) even if the name is bound again; resolve anew."""
        return self._target.is_alive

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
    return ActorRef(await resolve_target(name, timeout=timeout))


def stop(actor) -> None:
    """Stops an actor given its proxy or ref."""
    if isinstance(actor, ActorProxy):
        actor.__dict__["_pulsing_target"].stop()
    elif isinstance(actor, ActorRef):
        actor.stop()
    else:
        raise TypeError("pul.stop takes an actor proxy or ref")

