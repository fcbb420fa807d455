"""The worker threads that run ``def`` methods (``_SyncPool``), one actor's calls at a time.

A job is one actor's drain loop (``_Host._drain_sync``). The pool's queue is native
(``_native.JobQueue``, ``src/handoff.rs``) so that the runtime can hand a waiting worker the drain
of an actor whose ``def`` calls it queued straight from another process, without waking the
event loop; when no worker waits, the runtime asks the loop instead (a ``DRAIN`` event, handled
here).
"""

from __future__ import annotations

import collections
import threading
import traceback
import weakref
from typing import Any

from . import _native
from ._bridge import EventKind, register

# Hosts whose `def` calls the runtime may queue, by id: kept (weakly) after they stop, so that
# calls already queued still drain.
_DRAINS: "weakref.WeakValueDictionary[int, Any]" = weakref.WeakValueDictionary()


class _SyncPool:
    """Worker threads for ``def`` methods: a job is one actor's drain loop.

    Leaner than ``ThreadPoolExecutor`` (no future per job): one native queue that idle workers
    wait on (after handing an answer to a loop that holds for it, a worker may spin up to 50 µs
    for the next job before it sleeps, only while the machine has an idle CPU: ``src/spin.rs``). The runtime queues drains into it too, for calls from other
    processes, but only when a worker waits to take them; a worker is started whenever jobs
    outnumber waiting workers, up to ``max_threads``, so one actor's slow method never holds
    back another's. Workers are daemon threads, so an idle one never delays interpreter exit.
    """

    def __init__(self, max_threads: int = 64) -> None:
        self.jobs = _native.JobQueue()  # counts `pending` and holds the runtime's drains
        self.pending: collections.deque = collections.deque()
        self.lock = threading.Lock()
        self.threads = 0
        self.max_threads = max_threads

    def submit(self, job) -> None:
        self.pending.append(job)
        if not self.jobs.put():
            return  # a waiting worker takes it
        with self.lock:
            if self.threads >= self.max_threads:
                return
            self.threads += 1
        threading.Thread(target=self._work, name="pulsing-sync", daemon=True).start()

    def _work(self) -> None:
        jobs, pending = self.jobs, self.pending
        publish = None
        while True:
            drain = jobs.get(publish)
            publish = None
            try:
                if drain is None:
                    publish = pending.popleft()()
                else:  # drain that actor's calls (queued by the runtime)
                    host = _DRAINS.get(drain)
                    if host is not None:
                        publish = host._drain_sync()
            except BaseException:  # noqa: BLE001 - a worker outlives any job
                traceback.print_exc()


_POOL = _SyncPool()


def _on_drain(bridge, ev) -> None:
    """An actor's ``def`` calls from the runtime need a worker (none was waiting)."""
    host = _DRAINS.get(ev[1])
    if host is not None:
        _POOL.submit(host._drain_sync)


register(EventKind.DRAIN, _on_drain)
