"""Getting a platform ready for its first user: the signing key and the first admin."""

from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import replace
from pathlib import Path

import asyncpg

from aiplatform.aggregates import USERS
from aiplatform.auth.accounts import Accounts, create_account, update_account
from aiplatform.auth.passwords import hash_password, policy_violation
from aiplatform.commands import CommandContext, CommandHandler
from aiplatform.config import Settings, SettingsError
from aiplatform.domain import users
from aiplatform.eventstore.codec import EventMetadata
from aiplatform.eventstore.store import AppendResult, EventStore, create_pool

FIRST_ADMIN = "admin"


def with_secret_key(settings: Settings) -> Settings:
    """The configured key, or one generated once and kept (readable by the owner only) in the
    data directory, so tokens survive restarts."""
    if settings.secret_key:
        return settings
    key_file = settings.data_dir / "secret_key"
    if not key_file.exists():
        key_file.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return replace(settings, secret_key=Path(key_file).read_text().strip())


async def ensure_admin(settings: Settings, username: str, password: str, email: str) -> str:
    """Creates an admin, or makes an existing user one with this password. Returns what it did."""
    problem = policy_violation(password, username)
    if problem is not None:
        raise SettingsError(problem)
    pool = await create_pool(settings.require_database_url(), max_size=2)
    try:
        handler = CommandHandler(EventStore(pool))
        context = CommandContext(metadata=EventMetadata(actor="system:cli"))
        password_hash = hash_password(password)
        existing = await Accounts(pool).by_username(username)
        if existing is None:
            await _create(handler, context, username, email, password_hash)
            return "created"
        await _promote(handler, context, existing.user_id, password_hash)
        return "promoted"
    finally:
        await pool.close()


async def _create(
    handler: CommandHandler, context: CommandContext, username: str, email: str, password_hash: str
) -> None:
    user_id = str(uuid.uuid4())

    async def claim(connection: asyncpg.Connection, _: AppendResult) -> None:
        await create_account(
            connection,
            user_id=user_id,
            username=username,
            email=email,
            password_hash=password_hash,
            system_role="admin",
        )

    command = users.RegisterUser(
        user_id=user_id, username=username, email=email, system_role="admin"
    )
    await handler.handle(USERS, user_id, command, context, new_stream=True, in_transaction=claim)


async def _promote(
    handler: CommandHandler, context: CommandContext, user_id: str, password_hash: str
) -> None:
    async def apply(connection: asyncpg.Connection, _: AppendResult) -> None:
        await update_account(
            connection, user_id, password_hash=password_hash, system_role="admin", active=True
        )

    command = users.UpdateUser(
        user_id=user_id, system_role="admin", active=True, password_changed=True
    )
    await handler.handle(USERS, user_id, command, context, in_transaction=apply)


async def first_admin_password(settings: Settings) -> str | None:
    """On a platform with no admin yet, creates `admin` with a generated password and returns
    it, to be shown once; None when an admin exists."""
    pool = await create_pool(settings.require_database_url(), max_size=1)
    try:
        if await Accounts(pool).any_admin():
            return None
    finally:
        await pool.close()
    password = secrets.token_urlsafe(12) + "-7"
    await ensure_admin(settings, FIRST_ADMIN, password, "admin@localhost.localdomain")
    return password
