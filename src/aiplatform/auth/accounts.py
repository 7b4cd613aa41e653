"""Credentials and sessions: the write-side tables of migrations 0002.

Rows here change in the same transaction as the user event that changes them, so a username
is never taken twice and a password hash never disagrees with the log about who exists.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from aiplatform.auth.tokens import REFRESH_TOKEN_TTL_S, new_refresh_token, token_digest
from aiplatform.domain.errors import AlreadyExistsError


@dataclass(frozen=True)
class Account:
    user_id: str
    username: str
    password_hash: str
    system_role: str
    active: bool


class RefreshRefusedError(Exception):
    """An unknown, expired, revoked or reused refresh token."""


_UNIQUE_FIELDS = {
    "user_accounts_username_key_key": "username",
    "user_accounts_email_key_key": "email",
}


async def create_account(
    connection: asyncpg.Connection,
    *,
    user_id: str,
    username: str,
    email: str,
    password_hash: str,
    system_role: str,
) -> None:
    try:
        await connection.execute(
            "INSERT INTO user_accounts (user_id, username_key, email_key, username, "
            "password_hash, system_role) VALUES ($1, $2, $3, $4, $5, $6)",
            uuid.UUID(user_id),
            username.lower(),
            email.lower(),
            username,
            password_hash,
            system_role,
        )
    except asyncpg.UniqueViolationError as error:
        field = _UNIQUE_FIELDS.get(error.constraint_name or "", "username or email")
        raise AlreadyExistsError(f"that {field} is already taken") from None


async def update_account(
    connection: asyncpg.Connection,
    user_id: str,
    *,
    email: str | None = None,
    password_hash: str | None = None,
    system_role: str | None = None,
    active: bool | None = None,
) -> None:
    try:
        await connection.execute(
            "UPDATE user_accounts SET email_key = coalesce($2, email_key), "
            "password_hash = coalesce($3, password_hash), "
            "system_role = coalesce($4, system_role), active = coalesce($5, active), "
            "updated_at = now() WHERE user_id = $1",
            uuid.UUID(user_id),
            email.lower() if email is not None else None,
            password_hash,
            system_role,
            active,
        )
    except asyncpg.UniqueViolationError:
        raise AlreadyExistsError("that email is already taken") from None
    if active is False or password_hash is not None:
        # Deactivation and a new password end every session of the user.
        await connection.execute(
            "UPDATE auth_sessions SET revoked_at = now(), revoked_why = $2 "
            "WHERE user_id = $1 AND revoked_at IS NULL",
            uuid.UUID(user_id),
            "deactivated" if active is False else "password changed",
        )


class Accounts:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def by_username(self, username: str) -> Account | None:
        row = await self.pool.fetchrow(
            "SELECT user_id, username, password_hash, system_role, active FROM user_accounts "
            "WHERE username_key = $1",
            username.lower(),
        )
        return _account(row)

    async def by_id(self, user_id: str) -> Account | None:
        row = await self.pool.fetchrow(
            "SELECT user_id, username, password_hash, system_role, active FROM user_accounts "
            "WHERE user_id = $1",
            uuid.UUID(user_id),
        )
        return _account(row)

    async def any_admin(self) -> bool:
        return bool(
            await self.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM user_accounts WHERE system_role = 'admin')"
            )
        )

    async def start_session(self, user_id: str) -> tuple[str, str]:
        """A new refresh-token family; returns its id and its first refresh token."""
        session_id = uuid.uuid4()
        token = new_refresh_token()
        async with self.pool.acquire() as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO auth_sessions (session_id, user_id) VALUES ($1, $2)",
                session_id,
                uuid.UUID(user_id),
            )
            await self._insert_token(connection, session_id, token)
        return str(session_id), token

    async def rotate(self, refresh_token: str) -> tuple[str, str, str]:
        """Exchanges a refresh token for a new one of the same family. Returns the user id,
        the session id and the new token. A token used a second time means it was stolen (or
        the client is confused): the whole family is revoked."""
        digest = token_digest(refresh_token)
        refused: str | None = None
        token = new_refresh_token()
        # The revocation of a reused family must commit, so the refusal is raised afterwards.
        async with self.pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "SELECT t.session_id, t.expires_at, t.used_at, s.user_id, s.revoked_at, a.active "
                "FROM refresh_tokens t JOIN auth_sessions s USING (session_id) "
                "JOIN user_accounts a ON a.user_id = s.user_id "
                "WHERE t.token_hash = $1 FOR UPDATE OF t, s",
                digest,
            )
            if row is None:
                refused = "unknown refresh token; log in again"
            elif row["used_at"] is not None:
                await connection.execute(
                    "UPDATE auth_sessions SET revoked_at = coalesce(revoked_at, now()), "
                    "revoked_why = coalesce(revoked_why, 'refresh token reused') "
                    "WHERE session_id = $1",
                    row["session_id"],
                )
                refused = "refresh token already used; the session is revoked, log in again"
            elif row["revoked_at"] is not None or not row["active"]:
                refused = "the session has ended; log in again"
            elif row["expires_at"] <= datetime.now(UTC):
                refused = "refresh token expired; log in again"
            else:
                await connection.execute(
                    "UPDATE refresh_tokens SET used_at = now() WHERE token_hash = $1", digest
                )
                await self._insert_token(connection, row["session_id"], token)
        if refused is not None or row is None:
            raise RefreshRefusedError(refused)
        return str(row["user_id"]), str(row["session_id"]), token

    async def session_of(self, refresh_token: str) -> str | None:
        value = await self.pool.fetchval(
            "SELECT session_id FROM refresh_tokens WHERE token_hash = $1",
            token_digest(refresh_token),
        )
        return str(value) if value is not None else None

    async def session_ids(self, user_id: str) -> list[str]:
        rows = await self.pool.fetch(
            "SELECT session_id FROM auth_sessions WHERE user_id = $1", uuid.UUID(user_id)
        )
        return [str(row["session_id"]) for row in rows]

    async def revoke_session(self, session_id: str, why: str) -> None:
        await self.pool.execute(
            "UPDATE auth_sessions SET revoked_at = coalesce(revoked_at, now()), "
            "revoked_why = coalesce(revoked_why, $2) WHERE session_id = $1",
            uuid.UUID(session_id),
            why,
        )

    async def standing(self, user_id: str, session_id: str) -> tuple[bool, bool, str] | None:
        """Whether the session is live, whether the user is active, and the user's role."""
        row = await self.pool.fetchrow(
            "SELECT s.revoked_at IS NULL AS live, a.active, a.system_role "
            "FROM auth_sessions s JOIN user_accounts a USING (user_id) "
            "WHERE s.session_id = $1 AND s.user_id = $2",
            uuid.UUID(session_id),
            uuid.UUID(user_id),
        )
        if row is None:
            return None
        return bool(row["live"]), bool(row["active"]), row["system_role"]

    async def _insert_token(
        self, connection: asyncpg.Connection, session_id: uuid.UUID, token: str
    ) -> None:
        await connection.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id, expires_at) VALUES ($1, $2, $3)",
            token_digest(token),
            session_id,
            datetime.now(UTC) + timedelta(seconds=REFRESH_TOKEN_TTL_S),
        )


def _account(row: asyncpg.Record | None) -> Account | None:
    if row is None:
        return None
    return Account(
        user_id=str(row["user_id"]),
        username=row["username"],
        password_hash=row["password_hash"],
        system_role=row["system_role"],
        active=row["active"],
    )
