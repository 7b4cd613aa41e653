"""Applying the event store's Alembic migrations, from the CLI, the API and the tests."""

from __future__ import annotations

import asyncio

from alembic import command, op
from alembic.config import Config
from sqlalchemy.util import await_only

from aiplatform.resources import resource_dir


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(resource_dir("migrations")))
    async_url = database_url.replace("postgresql://", "postgresql+asyncpg://", 1).replace(
        "postgres://", "postgresql+asyncpg://", 1
    )
    config.set_main_option("sqlalchemy.url", async_url.replace("%", "%%"))
    return config


def upgrade_to_head(database_url: str) -> None:
    """Idempotent: applies only what is pending. Blocking; runs its own event loop."""
    command.upgrade(alembic_config(database_url), "head")


async def upgrade_to_head_async(database_url: str) -> None:
    await asyncio.to_thread(upgrade_to_head, database_url)


def execute_script(sql: str) -> None:
    """Runs a multi-statement SQL script (functions with $$ bodies included) inside the
    migration's transaction. SQLAlchemy's asyncpg adapter prepares every statement, and a
    prepared statement holds one command only, so the script goes to the driver directly."""
    bind = op.get_bind()
    # Opens the adapter's transaction first, so the script and Alembic's version stamp commit
    # (or roll back) together.
    bind.exec_driver_sql("SELECT 1")
    driver_connection = bind.connection.driver_connection
    assert driver_connection is not None, "migrations run on a live connection"
    await_only(driver_connection.execute(sql))
