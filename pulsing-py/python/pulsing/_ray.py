"""Everything that touches Ray: joining the Pulsing cluster of a Ray cluster, and serializing a
sync Ray actor's own calls with Pulsing's. No other module imports ``ray``.

**Discovery.** Ray's internal key-value store (``ray.experimental.internal_kv``, reachable from
the driver and every worker once Ray is up) holds, in the namespace ``pulsing``:

* ``secret``: the cluster secret, written once with put-if-absent by whoever comes first, so
  every process of the Ray cluster reads the same one (Pulsing connections are then
  authenticated and encrypted, and pickled objects may cross them);
* ``node:<addr>``: one key per live Pulsing node (every one, not a single seed);
* ``join``: a short lock (put-if-absent, with its time) held while a newcomer reads the node
  list, starts its node with every recorded address that answers as seeds, and records its own.

Holding the lock across "read the list, start, record myself" makes joins one at a time, so each
newcomer knows every node recorded before it: 20 actors mounting at once form one cluster, never
two that do not know each other. Records whose process Ray reports gone (a dead or restarted actor,
an ended job) are dropped from the store; all others are seeds, so a dead first process does
not matter. If
live nodes were recorded but this node has not heard from any of them after ``join_timeout``,
joining fails loudly instead of leaving it a one-node cluster. A lock older than
``_STALE_LOCK`` seconds (its holder died in the few milliseconds it holds it) is broken.

**Sync Ray actors.** Ray runs a sync actor's methods on the process's main thread through
executors it built when it loaded the class (``FunctionActorManager``). ``serialize_calls``
rewraps those executors so that each of Ray's calls of the instance's methods holds the
instance's lock, the same lock the Pulsing side takes (``_mount``). This reaches into Ray's
private tables (checked against the pinned Ray version by the tests); if they are not there,
``pul.mount`` says so instead of running two threads in one instance.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import threading
import time
import uuid
from typing import Optional

from . import _native, _runtime
from ._errors import PulsingError

NAMESPACE = "pulsing"
_SECRET = b"secret"
_NODE = b"node:"
_LOCK = b"join"
_STALE_LOCK = 5.0  # seconds
_INSTALL = "pip install 'pulsing[ray]'"

_local = threading.Lock()  # one join at a time in this process
_joined: Optional[str] = None  # the address this process recorded in Ray's store


def require_ray() -> None:
    """Raises an ``ImportError`` that says what to install if Ray is not installed (without
    importing it)."""
    import importlib.util

    if sys.modules.get("ray", False) is None or importlib.util.find_spec("ray") is None:
        raise ImportError(f"Pulsing's Ray bridge needs Ray: {_INSTALL}")


def import_ray():
    """The ``ray`` module, or an ``ImportError`` that says what to install."""
    try:
        import ray
    except ImportError as e:
        raise ImportError(f"Pulsing's Ray bridge needs Ray: {_INSTALL}") from e
    return ray


def _kv():
    from ray.experimental import internal_kv

    return internal_kv


def _put(key: bytes, value: bytes, overwrite: bool = True) -> bool:
    """True if the key already existed (then, without ``overwrite``, nothing was written)."""
    return _kv()._internal_kv_put(key, value, overwrite, namespace=NAMESPACE)


def _get(key: bytes) -> Optional[bytes]:
    return _kv()._internal_kv_get(key, namespace=NAMESPACE)


def _delete(key: bytes, prefix: bool = False) -> None:
    _kv()._internal_kv_del(key, del_by_prefix=prefix, namespace=NAMESPACE)


def _shared_secret() -> bytes:
    """The Ray cluster's Pulsing secret; the first process to ask creates it."""
    _put(_SECRET, os.urandom(32).hex().encode(), overwrite=False)
    secret = _get(_SECRET)
    if not secret:
        raise PulsingError("could not read the Pulsing secret from Ray's key-value store")
    return secret


def recorded_nodes() -> "dict[str, dict]":
    """The Pulsing nodes recorded in Ray's store (live or not): address -> record."""
    nodes = {}
    for key in _kv()._internal_kv_list(_NODE, namespace=NAMESPACE):
        raw = _get(key)
        try:
            nodes[key[len(_NODE):].decode()] = json.loads(raw) if raw else {}
        except ValueError:
            nodes[key[len(_NODE):].decode()] = {}
    return nodes


def _record() -> dict:
    """What this process records beside its address: who it is to Ray, to tell when it is gone."""
    ctx = import_ray().get_runtime_context()
    return {"actor": ctx.get_actor_id(), "job": ctx.get_job_id(), "pid": os.getpid()}


def _gone(record: dict, jobs: "dict[str, bool]") -> bool:
    """True if Ray says the process of ``record`` has ended (its actor is dead or restarted in
    another process, or its job has ended). Asks Ray's control store, never the node itself: a
    probe connection would make a live node log a refused handshake."""
    from ray._private import state

    actor = record.get("actor")
    if actor:
        info = state.actors(actor_id=actor)
        if not info or info.get("State") == "DEAD":
            return True
        return info.get("State") == "ALIVE" and info.get("Pid") not in (0, record.get("pid"))
    job = record.get("job")
    if job:
        if not jobs:
            jobs.update((j["JobID"], j["IsDead"]) for j in state.jobs())
        return jobs.get(job, True)
    return False


class _JoinLock:
    """The ``join`` lock in Ray's store (see the module doc)."""

    def __init__(self, timeout: float) -> None:
        self.token = f"{time.time()!r} {uuid.uuid4().hex}".encode()
        self.timeout = timeout

    def __enter__(self):
        deadline = time.monotonic() + self.timeout
        pause = 0.001
        while _put(_LOCK, self.token, overwrite=False):
            held = _get(_LOCK)
            try:
                since = float(held.split()[0]) if held else 0.0
            except ValueError:
                since = 0.0
            if held is not None and time.time() - since > _STALE_LOCK:
                _delete(_LOCK)  # its holder died while joining
                continue
            if time.monotonic() > deadline:
                raise PulsingError(
                    f"timed out waiting for another process to finish joining Pulsing "
                    f"(the `join` lock in Ray's key-value store, namespace `{NAMESPACE}`)"
                )
            time.sleep(pause)  # a poll of the store, not of a test's condition
            pause = min(pause * 2, 0.02)
        return self

    def __exit__(self, *exc) -> None:
        if _get(_LOCK) == self.token:
            _delete(_LOCK)


def init_in_ray(*, join_timeout: float = 10.0) -> "_runtime._Done":
    """Starts this process's Pulsing node inside a Ray cluster (the driver or any worker): it
    listens on Ray's node IP address (a free port), with the Ray cluster's secret, and joins
    every other Pulsing node recorded in Ray. ``pul.mount`` calls it; the driver calls it to
    ``pul.resolve`` mounted actors. Calling it again is a no-op. ``await`` is optional.

    It returns once this node has heard from another Pulsing node (or at once if it is the
    first). The names of actors elsewhere reach it with the next gossip rounds, usually within
    a second: ``pul.resolve(name, timeout=...)`` waits for a name, ``pul.instances(name)`` only
    says what this node knows now."""
    global _joined
    ray = import_ray()
    if not ray.is_initialized():
        raise PulsingError("Ray is not initialized here: call ray.init() first")
    with _local:
        secret = _shared_secret()
        state = _runtime._state
        if state is not None and _native.is_initialized():
            if _joined is not None and state[2] == secret:
                return _runtime._Done()
            if _joined is None:
                raise PulsingError(
                    "Pulsing was started with pul.init() in this process; call pul.shutdown() "
                    "before joining Ray's Pulsing cluster"
                )
        if state is not None:
            # Our node belongs to an earlier Ray cluster (its secret is gone): leave it.
            _runtime.shutdown()
        _joined = None
        ip = ray.util.get_node_ip_address()
        host = f"[{ip}]" if ":" in ip else ip
        with _JoinLock(timeout=max(join_timeout, 30.0)):
            seeds, jobs = [], {}
            for addr, record in recorded_nodes().items():
                if _gone(record, jobs):
                    _delete(_NODE + addr.encode())
                else:
                    seeds.append(addr)
            _runtime.init(f"{host}:0", seeds=seeds, secret=secret)
            me = _native.advertised_addr()
            _put(_NODE + me.encode(), json.dumps(_record()).encode())
            _joined = me
    if seeds:
        _await_join(me, seeds, join_timeout)
    return _runtime._Done()


def _await_join(me: str, seeds: "list[str]", timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(not m["is_self"] for m in _native.members()):
        if time.monotonic() > deadline:
            raise PulsingError(
                f"this Pulsing node ({me}) heard from none of the nodes recorded in Ray "
                f"({', '.join(seeds)}) within {timeout}s: not joining as a cluster of one"
            )
        time.sleep(0.005)  # waiting for gossip, which runs on the runtime's threads


def leave() -> None:
    """This process's node leaves (its record in Ray's store too, if Ray is still up)."""
    global _joined
    with _local:
        me, _joined = _joined, None
        try:
            ray = import_ray()
            if me is not None and ray.is_initialized():
                _delete(_NODE + me.encode())
        except ImportError:
            pass
        if _runtime._state is not None:
            _runtime.shutdown()


def cleanup_ray() -> None:
    """Removes everything Pulsing keeps in Ray's key-value store (the secret, the node list) and
    shuts Pulsing down in this process, so that ``ray.shutdown()`` and a new ``ray.init()`` start
    afresh. Call it from the driver when done (the mounted actors end with their Ray job)."""
    global _joined
    with _local:
        _joined = None
        if in_ray():
            _delete(b"", prefix=True)
        if _runtime._state is not None:
            _runtime.shutdown()


def in_ray() -> bool:
    """True if Ray is imported and initialized in this process (a Ray worker, or a driver
    after ``ray.init``)."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def in_ray_actor() -> bool:
    """True in a Ray actor's worker process (never starts Ray)."""
    if not in_ray():
        return False
    import ray

    try:
        return ray.get_runtime_context().get_actor_id() is not None
    except Exception:  # noqa: BLE001 - not in a worker
        return False


def serialize_calls(instance, lock) -> bool:
    """Makes Ray's own calls of ``instance``'s methods hold ``lock`` (a sync Ray actor's
    instance, in its worker). False when this process is no Ray actor; raises if Ray's tables
    are not where this Ray version should have them."""
    if not in_ray_actor():
        return False
    import ray

    try:
        manager = ray._private.worker.global_worker.function_actor_manager
        tables = (manager._function_execution_info, manager.execution_infos)
    except AttributeError as e:
        raise PulsingError(
            "pul.mount on a sync Ray actor needs Ray's method table, which this Ray version "
            "does not have; give the class an `async def` method (an async actor) instead"
        ) from e
    cls = type(instance)
    for table in tables:
        for key, info in list(table.items()):
            executor = info.function
            name = getattr(executor, "name", "")
            method = getattr(executor, "method", None)
            if method is None or name.startswith("__") or getattr(executor, "__pulsing_lock__", None):
                continue
            try:
                if inspect.getattr_static(cls, name) is not method:
                    continue
            except AttributeError:
                continue
            table[key] = info._replace(function=_locked_executor(executor, lock))
    return True


def _locked_executor(executor, lock):
    if inspect.isgeneratorfunction(executor.method):

        def run(actor, *args, **kwargs):
            return locked_generator(executor(actor, *args, **kwargs), lock)

    else:

        def run(actor, *args, **kwargs):
            with lock:
                return executor(actor, *args, **kwargs)

    run.name = executor.name
    run.method = executor.method
    run.__pulsing_lock__ = lock
    return run


def locked_generator(gen, lock):
    """``gen``'s items, each produced while holding ``lock``."""
    try:
        while True:
            with lock:
                try:
                    item = next(gen)
                except StopIteration:
                    return
            yield item
    finally:
        with lock:
            gen.close()
