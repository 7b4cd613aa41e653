"""The `aiplatform` command (API.md): up, api, worker, scheduler, migrate."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from aiplatform import processes
from aiplatform.config import Settings, SettingsError, load_settings
from aiplatform.observability.logs import configure_logging, log_format
from aiplatform.workers.broker import LATENCY_QUEUES, QUEUES

log = logging.getLogger("aiplatform")

# A training worker runs one job per thread; `up` gives training one thread of its own.
TRAINING_QUEUES = ("training",)
STOP_TIMEOUT_S = 8.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aiplatform", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    up = commands.add_parser(
        "up", help="run the whole platform (embedded database and Redis by default)"
    )
    up.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=None, help="port to listen on (default 8000)")
    up.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where data lives (default ~/.local/share/aiplatform)",
    )

    api = commands.add_parser("api", help="run the HTTP API")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)

    worker = commands.add_parser("worker", help="run Dramatiq workers")
    worker.add_argument(
        "--queues", default=",".join(QUEUES), help=f"comma-separated, of: {', '.join(QUEUES)}"
    )
    worker.add_argument("--processes", type=int, default=1)
    worker.add_argument("--threads", type=int, default=4)
    worker.add_argument(
        "--shutdown-timeout",
        type=float,
        default=STOP_TIMEOUT_S - 2,
        help="seconds a stopping worker waits for the messages it is running",
    )

    health = commands.add_parser(
        "worker-health", help="exit 0 when this host runs live worker processes (health checks)"
    )
    health.add_argument(
        "--queues", default="", help="comma-separated queues that must be consumed here"
    )

    admin = commands.add_parser("create-admin", help="create an admin user, or promote one")
    admin.add_argument("--username", required=True)
    admin.add_argument("--password", required=True)
    admin.add_argument("--email", required=True)

    commands.add_parser("scheduler", help="send periodic work (run exactly one)")
    catalog = commands.add_parser(
        "events-catalog", help="write the event catalog (one JSON Schema per event version)"
    )
    catalog.add_argument(
        "--check", action="store_true", help="only say where the catalog and the code differ"
    )
    catalog.add_argument("--directory", type=Path, default=Path("events"))
    export = commands.add_parser(
        "export-events", help="write the event log as JSON lines, in catch-up order"
    )
    export.add_argument("--output", type=Path, default=None, help="file (default: stdout)")
    load = commands.add_parser(
        "import-events", help="append an export to an empty event store (or resume one)"
    )
    load.add_argument("file", type=Path, help="an export-events file, or - for stdin")
    v1 = commands.add_parser(
        "import-v1", help="turn a v1 SQLite database into events (safe to run again)"
    )
    v1.add_argument("path", type=Path, help="the v1 database, e.g. ai_platform.db")
    commands.add_parser("migrate", help="apply the event store migrations and install read models")
    replay = commands.add_parser(
        "replay", help="rebuild read models from the event log beside the served ones, then switch"
    )
    replay.add_argument(
        "--projection", required=True, help="a read model's name (projects, jobs, ...) or all"
    )
    commands.add_parser("openapi", help="print the API's OpenAPI schema (JSON) without a server")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    try:
        configure_logging(log_format())
        settings = load_settings()
        match arguments.command:
            case "up":
                return run_up(settings, arguments.host, arguments.port, arguments.data_dir)
            case "api":
                return run_api(settings, arguments.host, arguments.port)
            case "worker":
                return run_worker(
                    arguments.queues,
                    arguments.processes,
                    arguments.threads,
                    arguments.shutdown_timeout,
                )
            case "worker-health":
                from aiplatform.workers.health import run_worker_health

                return run_worker_health(settings, arguments.queues)
            case "scheduler":
                return run_scheduler_process(settings)
            case "migrate":
                return run_migrate(settings)
            case "events-catalog":
                from aiplatform.eventstore.catalog import run_command

                return run_command(arguments.directory, arguments.check)
            case "export-events":
                from aiplatform.eventstore.transfer import run_export

                return run_export(settings.require_database_url(), arguments.output)
            case "import-events":
                from aiplatform.eventstore.transfer import run_import

                return run_import(settings.require_database_url(), arguments.file)
            case "import-v1":
                from aiplatform.importing.v1 import run_import_v1

                return run_import_v1(settings, arguments.path)
            case "replay":
                from aiplatform.projectors.replay import run_replay

                return run_replay(settings, arguments.projection)
            case "openapi":
                return run_openapi(settings)
            case "create-admin":
                return run_create_admin(
                    settings, arguments.username, arguments.password, arguments.email
                )
    except SettingsError as error:
        print(f"aiplatform: {error}", file=sys.stderr)
        return 2
    raise AssertionError(f"unhandled command {arguments.command}")


def run_migrate(settings: Settings) -> int:
    from aiplatform.eventstore.migrations import upgrade_to_head
    from aiplatform.eventstore.store import create_pool
    from aiplatform.projectors.read_models import install
    from aiplatform.projectors.registry import all_projectors

    database_url = settings.require_database_url()
    upgrade_to_head(database_url)

    async def install_read_models() -> list[str]:
        pool = await create_pool(database_url, max_size=1)
        try:
            async with pool.acquire() as connection:
                return [
                    p.read_model.schema
                    for p in all_projectors()
                    if await install(connection, p.read_model)
                ]
        finally:
            await pool.close()

    installed = asyncio.run(install_read_models())
    print(f"event store migrated; read models installed: {', '.join(installed) or 'none new'}")
    return 0


def run_openapi(settings: Settings) -> int:
    """The web UI's API types are generated from this, so it must not need a running server."""
    import json

    from aiplatform.api.app import create_app

    schema = create_app(settings).openapi_schema.to_schema()
    print(json.dumps(schema, indent=2, sort_keys=True))
    return 0


def run_create_admin(settings: Settings, username: str, password: str, email: str) -> int:
    from aiplatform.bootstrap import ensure_admin

    outcome = asyncio.run(ensure_admin(settings, username, password, email))
    print(f"admin {username!r} {outcome}")
    return 0


def run_api(settings: Settings, host: str | None, port: int | None) -> int:
    import uvicorn

    from aiplatform.api.app import create_app

    uvicorn.run(
        create_app(settings, freeze_after_start=True),
        host=host or settings.host,
        port=port or settings.port,
        log_level="info",
        access_log=False,
        # Uvicorn's own lines go through the root logger, in the configured format.
        log_config=None,
        timeout_graceful_shutdown=5,
    )
    return 0


def run_worker(queues: str, process_count: int, threads: int, shutdown_timeout_s: float) -> int:
    wanted = [q.strip() for q in queues.split(",") if q.strip()]
    unknown = sorted(set(wanted) - set(QUEUES))
    if unknown or not wanted:
        raise SettingsError(
            f"unknown queue(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(QUEUES)}"
        )
    env = dict(os.environ)
    if "training" in wanted:
        # Dramatiq fetches ahead twice as many messages as threads by default. A training
        # token held by a busy worker is a job another, idle worker cannot start: fetch only
        # what the threads can run now.
        env["dramatiq_queue_prefetch"] = str(threads)
    command = [
        sys.executable,
        "-m",
        "dramatiq",
        "aiplatform.workers.entrypoint",
        "--queues",
        *wanted,
        "--processes",
        str(process_count),
        "--threads",
        str(threads),
        "--worker-shutdown-timeout",
        str(int(shutdown_timeout_s * 1000)),
    ]
    if log_format() == "json":
        # The worker processes set up JSON logging themselves (workers.entrypoint); Dramatiq's
        # text setup would mix its own lines in.
        command.append("--skip-logging")
    os.execve(sys.executable, command, env)


def run_scheduler_process(settings: Settings) -> int:
    from aiplatform.scheduler import run_scheduler
    from aiplatform.workers.broker import build_broker

    broker = build_broker(settings)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    log.info("scheduler started")
    run_scheduler(broker, stop)
    broker.close()
    log.info("scheduler stopped")
    return 0


def run_up(settings: Settings, host: str | None, port: int | None, data_dir: Path | None) -> int:
    from aiplatform.bootstrap import FIRST_ADMIN, first_admin_password, with_secret_key
    from aiplatform.embedded import start_embedded_services

    if data_dir is not None:
        settings = Settings(**{**settings.__dict__, "data_dir": data_dir.expanduser()})
    host = host or settings.host
    port = port or settings.port
    embedded = None
    if not (settings.database_url and settings.redis_url):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        print(f"starting the embedded PostgreSQL and Redis in {settings.data_dir} ...", flush=True)
        embedded = start_embedded_services(settings.data_dir)
        settings = settings.with_services(
            settings.database_url or embedded.database_url, settings.redis_url or embedded.redis_url
        )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    children: list[processes.Child] = []
    try:
        run_migrate(settings)
        settings = with_secret_key(settings)
        first_password = asyncio.run(first_admin_password(settings))
        env = {
            **os.environ,
            "AIPLATFORM_DATABASE_URL": settings.require_database_url(),
            "AIPLATFORM_REDIS_URL": settings.require_redis_url(),
            "AIPLATFORM_DATA_DIR": str(settings.data_dir),
            "AIPLATFORM_SECRET_KEY": settings.require_secret_key(),
        }
        slow_queues = ",".join(
            q for q in QUEUES if q not in LATENCY_QUEUES and q not in TRAINING_QUEUES
        )
        for name, command in (
            ("api", ["api", "--host", host, "--port", str(port)]),
            ("fast worker", ["worker", "--queues", ",".join(LATENCY_QUEUES), "--threads", "2"]),
            ("worker", ["worker", "--queues", slow_queues, "--threads", "2"]),
            (
                "training worker",
                ["worker", "--queues", ",".join(TRAINING_QUEUES), "--threads", "1"],
            ),
            ("scheduler", ["scheduler"]),
        ):
            children.append(processes.start(name, command, env))
        print(
            f"AI Platform is starting at http://{host}:{port}/ "
            "(API docs: /schema); Ctrl-C stops it",
            flush=True,
        )
        if first_password is not None:
            print(
                f"Log in as {FIRST_ADMIN!r} with the password {first_password}\n"
                "It is shown only this once: change it with PUT /api/v2/users/<your id> "
                '{"password": ..., "current_password": ...}.',
                flush=True,
            )
        return _supervise(children, stop)
    finally:
        killed = processes.stop_all(children, STOP_TIMEOUT_S)
        if killed:
            print(f"had to kill: {', '.join(killed)}", file=sys.stderr)
        if embedded is not None:
            embedded.stop()
        print("AI Platform stopped", flush=True)


def _supervise(children: Sequence[processes.Child], stop: threading.Event) -> int:
    """Waits for a stop signal; a child that dies on its own takes the platform down with a
    message, rather than leaving it half-running."""
    while not stop.wait(0.5):
        for child in children:
            code = child.process.poll()
            if code is not None:
                print(
                    f"aiplatform: the {child.name} process exited ({code}); stopping",
                    file=sys.stderr,
                )
                return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
