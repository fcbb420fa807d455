"""``pul.mount`` / ``pul.unmount``: serving an object that already exists (a Ray actor's
instance) through Pulsing, under a name, with the hosting machinery of ``@pul.remote`` actors
(``_host._Host``, ``_serve``, ``_workers``: one dispatch path).

One thread of control per instance:

* **A running event loop where ``mount`` is called** (an async Ray actor: Ray runs ``__init__``
  and every method, sync or async, on its one loop thread): the instance is hosted on that loop
  with the ``ON_LOOP`` placement, so calls that arrive through Pulsing run on that same thread,
  ``async def`` ones interleaving at ``await`` points exactly as Ray's own async calls do, ``def``
  ones and ``def`` generators run on the loop too. No lock is needed.
* **No running loop** (a sync Ray actor: Ray runs its methods on the main thread): the instance
  gets a re-entrant lock; Pulsing's calls run on the ``def`` workers (``WORKERS`` placement, through
  a private event loop thread for the bridge) holding it, and Ray's own calls of the instance's
  methods are made to hold it too (``_ray.serialize_calls``). Inside a Ray actor, calls wait until
  the function that called ``mount`` (``__init__``) has returned.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any, Optional

from . import _native, _ray, _runtime
from ._bridge import bridge_for
from ._errors import PulsingError, PulsingNameTakenError, PulsingNotFoundError, from_native
from ._host import _NAMES, _GEN, ON_LOOP, WORKERS, MethodKind, _ClassInfo, _Host, register

_loop: Optional[asyncio.AbstractEventLoop] = None  # the private loop of mounted sync instances
_loop_lock = threading.Lock()


def mount(instance: Any, *, name: str) -> None:
    """Serves ``instance``'s public methods through Pulsing under ``name`` (synchronous: call it
    from ``__init__``). Inside Ray, starts and joins this process's Pulsing node first
    (``pul.init_in_ray``); elsewhere, ``pul.init`` must have been called. See the module doc
    for where the calls run."""
    if not isinstance(name, str) or not name:
        raise ValueError("pul.mount needs a name (a non-empty string)")
    if _ray.in_ray():
        _ray.init_in_ray()
    else:
        _ray.require_ray()  # without Ray installed: an ImportError that says what to install
        if _runtime._state is None:
            raise PulsingError(
                "pul.mount: neither Ray nor Pulsing is initialized here "
                "(call it inside a Ray actor, or after ray.init() or pul.init())"
            )
    cls = type(instance)
    old = _NAMES.get(name)
    if old is not None and not old.is_stopped():
        raise PulsingNameTakenError(f"the name `{name}` is already taken by {old.label()}")
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    if loop is not None:
        host = _Host(_ClassInfo(cls, False, ON_LOOP), instance, loop, name)
        _register(host, bridge_for(loop))
        return
    info = _ClassInfo(cls, False, WORKERS)
    if any(kind in (MethodKind.ASYNC, MethodKind.AGEN) for kind in info.kinds.values()):
        raise PulsingError(
            f"pul.mount({cls.__qualname__}): it has `async def` methods but no event loop runs "
            "here; call pul.mount on the loop they run on"
        )
    lock = threading.RLock()
    gated = _ray.serialize_calls(instance, lock)
    if gated:
        lock.acquire()  # released when the caller (`__init__`) returns
    try:
        host = _Host(info, _Serialized(instance, info, lock), _private_loop(), name)
        asyncio.run_coroutine_threadsafe(_register_here(host), host.loop).result()
    except BaseException:
        if gated:
            lock.release()
        raise
    if gated:
        _release_on_return(sys._getframe(1), lock)


def unmount(name: str) -> None:
    """Stops serving the instance mounted (in this process) as ``name``; its name disappears
    from the cluster. The instance itself goes on as before."""
    host = _NAMES.get(name)
    if host is None or host.is_stopped():
        raise PulsingNotFoundError(f"nothing is mounted as `{name}` in this process")
    host.stop()


def _register(host: _Host, bridge) -> None:
    deadline = time.monotonic() + 2.0
    while True:
        try:
            register(host, bridge)
            return
        except _native.PulsingNativeError as e:
            err = from_native(e)
            # A just-unmounted instance releases its name in the runtime a moment later.
            if isinstance(err, PulsingNameTakenError) and time.monotonic() < deadline:
                time.sleep(0.005)
                continue
            raise err from None


async def _register_here(host: _Host) -> None:
    _register(host, bridge_for(host.loop))


def _private_loop() -> asyncio.AbstractEventLoop:
    global _loop
    with _loop_lock:
        if _loop is None or _loop.is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="pulsing-mount", daemon=True).start()
            _loop = loop
        return _loop


class _Serialized:
    """What Pulsing calls of a mounted sync instance: its public methods, each holding the
    instance's lock (a generator holds it while producing each item)."""

    def __init__(self, instance: Any, info: _ClassInfo, lock) -> None:
        for method, kind in info.kinds.items():
            fn = getattr(instance, method)
            setattr(self, method, _locked_gen(fn, lock) if kind == _GEN else _locked(fn, lock))


def _locked(fn, lock):
    def call(*args, **kwargs):
        with lock:
            return fn(*args, **kwargs)

    return call


def _locked_gen(fn, lock):
    def gen(*args, **kwargs):
        with lock:
            g = fn(*args, **kwargs)
        return _ray.locked_generator(g, lock)

    return gen


def _release_on_return(frame, lock) -> None:
    """Releases ``lock`` (held by this thread) when ``frame`` returns or raises."""
    previous = sys.getprofile()

    def profile(f, event, arg):
        if previous is not None:
            previous(f, event, arg)
        if f is frame and event == "return":
            sys.setprofile(previous)
            lock.release()

    sys.setprofile(profile)
