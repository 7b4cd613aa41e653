"""Is a token's session still live, is its user still active, and what is the user's system
role now? Asked on every authenticated request, so it is answered from Redis (one MGET) and
falls back to PostgreSQL. Writers overwrite the entries; readers fill only absent ones, so a
reader that raced a revocation cannot bring a session back.

A live answer is also remembered in this process for one second: a client sends many requests
a second on one session, and asking Redis each time costs as much as the read it guards. This
process forgets at once the sessions it revokes; another API process may still let a revoked
session through for up to that second."""

from __future__ import annotations

import time

from aiplatform.auth.accounts import Accounts
from aiplatform.cache import TTL_SESSION, Cache

LOCAL_TTL_S = 1.0
LOCAL_MAX_ENTRIES = 10_000


class Standing:
    def __init__(self, accounts: Accounts, cache: Cache):
        self.accounts = accounts
        self.cache = cache
        # (user id, session id) -> (until when, system role), for live sessions only.
        self._recent: dict[tuple[str, str], tuple[float, str]] = {}

    def _user_key(self, user_id: str) -> str:
        return self.cache.key("auth", "user", user_id)

    def _session_key(self, session_id: str) -> str:
        return self.cache.key("auth", "session", session_id)

    async def of(
        self, user_id: str, session_id: str, prefetch: list[str] | None = None
    ) -> tuple[tuple[bool, str] | None, list[bytes | None]]:
        """(live, system role), or None for an unknown user or session; and the values of the
        `prefetch` keys, read in the same round trip (the resource the request is about)."""
        extra = prefetch or []
        recent = self._recent.get((user_id, session_id))
        if recent is not None and recent[0] > time.monotonic():
            return (True, recent[1]), (await self.cache.get_many(extra) if extra else [])
        user, session, *prefetched = await self.cache.get_many(
            [self._user_key(user_id), self._session_key(session_id), *extra]
        )
        standing: tuple[bool, str] | None
        if user is not None and session is not None:
            active_flag, _, cached_role = user.decode().partition("|")
            standing = (active_flag == "1" and session == b"1", cached_role)
        else:
            standing = await self._from_database(user_id, session_id)
        if standing is not None and standing[0]:
            self._remember(user_id, session_id, standing[1])
        return standing, prefetched

    def _remember(self, user_id: str, session_id: str, role: str) -> None:
        if len(self._recent) >= LOCAL_MAX_ENTRIES:
            self._recent.clear()
        self._recent[(user_id, session_id)] = (time.monotonic() + LOCAL_TTL_S, role)

    async def _from_database(self, user_id: str, session_id: str) -> tuple[bool, str] | None:
        known = await self.accounts.standing(user_id, session_id)
        if known is None:
            return None
        session_live, active, role = known
        await self.cache.set(
            self._user_key(user_id),
            f"{int(active)}|{role}".encode(),
            TTL_SESSION,
            only_if_absent=True,
        )
        await self.cache.set(
            self._session_key(session_id),
            b"1" if session_live else b"0",
            TTL_SESSION,
            only_if_absent=True,
        )
        return session_live and active, role

    async def user_changed(self, user_id: str, active: bool, system_role: str) -> None:
        for key in [key for key in self._recent if key[0] == user_id]:
            del self._recent[key]
        await self.cache.set(
            self._user_key(user_id), f"{int(active)}|{system_role}".encode(), TTL_SESSION
        )

    async def sessions_ended(self, session_ids: list[str]) -> None:
        ended = set(session_ids)
        for key in [key for key in self._recent if key[1] in ended]:
            del self._recent[key]
        for session_id in session_ids:
            await self.cache.set(self._session_key(session_id), b"0", TTL_SESSION)
