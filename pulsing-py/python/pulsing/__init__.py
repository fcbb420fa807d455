"""Pulsing: distributed actors for Python on the Pulsing Rust runtime.

```python
import pulsing as pul

@pul.remote
class Counter:
    def __init__(self, start=0):
        self.value = start
    def inc(self, by=1):
        self.value += by
        return self.value

async def main():
    await pul.init()
    counter = await Counter.spawn(10, name="counter")
    print(await counter.inc())   # 11
    await pul.shutdown()
```
"""

from . import _native
from . import _serve, _workers  # noqa: F401 - they register their bridge event handlers
from ._decorator import RemoteClass, inline, remote
from ._proxy import ActorProxy, ActorRef, Call, resolve, stop
from ._runtime import advertised_addr, init, instances, local_addr, members, shutdown
from ._mount import mount, unmount
from ._ray import cleanup_ray, init_in_ray
from ._errors import (
    PulsingActorError,
    PulsingBadArgumentsError,
    PulsingDecodeError,
    PulsingPickleError,
    PulsingError,
    PulsingNameTakenError,
    PulsingNotFoundError,
    PulsingStoppedError,
    PulsingTimeoutError,
    PulsingTransportError,
    PulsingTypeMismatchError,
    PulsingBusyError,
    PulsingUnknownMethodError,
)

__version__: str = _native.__version__

__all__ = [
    "ActorProxy",
    "ActorRef",
    "Call",
    "RemoteClass",
    "PulsingActorError",
    "PulsingBadArgumentsError",
    "PulsingDecodeError",
    "PulsingPickleError",
    "PulsingError",
    "PulsingNameTakenError",
    "PulsingNotFoundError",
    "PulsingStoppedError",
    "PulsingTimeoutError",
    "PulsingTransportError",
    "PulsingTypeMismatchError",
    "PulsingBusyError",
    "PulsingUnknownMethodError",
    "__version__",
    "advertised_addr",
    "cleanup_ray",
    "init",
    "init_in_ray",
    "inline",
    "instances",
    "local_addr",
    "members",
    "mount",
    "remote",
    "resolve",
    "shutdown",
    "stop",
    "unmount",
]
