"""What mirror mode adds before a segment is listed: the time from a broadcaster listing a new
segment to players seeing it in the merged playlist, in direct mode and in mirror mode with each
segment store (the directory, and S3 through moto's server on loopback).

    python -m bench.bench_mirror [--segments 30] [--bytes 1000000]

An edge in-process with the default poll interval (1 s), one fake broadcaster on loopback that
serves segments of `--bytes` bytes (1 MB: 2 s at 4 Mbit/s), each new segment added at a random
phase of the poll, once the previous one is listed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.common import Ratio, summary
from tests.playlists_http.harness import open_edge
from tests.processes import free_port, stop_process


async def measure(mode: str, store: str, segments: int, size: int) -> list[float]:
    delays: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        # heartbeat_ttl: the fake broadcaster registers once and sends no heartbeats
        async for edge in open_edge(Path(tmp), poll_interval=1.0, hole_wait=1.0, rendition_wait=3.0, lease_ttl=3.0, heartbeat_ttl=3600.0,
                                    segment_mode=mode, segment_store=store):
            fake = await edge.add_broadcaster("a", window=6)
            fake.media = {n: os.urandom(size) for n in range(segments)}
            sid = (await edge.create_stream())["id"]
            await edge.svc.store.registry.note_carrier(sid, "a", edge.svc.clock())
            for n in range(segments):
                fake.add(sid, "source", n)
                added = time.perf_counter()
                while True:
                    response = await edge.playlist(sid)
                    if response.status_code == 200 and response.text.rstrip().endswith(f"/{n}.ts"):
                        break
                    await asyncio.sleep(0.005)
                delays.append(time.perf_counter() - added)
                await asyncio.sleep(random.uniform(0.0, 1.0))  # the next one at any phase of the poll
    return delays[2:]  # the first ones include the feed's start


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    port = free_port()
    proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(url + "/", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ[name] = "testing"
    import boto3

    boto3.client("s3", region_name="us-east-1", endpoint_url=url).create_bucket(Bucket="bench")
    return proc, f"s3://bench/segments?endpoint={url}&region=us-east-1"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--segments", type=int, default=30)
    parser.add_argument("--bytes", type=int, default=1_000_000)
    args = parser.parse_args()
    moto, s3 = start_moto()
    try:
        print("| mode | store | p50 ms | p95 ms | max ms |")
        print("|---|---|---:|---:|---:|")
        medians: dict[str, float] = {}
        for mode, store, label in (("direct", "", "-"), ("mirror", "", "directory"), ("mirror", s3, "S3 (moto)")):
            delays = sorted(asyncio.run(asyncio.wait_for(measure(mode, store, args.segments, args.bytes), 300)))
            p95 = delays[min(len(delays) - 1, int(0.95 * len(delays)))]
            medians[label] = statistics.median(delays) * 1000
            print(f"| {mode} | {label} | {medians[label]:.0f} | {p95 * 1000:.0f} | "
                  f"{delays[-1] * 1000:.0f} |", flush=True)
        print()
        print(summary([Ratio(f"p50 time to list a new segment, mirror mode ({label}) / direct mode", medians[label],
                             medians["-"], "ms") for label in ("directory", "S3 (moto)")]))
    finally:
        stop_process(moto)


if __name__ == "__main__":
    main()
