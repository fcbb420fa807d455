import asyncio, sys, threading
sys.path.insert(0, "/work/main/pulsing-py/benches")
import bench
import pulsing as pul
async def main():
    await pul.init(addr="127.0.0.1:0")
    local = await bench.Bench.spawn()
    hand_off = bench.thread_hand_off()
    out = []
    for _ in range(2):
        cost, floor = await bench.paired(local.ping, hand_off)
        out.append(f"{cost.latency*1e6:4.1f}us/{cost.latency/floor.latency:.2f}x cpu {cost.cpu()[0]*1e6:3.0f}")
    workers = sum(t.name == "pulsing-sync" for t in threading.enumerate())
    print(" | ".join(out), f"workers={workers}", flush=True)
    await pul.shutdown()
asyncio.run(main())
