"""`POST /api/v2/datasets` of a large CSV through real HTTP, against a plain copy of the same bytes.

A CSV of `--megabytes` (default 1024: 1 GiB) with mixed columns (an integer id, a float price
with some empty cells, a `label`, a text column) is written once to a temp file. Then, in
alternating rounds (which side goes first alternates too):

(a) upload: the file is sent to a real API server process (`python -m aiplatform api`, on a
    scratch database, its blob store a local directory) as multipart/form-data with a known
    Content-Length, streamed from disk by httpx from a generator that frames 1 MiB chunks of the
    file, so the client never holds the file in memory. MB/s from the first byte sent to the
    201. While it runs, a thread samples the server's RSS every 50 ms (psutil): the peak growth
    over the RSS before the upload is printed, with the CPU the server and this client used.
(b) copy: `shutil.copyfileobj` of the same file to a new file in the blob directory's file
    system, fsynced at the end (the store fsyncs too); the faster of two made one after the
    other (see `copy`). MB/s.

The ratio is the median of the per-round ratios upload/copy; the target is >= 0.5. A worker
process (`python -m aiplatform worker --queues projector,data`) computes each upload's quality
report, and a scheduler process ticks the projector, as `aiplatform up` does; the time from the
201 until `GET .../versions/v1` shows the report is printed too. Each round
waits for its report before going on, so that no analysis runs during a timed copy or upload.
`--profile FILE` adds one more upload with `py-spy record --threads` on the server (raw
collapsed stacks in FILE) and prints the innermost lines of the samples of its event loop and
of its blob store's threads; `--native` adds the C frames (the event loop's socket reads and
copies, NumPy, OpenSSL) to them.

    .venv/bin/python bench/dataset_upload.py [--megabytes 1024] [--rounds 3] [--profile FILE]
        [--native]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from aiplatform import processes
from aiplatform.bootstrap import ensure_admin
from aiplatform.config import load_settings
from benchlib import (
    ADMIN_DATABASE_URL,
    REDIS_URL,
    median,
    print_ratio,
    scratch_database,
)
from http_create_project import delete_redis_keys, free_port, wait_until_ready

TARGET_RATIO = 0.5
MB = 1_000_000  # rates are in MB/s (10^6 bytes), sizes in MiB
CHUNK_BYTES = 1 << 20
RSS_INTERVAL_S = 0.05
QUALITY_TIMEOUT_S = 900.0
PROFILE_RATE = 250  # samples per second
STOP_TIMEOUT_S = 20.0
ADMIN_USERNAME = "bench-admin"

_WORDS = [
    *("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"),
    *("lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigma", "tau", "upsilon", "phi"),
    *("chi", "psi", "omega", "churn", "renewal", "monthly", "annual", "trial", "premium"),
]
_GENERATE_ROWS = 50_000  # rows formatted per block


# The data ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeneratedCsv:
    path: Path
    size: int
    rows: int
    sha256: str


def generate_csv(path: Path, size: int, seed: int = 20261129) -> GeneratedCsv:
    """Writes a CSV of at most `size` bytes (whole rows, so a little less) and returns what it
    holds. Columns: id (unique integers), price (floats, ~3% empty), label (4 values, skewed),
    text (4-14 words). The cells come from pools indexed by the id, so writing is fast; the id
    keeps every row distinct."""
    rng = random.Random(seed)
    prices = ["" if rng.random() < 0.03 else f"{rng.uniform(0.5, 999):.2f}" for _ in range(4093)]
    labels = rng.choices(["cat", "dog", "bird", "fish"], weights=[5, 3, 1, 1], k=1021)
    texts = [" ".join(rng.choices(_WORDS, k=rng.randint(4, 14))) for _ in range(8191)]
    hasher = hashlib.sha256()
    written = rows = 0
    with path.open("wb") as file:
        header = b"id,price,label,text\n"
        file.write(header)
        hasher.update(header)
        written = len(header)
        while written < size:
            start = rows
            block = "".join(
                [
                    f"{n},{prices[n % 4093]},{labels[n % 1021]},{texts[n % 8191]}\n"
                    for n in range(start, start + _GENERATE_ROWS)
                ]
            ).encode()
            if written + len(block) > size:
                block = block[: block.rfind(b"\n", 0, size - written) + 1]
                if not block:
                    break
            file.write(block)
            hasher.update(block)
            written += len(block)
            rows += block.count(b"\n")
    return GeneratedCsv(path=path, size=written, rows=rows, sha256=hasher.hexdigest())


# The processes -------------------------------------------------------------------------------


def platform_env(
    database_url: str, redis_url: str, instance: str, data_dir: Path
) -> dict[str, str]:
    """This process's environment without any AIPLATFORM_* setting of its own, plus these."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIPLATFORM_")}
    env.update(
        {
            "AIPLATFORM_DATABASE_URL": database_url,
            "AIPLATFORM_REDIS_URL": redis_url,
            # Namespaces the Redis keys and queues, so they can be deleted afterwards.
            "AIPLATFORM_INSTANCE": instance,
            "AIPLATFORM_SECRET_KEY": secrets.token_urlsafe(48),
            "AIPLATFORM_DATA_DIR": str(data_dir),
        }
    )
    return env


@contextmanager
def api_server(env: dict[str, str], log_path: Path) -> Iterator[tuple[str, int]]:
    """The API as an operator runs it; yields its base URL and process id."""
    port = free_port()
    arguments = ["api", "--host", "127.0.0.1", "--port", str(port)]
    with processes.running("api", arguments, env, log_path, STOP_TIMEOUT_S) as server:
        base_url = f"http://127.0.0.1:{port}"
        wait_until_ready(base_url, server.process, log_path)
        yield base_url, server.process.pid


# The two sides -------------------------------------------------------------------------------


class RssSampler:
    """The peak RSS of a process, sampled on a thread every RSS_INTERVAL_S."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.before: int = self._process.memory_info().rss
        self.peak: int = self.before
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stopping.wait(RSS_INTERVAL_S):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopping.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self) -> int:
        return self.peak - self.before


def multipart_framing(fields: dict[str, str], filename: str, boundary: str) -> tuple[bytes, bytes]:
    """What goes before the file's bytes (the form fields, the file part's headers) and after."""
    head = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    )
    head += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    )
    return head.encode(), f"\r\n--{boundary}--\r\n".encode()


def multipart_body(path: Path, head: bytes, tail: bytes) -> Iterator[bytes]:
    yield head
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            yield chunk
    yield tail


@dataclass(frozen=True)
class UploadRound:
    seconds: float
    rss_growth: int
    server_cpu_s: float  # all of the server's threads
    loop_cpu_s: float  # the server's main thread: its event loop
    client_cpu_s: float
    # Pages the server's memory allocator had the kernel map (and zero) during the upload.
    minor_faults: int
    dataset: dict[str, Any]


def cpu_seconds(process: psutil.Process) -> tuple[float, float]:
    """CPU seconds of the whole process and of its main thread."""
    times = process.cpu_times()
    main = next((t for t in process.threads() if t.id == process.pid), None)
    return times.user + times.system, main.user_time + main.system_time if main else 0.0


def minor_faults(pid: int) -> int:
    """The process's minor page faults so far (Linux; 0 elsewhere). Each one is a page of
    fresh memory mapped and zeroed: an allocator that hands memory back to the kernel after
    every batch pays them again and again, in CPU that shows under no Python line."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    # Fields after the command's closing parenthesis; minflt is the 10th field of the line.
    return int(stat.rpartition(")")[2].split()[7])


def upload(
    http: httpx.Client, pid: int, project_id: str, data: GeneratedCsv, name: str
) -> UploadRound:
    """One `POST /api/v2/datasets` of the file, streamed from disk."""
    boundary = f"bench-{uuid.uuid4().hex}"
    head, tail = multipart_framing({"project_id": project_id, "name": name}, "data.csv", boundary)
    headers = {
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        # Set, so that httpx sends the body as it is rather than chunked.
        "Content-Length": str(len(head) + data.size + len(tail)),
    }
    server = psutil.Process(pid)
    with RssSampler(pid) as rss:
        server_cpu, loop_cpu = cpu_seconds(server)
        faults = minor_faults(pid)
        client_cpu = time.process_time()
        started = time.perf_counter()
        response = http.post(
            "/api/v2/datasets",
            params={"project_id": project_id},
            content=multipart_body(data.path, head, tail),
            headers=headers,
        )
        seconds = time.perf_counter() - started
        client_cpu = time.process_time() - client_cpu
        server_after, loop_after = cpu_seconds(server)
        faults = minor_faults(pid) - faults
    if response.status_code != 201:
        raise RuntimeError(f"the upload answered {response.status_code}: {response.text[:2000]}")
    dataset: dict[str, Any] = response.json()["data"]
    version = dataset["versions"][0]
    if (version["size"], version["sha256"]) != (data.size, data.sha256):
        raise RuntimeError(f"the stored version differs from the file: {version}")
    return UploadRound(
        seconds=seconds,
        rss_growth=rss.growth,
        server_cpu_s=server_after - server_cpu,
        loop_cpu_s=loop_after - loop_cpu,
        client_cpu_s=client_cpu,
        minor_faults=faults,
        dataset=dataset,
    )


def copy(data: GeneratedCsv, directory: Path) -> float:
    """Seconds to copy the file to a new one in `directory` and fsync it: the faster of two
    copies made one after the other.

    The first copy after an idle spell (the wait for a report, say) was measured up to three
    times slower than the next one (1,500-1,600 MB/s), spending three times the kernel CPU:
    on a virtual machine, page-cache memory that was free a while has to be handed back to it
    page by page. The upload writes no page cache (direct I/O) and reuses its buffers, so the
    copy is given the same warm start: the faster of the two is the baseline."""
    return min(_copy_once(data, directory), _copy_once(data, directory))


def _copy_once(data: GeneratedCsv, directory: Path) -> float:
    """Seconds to copy the file to a new one in `directory` and fsync it; the copy is removed."""
    target = directory / f"copy-{uuid.uuid4().hex}"
    try:
        started = time.perf_counter()
        with data.path.open("rb") as source, target.open("wb") as destination:
            shutil.copyfileobj(source, destination)
            destination.flush()
            os.fsync(destination.fileno())
        return time.perf_counter() - started
    finally:
        target.unlink(missing_ok=True)


def wait_for_quality(http: httpx.Client, dataset_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + QUALITY_TIMEOUT_S
    while time.monotonic() < deadline:
        answer = http.get(f"/api/v2/datasets/{dataset_id}/versions/v1")
        answer.raise_for_status()
        quality: dict[str, Any] | None = answer.json()["data"]["quality"]
        if quality is not None:
            return quality
        time.sleep(0.25)
    raise RuntimeError(f"no quality report within {QUALITY_TIMEOUT_S:g} s")


# The measurement -----------------------------------------------------------------------------


@dataclass
class Results:
    data: GeneratedCsv
    uploads: list[UploadRound]
    copies: list[float]
    quality_s: list[float]
    quality: dict[str, Any] | None = None


@contextmanager
def log_in(base_url: str, password: str) -> Iterator[httpx.Client]:
    """A client of the API with the admin's token."""
    with httpx.Client(base_url=base_url, timeout=httpx.Timeout(600.0, connect=10.0)) as http:
        credentials = {"username": ADMIN_USERNAME, "password": password}
        answer = http.post("/api/v2/auth/token", json=credentials)
        answer.raise_for_status()
        http.headers["Authorization"] = f"Bearer {answer.json()['data']['access_token']}"
        yield http


def upload_and_report(
    http: httpx.Client, pid: int, project_id: str, data: GeneratedCsv, results: Results
) -> None:
    round_number = len(results.uploads) + 1
    done = upload(http, pid, project_id, data, f"bench upload {round_number}")
    results.uploads.append(done)
    reported = time.perf_counter()
    results.quality = wait_for_quality(http, done.dataset["id"])
    results.quality_s.append(time.perf_counter() - reported)
    print(
        f"  upload {round_number}: {data.size / MB / done.seconds:,.0f} MB/s, RSS "
        f"+{done.rss_growth / 2**20:.1f} MiB, report after {results.quality_s[-1]:.1f} s",
        flush=True,
    )


def measure(
    http: httpx.Client, pid: int, data: GeneratedCsv, copy_dir: Path, rounds: int
) -> Results:
    created = http.post("/api/v2/projects", json={"name": "bench uploads"})
    created.raise_for_status()
    project_id: str = created.json()["data"]["id"]
    # Warm-up: the server's first upload (pool, imports) and the worker's first report.
    with tempfile.TemporaryDirectory(prefix="bench-warm-") as directory:
        small = generate_csv(Path(directory) / "small.csv", 1 << 20)
        warm_up = upload(http, pid, project_id, small, "warm-up")
        wait_for_quality(http, warm_up.dataset["id"])
    results = Results(data=data, uploads=[], copies=[], quality_s=[])
    for round_number in range(rounds):
        upload_first = round_number % 2 == 0
        if upload_first:
            upload_and_report(http, pid, project_id, data, results)
        results.copies.append(copy(data, copy_dir))
        print(f"  copy {round_number + 1}: {data.size / MB / results.copies[-1]:,.0f} MB/s")
        if not upload_first:
            upload_and_report(http, pid, project_id, data, results)
    return results


def py_spy() -> str:
    """py-spy from this virtual environment, else from PATH."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else "py-spy"


def profile(
    http: httpx.Client, pid: int, data: GeneratedCsv, output: Path, native: bool = False
) -> None:
    """One more upload with py-spy recording the server; prints where its samples were."""
    project_id = http.post("/api/v2/projects", json={"name": "profiled"}).json()["data"]["id"]
    # Every thread, GIL or not: the event loop waits on the store's threads, which hash, write
    # and count rows without the GIL, as much as they wait on it.
    record = [py_spy(), "record", "--threads", "--rate", str(PROFILE_RATE), "--pid", str(pid)]
    if native:
        record.append("--native")
    recorder = subprocess.Popen(
        [*record, "--format", "raw", "-o", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    time.sleep(1.0)  # py-spy attaches
    try:
        done = upload(http, pid, project_id, data, "profiled upload")
    finally:
        recorder.send_signal(signal.SIGINT)
        recorder.wait(timeout=60)
    print(f"profiled upload: {data.size / MB / done.seconds:,.0f} MB/s; py-spy raw: {output}")
    summarise_profile(output)


_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?):(?P<line>\d+)\)$")
# py-spy's first frame with --threads: `thread (<id>): <thread name>`.
_THREAD = re.compile(r"^thread \(\w+\): (?P<name>.*)$")
# The threads summarised, by the start of their names: uvicorn's event loop, the store's stages.
_PROFILED_THREADS = {"MainThread": "the event loop", "blob-put": "the store's threads"}


def summarise_profile(path: Path, top: int = 10) -> None:
    """Where the samples of the event loop and of the store's threads were: the innermost
    line of each. `Runner.run` is the event loop in C (reading sockets, or waiting for them);
    `_worker` is a store thread waiting for a batch."""
    by_thread: dict[str, Counter[str]] = {kind: Counter() for kind in _PROFILED_THREADS.values()}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        thread, _, frames = stack.partition(";")
        named = _THREAD.match(thread)
        if not frames or named is None or not count_text.isdigit():
            continue
        kind = next(
            (k for prefix, k in _PROFILED_THREADS.items() if named["name"].startswith(prefix)),
            None,
        )
        if kind is None:
            continue
        innermost = frames.rsplit(";", 1)[-1]
        match = _FRAME.match(innermost)
        if match is not None:
            innermost = f"{match['function']} ({Path(match['file']).name}:{match['line']})"
        by_thread[kind][innermost] += int(count_text)
    for kind, innermost_lines in by_thread.items():
        total = innermost_lines.total()
        print(f"{kind}: {total / PROFILE_RATE:.1f} s sampled; innermost lines:")
        for frame, count in innermost_lines.most_common(top):
            print(f"  {count / total:6.1%}  {frame}")


def report(results: Results, rounds: int) -> None:
    data = results.data
    upload_rates = [data.size / MB / u.seconds for u in results.uploads]
    copy_rates = [data.size / MB / seconds for seconds in results.copies]
    print(f"\n{data.size / 2**20:,.0f} MiB CSV, {data.rows:,} rows; median of {rounds} rounds")
    print(f"{'':<28}{'MB/s':>8}{'seconds':>10}")
    print(
        f"{'upload (HTTP, multipart)':<28}{median(upload_rates):>8,.0f}"
        f"{median([u.seconds for u in results.uploads]):>10.2f}"
    )
    print(f"{'copy + fsync':<28}{median(copy_rates):>8,.0f}{median(results.copies):>10.2f}")

    def share(seconds: list[float]) -> str:
        shares = [s / u.seconds for s, u in zip(seconds, results.uploads, strict=True)]
        return f"{median(shares):.0%}"

    print(
        "CPU during an upload, in shares of one core: server "
        f"{share([u.server_cpu_s for u in results.uploads])} (its event loop thread "
        f"{share([u.loop_cpu_s for u in results.uploads])}), this client "
        f"{share([u.client_cpu_s for u in results.uploads])}"
    )
    # In seconds too: a share of a core grows as the upload gets faster, the work per upload
    # does not, so this is the figure to compare between versions of the server.
    print(
        f"server CPU per upload: {median([u.server_cpu_s for u in results.uploads]):.2f} s "
        f"(event loop {median([u.loop_cpu_s for u in results.uploads]):.2f} s; per round "
        f"{', '.join(f'{u.server_cpu_s:.2f}' for u in results.uploads)}), "
        f"{median([u.minor_faults for u in results.uploads]):,.0f} minor page faults"
    )
    growths = [u.rss_growth / 2**20 for u in results.uploads]
    print(
        f"server RSS peak growth during an upload: {max(growths):.1f} MiB (max; per round "
        f"{', '.join(f'{g:.1f}' for g in growths)})"
    )
    print(
        f"quality report after the 201: {median(results.quality_s):.1f} s (median; per round "
        f"{', '.join(f'{s:.1f}' for s in results.quality_s)})"
    )
    if results.quality is not None and results.quality["rows"] != data.rows:
        print(f"WARNING: the report counts {results.quality['rows']:,} rows, not {data.rows:,}")
    print_ratio("upload/copy", upload_rates, copy_rates, TARGET_RATIO)


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=1024, help="file size in MiB")
    parser.add_argument("--rounds", type=int, default=3, help="upload/copy pairs")
    parser.add_argument(
        "--profile", type=Path, default=None, help="py-spy one more upload, raw output here"
    )
    parser.add_argument(
        "--native", action="store_true", help="with --profile: C frames too (py-spy --native)"
    )
    parser.add_argument("--admin-url", default=ADMIN_DATABASE_URL, help="creates the scratch db")
    parser.add_argument("--redis-url", default=REDIS_URL)
    parser.add_argument(
        "--tmp", type=Path, default=None, help="where the file and the blobs go (default TMPDIR)"
    )
    return parser.parse_args()


def main() -> None:
    arguments = parse_arguments()
    password = f"pw-{secrets.token_hex(12)}"
    with tempfile.TemporaryDirectory(prefix="bench-upload-", dir=arguments.tmp) as directory:
        work = Path(directory)
        data_dir = work / "platform-data"
        started = time.perf_counter()
        data = generate_csv(work / "data.csv", arguments.megabytes << 20)
        print(
            f"generated {data.size / 2**20:,.0f} MiB, {data.rows:,} rows in "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
        with scratch_database(arguments.admin_url) as (name, database_url):
            env = platform_env(database_url, arguments.redis_url, name, data_dir)
            try:
                asyncio.run(
                    ensure_admin(load_settings(env), ADMIN_USERNAME, password, "b@example.com")
                )
                worker_arguments = ["worker", "--queues", "projector,data"]
                with (
                    processes.running("worker", worker_arguments, env, work / "worker.log"),
                    # As `aiplatform up` runs it: its tick wakes the projector every second, so a
                    # report is shown even when the wake-up sent after it came too early.
                    processes.running("scheduler", ["scheduler"], env, work / "scheduler.log"),
                    api_server(env, work / "api.log") as (base_url, pid),
                    log_in(base_url, password) as http,
                ):
                    copy_dir = data_dir / "blobs"
                    copy_dir.mkdir(parents=True, exist_ok=True)
                    results = measure(http, pid, data, copy_dir, arguments.rounds)
                    report(results, arguments.rounds)
                    if arguments.profile is not None:
                        profile(http, pid, data, arguments.profile, arguments.native)
            finally:
                delete_redis_keys(arguments.redis_url, name)


if __name__ == "__main__":
    main()
