"""An intermittent load for the bench: one CPU busy for BUSY_MS, then idle for IDLE_MS, forever.

    python3 pulsing-py/benches/bursts.py 2 8 &   # busy 2 ms in every 10
    pulsing-py/.venv/bin/python pulsing-py/benches/bench.py --no-ray --only calls

``bench.py --busy`` keeps a CPU busy all along (``yes``); this is the case in between, where a
floor may run at its busy-machine speed in some rows and not in others (BENCHMARKS.md, "Fewer
system calls per call, and large answers a block per write").
"""

import sys
import time

busy, idle = float(sys.argv[1]) / 1e3, float(sys.argv[2]) / 1e3
while True:
    end = time.perf_counter() + busy
    while time.perf_counter() < end:
        pass
    time.sleep(idle)
