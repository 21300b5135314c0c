"""``python -m bench.wsclients``: many WebSocket clients in one separate process.

Reads one session cookie per line on stdin, opens one socket per cookie to
``--url`` (with ``--origin``), sends each a ``resume`` from 0, prints
``connected N`` once all are open, then records the arrival time
(``time.monotonic()``, the same clock in every process on Linux) of every
notification until it reads ``stop`` on stdin, and writes
``{"received": {id: t}, "duplicates": n, "closed": n}`` as JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import websockets


async def client(url: str, origin: str, cookie: str, received: dict, counts: dict, opened: asyncio.Event,
                 stop: asyncio.Event, state: dict) -> None:
    for attempt in range(20):  # a refused handshake under the opening rush is tried again
        try:
            ws = await websockets.connect(url, origin=origin, additional_headers={"Cookie": f"sessionid={cookie}"},
                                          open_timeout=60, max_queue=None, compression=None)
            break
        except (OSError, websockets.InvalidHandshake, asyncio.TimeoutError):
            counts["retries"] += 1
            await asyncio.sleep(0.2 * (attempt + 1))
    else:
        raise RuntimeError("could not connect")
    async with ws:
        await ws.send('{"type":"resume","last_id":0}')
        state["open"] += 1
        if state["open"] == state["total"]:
            opened.set()
        try:
            while not stop.is_set():
                raw = await ws.recv()
                now = time.monotonic()
                message = json.loads(raw)
                if message["type"] == "notification":
                    nid = message["notification"]["id"]
                    if nid in received:
                        counts["duplicates"] += 1
                    else:
                        received[nid] = now
        except websockets.ConnectionClosed:
            counts["closed"] += 1


async def main_async(args) -> None:
    cookies = [line.strip() for line in sys.stdin.readline().split(",") if line.strip()]
    received: dict[int, float] = {}
    counts = {"duplicates": 0, "closed": 0, "retries": 0}
    opened, stop = asyncio.Event(), asyncio.Event()
    state = {"open": 0, "total": len(cookies)}
    tasks = []
    # Open in small waves: a thousand handshakes at once only measure the accept queue.
    for i, cookie in enumerate(cookies):
        tasks.append(asyncio.create_task(client(args.url, args.origin, cookie, received, counts, opened, stop, state)))
        if i % 25 == 24:
            await asyncio.sleep(0.1)
    await asyncio.wait_for(opened.wait(), args.open_timeout)
    print(f"connected {state['open']} ({counts['retries']} handshakes retried)", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop"
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    with open(args.out, "w") as f:
        json.dump({"received": received, **counts}, f)
    print("done", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.wsclients")
    parser.add_argument("--url", required=True)
    parser.add_argument("--origin", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--open-timeout", type=float, default=120)
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
