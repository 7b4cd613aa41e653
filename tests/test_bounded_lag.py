"""Bounded lag (DESIGN.md 6): a transaction left open would hold back pg_snapshot_xmin and
every catch-up reader with it, so the platform's connections end idle transactions."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from aiplatform.eventstore.store import create_pool


async def test_an_idle_transaction_is_ended_by_the_server(database_url: str) -> None:
    pool = await create_pool(database_url, max_size=1, idle_in_transaction_timeout_ms=200)
    try:
        async with pool.acquire() as connection:
            setting = await connection.fetchval("SHOW idle_in_transaction_session_timeout")
            assert setting == "200ms"
            transaction = connection.transaction()
            await transaction.start()
            await connection.execute("SELECT 1")
            await asyncio.sleep(0.6)
            with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError)):
                await connection.execute("SELECT 1")
    finally:
        pool.terminate()
