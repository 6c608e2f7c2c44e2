#!/usr/bin/env python3
"""Slow-loris load for bench/RESULTS.md: N connections that each send an HTTP/1.1 request head
one byte per interval, reconnecting whenever the server cuts them, for a fixed duration.

    bench/trickle.py --addr 127.0.0.1:8080 --connections 2000 --interval 1.0 --duration 25

Prints one JSON line: connections opened, cut by the server (with how long each lived), and heads
that went through complete (a server without a header timeout). Loopback only; stops by itself.
"""
import argparse
import asyncio
import json
import statistics
import time

HEAD = (b"GET /trickle HTTP/1.1\r\nHost: bench\r\nUser-Agent: trickle\r\n"
        b"X-Padding: " + b"a" * 64 + b"\r\n\r\n")


async def one(host, port, interval, deadline, stats):
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            stats["connect_errors"] += 1
            await asyncio.sleep(0.1)
            continue
        stats["opened"] += 1
        started = time.monotonic()
        sent = 0
        cut = False
        while sent < len(HEAD) and time.monotonic() < deadline:
            try:
                writer.write(HEAD[sent:sent + 1])
                await writer.drain()
                sent += 1
                data = await asyncio.wait_for(reader.read(4096), timeout=interval)
                if not data:
                    cut = True
                    break
            except asyncio.TimeoutError:
                continue
            except OSError:
                cut = True
                break
        if cut:
            stats["cut"] += 1
            stats["lifetimes"].append(time.monotonic() - started)
        elif sent == len(HEAD):
            stats["completed_heads"] += 1
        writer.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--addr", default="127.0.0.1:8080")
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=25.0)
    a = p.parse_args()
    host, port = a.addr.rsplit(":", 1)
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("loopback only")
    stats = {"opened": 0, "cut": 0, "completed_heads": 0, "connect_errors": 0, "lifetimes": []}
    deadline = time.monotonic() + a.duration
    tasks = []
    for i in range(a.connections):
        tasks.append(asyncio.create_task(one(host, int(port), a.interval, deadline, stats)))
        if i % 200 == 199:
            await asyncio.sleep(0.05)
    await asyncio.gather(*tasks)
    life = stats.pop("lifetimes")
    stats["lifetime_s_median"] = round(statistics.median(life), 2) if life else None
    stats["lifetime_s_max"] = round(max(life), 2) if life else None
    print(json.dumps(stats))


if __name__ == "__main__":
    asyncio.run(main())
