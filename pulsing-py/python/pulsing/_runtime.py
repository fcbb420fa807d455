"""Starting and stopping Pulsing in this process, and the cluster view.

``init`` starts the one ``ActorSystem`` of the process (in ``_native``, on its own tokio runtime);
``shutdown`` stops it, and so does an ``atexit`` hook, before the interpreter finalizes (then no
Rust thread can touch a Python object any more: see ``src/runtime.rs``). Modules that keep state
per system (the actor hosts) register a callback with :func:`on_shutdown`, so this module imports
none of them.
"""

from __future__ import annotations

import atexit
from typing import Callable, Optional

from . import _native
from ._errors import PulsingError, from_native

_state: Optional[tuple] = None  # the arguments of the running init
# Run (in order) by `shutdown` and at interpreter exit, before the native system stops.
_SHUTDOWN_HOOKS: "list[Callable[[], None]]" = []


def on_shutdown(hook: "Callable[[], None]") -> "Callable[[], None]":
    """Registers ``hook`` to run when the system shuts down (before the native shutdown)."""
    _SHUTDOWN_HOOKS.append(hook)
    return hook


def _run_shutdown_hooks() -> None:
    for hook in _SHUTDOWN_HOOKS:
        hook()


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
    encrypt: bool = True,
) -> _Done:
    """Starts Pulsing in this process. Works from sync code too (``await`` is optional).

    Without ``addr`` the system is standalone. With ``addr`` (``"127.0.0.1:0"`` picks a free port,
    read it back with :func:`local_addr`) it joins the cluster through ``seeds``. Calling ``init``
    again with the same arguments returns the running system; with different ones it raises.

    With ``secret`` every connection proves the secret (a Noise handshake) and is encrypted
    (``encrypt=False`` keeps the authentication but sends cleartext, for trusted networks), and
    arbitrary (pickled) Python objects may cross processes. Without it, only plain values cross
    processes (:class:`PulsingPickleError` otherwise), and anyone who can reach ``addr`` can join:
    binding a non-loopback address without a secret logs a warning.
    """
    global _state
    if isinstance(secret, str):
        secret = secret.encode()
    args = (addr, tuple(seeds), secret, call_timeout, advertise, encrypt)
    if _state is not None:
        if _state == args and _native.is_initialized():
            return _Done()
        raise PulsingError(
            "pulsing is already initialized with other arguments; call pul.shutdown() first"
        )
    try:
        _native.init(addr, list(seeds), secret, call_timeout, advertise, encrypt)
    except _native.PulsingNativeError as e:
        raise from_native(e) from None
    _state = args
    return _Done()


def shutdown() -> _Done:
    """Stops every local actor and leaves the cluster. Works with or without ``await``."""
    global _state
    _run_shutdown_hooks()
    _state = None
    _native.shutdown()
    return _Done()


def _atexit() -> None:
    _run_shutdown_hooks()
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
