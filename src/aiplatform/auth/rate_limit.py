"""Login attempts limited per username and per client IP, in Redis so that every API process
counts together. Fixed one-minute windows; failures count, successes clear the username."""

from __future__ import annotations

from aiplatform.cache import Cache

WINDOW_S = 60
FAILURES_PER_USERNAME = 5
FAILURES_PER_IP = 20


class LoginRateLimiter:
    def __init__(self, cache: Cache):
        self.cache = cache

    def _keys(self, username: str, client_ip: str) -> tuple[str, str]:
        return (
            self.cache.key("login-failures", "user", username.lower()),
            self.cache.key("login-failures", "ip", client_ip),
        )

    async def retry_after(self, username: str, client_ip: str) -> int | None:
        """Seconds until another attempt is allowed, or None when one is allowed now."""
        user_key, ip_key = self._keys(username, client_ip)
        counts = await self.cache.counters([user_key, ip_key])
        blocked = [
            ttl
            for (count, ttl), limit in zip(
                counts, (FAILURES_PER_USERNAME, FAILURES_PER_IP), strict=True
            )
            if count >= limit
        ]
        return max(1, max(blocked)) if blocked else None

    async def record_failure(self, username: str, client_ip: str) -> None:
        for counter in self._keys(username, client_ip):
            await self.cache.count(counter, WINDOW_S)

    async def record_success(self, username: str, client_ip: str) -> None:
        await self.cache.delete(self._keys(username, client_ip)[0])
