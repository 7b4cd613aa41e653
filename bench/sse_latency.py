"""Live-stream latency: from a command's HTTP response to its event arriving at every SSE client
subscribed to the project, against a raw Redis pub/sub round trip to as many subscribers.

A real API process (`python -m aiplatform api`) and a projector worker (`python -m aiplatform
worker --queues projector`) run on a scratch database. Client processes (`--client-processes`,
on uvloop, raw sockets, no HTTP library: a client must cost as little CPU as possible) each
hold their share of N `GET /api/v2/streams?channels=project:<id>` streams and of N raw Redis
`SUBSCRIBE` connections, and note when each connection first sees each marker
(CLOCK_MONOTONIC, shared by the processes of one machine). In alternating rounds:

(a) sse: `PUT /api/v2/projects/<id>` with the description `sse-<i>-end`; the latency of each
    stream is its arrival minus the time the PUT's response was read;
(b) pubsub: `PUBLISH` of `pub-<i>-end` on a channel of its own; the latency of each subscriber
    is its arrival minus the time the PUBLISH was sent.

p50, p99 and max pool every (stream, round) of a side. The ratio is the median of the per-round
ratios of the two sides' p99 (sse / pubsub). The client processes' CPU (user + system over the
measured window, in shares of one core) is printed with the server's, so that a saturated
client, which would inflate the latencies, shows.

    .venv/bin/python bench/sse_latency.py [--clients 100,1000] [--rounds 20] [--client-processes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import psutil

from aiplatform import processes
from aiplatform.bootstrap import ensure_admin
from aiplatform.config import load_settings
from aiplatform.embedded import start_embedded_services
from benchlib import ADMIN_DATABASE_URL, REDIS_URL, scratch_database
from dataset_upload import api_server, platform_env
from http_create_project import delete_redis_keys

TARGET_P99_MS = 100.0
ROUND_GAP_S = 0.5
WARM_UP_ROUNDS = 3
CONNECT_TIMEOUT_S = 120.0
ADMIN_USERNAME = "bench-admin"
MARKER = re.compile(rb"(sse|pub)-(\d+)-end")
PUBSUB_CHANNEL = "sse-bench-baseline"


# The client processes -----------------------------------------------------------------------


@dataclass
class Arrivals:
    by_marker: dict[str, list[float]]

    def note(self, seen: set[str], data: bytes) -> None:
        now = time.monotonic()
        for match in MARKER.finditer(data):
            marker = match.group(0).decode()
            if marker not in seen:
                seen.add(marker)
                self.by_marker.setdefault(marker, []).append(now)


async def _follow(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, arrivals: Arrivals
) -> None:
    """`writer` stays referenced while the connection is read: a collected writer closes it."""
    seen: set[str] = set()
    tail = b""
    while chunk := await reader.read(65536):
        data = tail + chunk
        arrivals.note(seen, data)
        tail = data[-32:]
    writer.close()


async def _open_sse(spec: dict[str, Any], arrivals: Arrivals) -> asyncio.Task[None]:
    reader, writer = await asyncio.open_connection(spec["host"], spec["port"])
    writer.write(
        (
            f"GET /api/v2/streams?channels=project:{spec['project_id']} HTTP/1.1\r\n"
            f"Host: {spec['host']}\r\nAuthorization: Bearer {spec['token']}\r\n"
            "Accept: text/event-stream\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the stream answered {head.splitlines()[0]!r}")
    await reader.readuntil(b"retry:")  # the stream's first frame: it is subscribed
    return asyncio.create_task(_follow(reader, writer, arrivals))


async def _open_subscriber(spec: dict[str, Any], arrivals: Arrivals) -> asyncio.Task[None]:
    reader, writer = await asyncio.open_connection(spec["redis_host"], spec["redis_port"])
    channel = spec["channel"]
    writer.write(f"*2\r\n$9\r\nSUBSCRIBE\r\n${len(channel)}\r\n{channel}\r\n".encode())
    await reader.readuntil(b":1\r\n")  # subscribed to one channel
    return asyncio.create_task(_follow(reader, writer, arrivals))


async def _client(spec: dict[str, Any]) -> None:
    arrivals = Arrivals(by_marker={})
    tasks = []
    for _ in range(spec["streams"]):
        tasks.append(await _open_sse(spec, arrivals))
        tasks.append(await _open_subscriber(spec, arrivals))
    loop = asyncio.get_running_loop()
    print("READY", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)  # START
    cpu, wall = time.process_time(), time.monotonic()
    await loop.run_in_executor(None, sys.stdin.readline)  # REPORT
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    print(json.dumps({"arrivals": arrivals.by_marker, "cpu_s": cpu, "wall_s": wall}), flush=True)
    for task in tasks:
        task.cancel()


def run_client() -> None:
    import uvloop

    uvloop.run(_client(json.loads(sys.stdin.readline())))


# The driver ---------------------------------------------------------------------------------


class ClientProcess:
    def __init__(self, spec: dict[str, Any]):
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--client"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.stdin, self.stdout = self.process.stdin, self.process.stdout
        self.send(json.dumps(spec))

    def send(self, line: str) -> None:
        self.stdin.write(line + "\n")
        self.stdin.flush()

    def expect(self, word: str) -> str:
        line = self.stdout.readline()
        if not line.startswith(word):
            raise RuntimeError(f"a client process said {line!r}, not {word}")
        return line

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


@contextmanager
def clients(specs: list[dict[str, Any]]) -> Iterator[list[ClientProcess]]:
    started = [ClientProcess(spec) for spec in specs]
    try:
        for client in started:
            client.expect("READY")
        yield started
    finally:
        for client in started:
            client.stop()


def request(base_url: str, method: str, path: str, token: str | None, body: Any) -> Any:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    call = urllib.request.Request(
        base_url + path, data=json.dumps(body).encode(), headers=headers, method=method
    )
    with urllib.request.urlopen(call, timeout=30) as response:
        return json.loads(response.read())


class Redis:
    """A raw RESP connection for PUBLISH, like the subscribers' own."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port

    async def __aenter__(self) -> Redis:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *_: object) -> None:
        self.writer.close()

    async def publish(self, channel: str, message: str) -> None:
        self.writer.write(
            f"*3\r\n$7\r\nPUBLISH\r\n${len(channel)}\r\n{channel}\r\n"
            f"${len(message)}\r\n{message}\r\n".encode()
        )
        await self.reader.readuntil(b"\r\n")


@dataclass(frozen=True)
class Side:
    latencies_ms: list[float]  # every (connection, round)
    round_p99_ms: list[float]
    first_ms: list[float]  # each round's first arrival: the way to this process
    spread_ms: list[float]  # each round's last arrival minus its first: the fan-out
    missing: int

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def side(
    kind: str, sent: dict[str, float], arrivals: dict[str, list[float]], expected: int
) -> Side:
    latencies: list[float] = []
    round_p99: list[float] = []
    first: list[float] = []
    spread: list[float] = []
    missing = 0
    for marker, at in sent.items():
        if not marker.startswith(kind):
            continue
        arrived = [(t - at) * 1000 for t in arrivals.get(marker, [])]
        missing += expected - len(arrived)
        latencies += arrived
        if arrived:
            round_p99.append(percentile(arrived, 0.99))
            first.append(min(arrived))
            spread.append(max(arrived) - min(arrived))
    return Side(
        latencies_ms=latencies,
        round_p99_ms=round_p99,
        first_ms=first,
        spread_ms=spread,
        missing=missing,
    )


async def measure_rounds(
    base_url: str, token: str, project_id: str, redis: Redis, channel: str, rounds: int
) -> dict[str, float]:
    """Alternating rounds; returns when each marker's command was answered."""
    sent: dict[str, float] = {}
    loop = asyncio.get_running_loop()

    async def sse(marker: str) -> None:
        body = {"description": marker}
        path = f"/api/v2/projects/{project_id}"
        await loop.run_in_executor(None, request, base_url, "PUT", path, token, body)
        sent[marker] = time.monotonic()

    async def pub(marker: str) -> None:
        # From before the PUBLISH: Redis delivers to subscribers before it replies.
        sent[marker] = time.monotonic()
        await redis.publish(channel, marker)

    for warm_up in range(WARM_UP_ROUNDS):
        await sse(f"warm-{warm_up}")
        await asyncio.sleep(ROUND_GAP_S)
    sent.clear()
    for i in range(rounds):
        order = (sse, pub) if i % 2 == 0 else (pub, sse)
        for step in order:
            await step(f"{'sse' if step is sse else 'pub'}-{i}-end")
            await asyncio.sleep(ROUND_GAP_S)
    return sent


def run(
    base_url: str,
    server_pid: int,
    token: str,
    project_id: str,
    redis_url: str,
    count: int,
    rounds: int,
    processes: int,
    instance: str,
) -> None:
    parsed = urlparse(base_url)
    redis_parsed = urlparse(redis_url)
    channel = f"{PUBSUB_CHANNEL}-{instance}"
    shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    specs = [
        {
            "host": parsed.hostname,
            "port": parsed.port,
            "token": token,
            "project_id": project_id,
            "streams": share,
            "redis_host": redis_parsed.hostname,
            "redis_port": redis_parsed.port or 6379,
            "channel": channel,
        }
        for share in shares
        if share
    ]
    server = psutil.Process(server_pid)
    with clients(specs) as running:
        for client in running:
            client.send("START")
        server_cpu = sum(server.cpu_times()[:2])
        started = time.monotonic()

        async def drive() -> dict[str, float]:
            async with Redis(redis_parsed.hostname or "127.0.0.1", redis_parsed.port or 6379) as r:
                return await measure_rounds(base_url, token, project_id, r, channel, rounds)

        sent = asyncio.run(drive())
        time.sleep(ROUND_GAP_S)
        wall = time.monotonic() - started
        server_cpu = sum(server.cpu_times()[:2]) - server_cpu
        arrivals: dict[str, list[float]] = {}
        client_cpu: list[float] = []
        for client in running:
            client.send("REPORT")
            report = json.loads(client.stdout.readline())
            for marker, times in report["arrivals"].items():
                arrivals.setdefault(marker, []).extend(times)
            client_cpu.append(report["cpu_s"] / report["wall_s"])
    report_figures(count, sent, arrivals, client_cpu, server_cpu / wall)


def report_figures(
    count: int,
    sent: dict[str, float],
    arrivals: dict[str, list[float]],
    client_cpu: list[float],
    server_cpu: float,
) -> None:
    sse, pub = side("sse", sent, arrivals, count), side("pub", sent, arrivals, count)
    print(f"{count} clients, {len(sse.round_p99_ms)} rounds each side:")
    for name, measured in (("sse   ", sse), ("pubsub", pub)):
        print(
            f"  {name} p50 {measured.percentile(0.5):7.1f} ms  p99 {measured.percentile(0.99):7.1f}"
            f" ms  max {max(measured.latencies_ms):7.1f} ms  missing {measured.missing}"
        )
        print(
            f"         median of the rounds' p99 {statistics.median(measured.round_p99_ms):6.1f} ms"
        )
        print(
            f"         first arrival (median of rounds) {statistics.median(measured.first_ms):6.1f}"
            f" ms, then all within {statistics.median(measured.spread_ms):6.1f} ms"
        )
        slowest = max(range(len(measured.first_ms)), key=lambda r: measured.round_p99_ms[r])
        print(
            f"         slowest round: first arrival {measured.first_ms[slowest]:6.1f} ms, "
            f"then all within {measured.spread_ms[slowest]:6.1f} ms"
        )
    ratios = [s / p for s, p in zip(sse.round_p99_ms, pub.round_p99_ms, strict=False)]
    per_round = ", ".join(f"{r:.1f}" for r in ratios)
    print(f"  RATIO sse/pubsub p99: {statistics.median(ratios):.1f} (per round: {per_round})")
    cpu = ", ".join(f"{c:.0%}" for c in client_cpu)
    print(f"  CPU, shares of one core: server {server_cpu:.0%}; client processes {cpu}")
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"  load average (1, 5, 15 min): {load} on {os.cpu_count()} cores")
    p99 = sse.percentile(0.99)
    verdict = "meets" if p99 < TARGET_P99_MS and not sse.missing else "MISSES"
    print(f"  sse p99 {p99:.1f} ms: {verdict} the goal of p99 < {TARGET_P99_MS:g} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", default="100,1000")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--admin-url", default=ADMIN_DATABASE_URL)
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument(
        "--private-services",
        action="store_true",
        help="run on a PostgreSQL and Redis of the bench's own (the embedded ones): on a shared "
        "cluster, another database's open write transaction holds back the snapshot every "
        "projector reads up to, and shows here as a stalled round",
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sse-bench-") as work_dir:
        work = Path(work_dir)
        if not arguments.private_services:
            measure(arguments, work, arguments.admin_url, arguments.redis_url)
            return
        services = start_embedded_services(work / "services")
        try:
            admin_url = urlparse(services.database_url)._replace(path="/postgres").geturl()
            measure(arguments, work, admin_url, services.redis_url)
        finally:
            services.stop()


def measure(arguments: argparse.Namespace, work: Path, admin_url: str, redis_url: str) -> None:
    password = secrets.token_urlsafe(16)
    with scratch_database(admin_url) as (name, database_url):
        env = platform_env(database_url, redis_url, name, work / "data")
        try:
            asyncio.run(ensure_admin(load_settings(env), ADMIN_USERNAME, password, "b@example.com"))
            with (
                processes.running(
                    "worker", ["worker", "--queues", "projector"], env, work / "worker.log"
                ),
                api_server(env, work / "api.log") as (base_url, pid),
            ):
                token = request(
                    base_url,
                    "POST",
                    "/api/v2/auth/token",
                    None,
                    {"username": ADMIN_USERNAME, "password": password},
                )["data"]["access_token"]
                project = request(base_url, "POST", "/api/v2/projects", token, {"name": "live"})
                for count in (int(c) for c in arguments.clients.split(",")):
                    run(
                        base_url,
                        pid,
                        token,
                        project["data"]["id"],
                        redis_url,
                        count,
                        arguments.rounds,
                        arguments.client_processes,
                        name,
                    )
        finally:
            delete_redis_keys(redis_url, name)


if __name__ == "__main__":
    if sys.argv[1:] == ["--client"]:
        run_client()
    else:
        main()
