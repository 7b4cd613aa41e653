"""Password policy and Argon2id hashing."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 10
MAX_LENGTH = 128

_hasher = PasswordHasher()  # Argon2id with the library's current recommended parameters
# Verified against when the username is unknown, so that a wrong username costs the same time
# as a wrong password and the answer does not tell which one it was.
_DUMMY_HASH = _hasher.hash("not a password anyone has")


def policy_violation(password: str, username: str = "") -> str | None:
    """None when `password` is acceptable, else what is wrong with it, in plain words."""
    if len(password) < MIN_LENGTH:
        return f"the password must have at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"the password must have at most {MAX_LENGTH} characters"
    if not any(c.isalpha() for c in password) or all(c.isalpha() for c in password):
        return "the password must mix letters with digits or symbols"
    if username and username.lower() in password.lower():
        return "the password must not contain the username"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


# Argon2 is deliberately slow (and releases the GIL): it runs in threads, a few at a time, so
# that logins never stall the event loop that serves every other request.
_argon2_slots = asyncio.Semaphore(2)


async def hash_password_off_loop(password: str) -> str:
    async with _argon2_slots:
        return await asyncio.to_thread(hash_password, password)


async def verify_password_off_loop(password_hash: str | None, password: str) -> bool:
    async with _argon2_slots:
        return await asyncio.to_thread(verify_password, password_hash, password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False
