"""Authentication as a client meets it: tokens, refresh rotation, logout, deactivation, the
login rate limit, and what must never leak."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
import uuid
from typing import Any

import asyncpg
import jwt
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from aiplatform.config import Settings
from conftest import login, make_user

Client = AsyncTestClient[Litestar]


async def token_pair(
    client: Client, username: str, password: str, **headers: str
) -> dict[str, Any]:
    response = await client.post(
        "/api/v2/auth/token", json={"username": username, "password": password}, headers=headers
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_login_gives_tokens_that_identify_the_caller(
    client: Client, anonymous: Client
) -> None:
    user_id, username, password = await make_user(client)
    pair = await token_pair(anonymous, username, password)
    assert pair["token_type"] == "bearer"
    assert pair["expires_in"] == 900
    me = await anonymous.get("/api/v2/auth/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200
    assert me.json()["data"]["id"] == user_id
    assert me.json()["data"]["username"] == username


async def test_the_oauth2_password_form_gets_a_bare_oauth2_answer(
    client: Client, anonymous: Client
) -> None:
    _, username, password = await make_user(client)
    response = await anonymous.post(
        "/api/v2/auth/token",
        data={"username": username, "password": password, "grant_type": "password"},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["access_token"]
    assert body["refresh_token"]


async def test_wrong_password_and_unknown_user_get_the_same_answer_in_similar_time(
    client: Client, anonymous: Client
) -> None:
    _, username, _ = await make_user(client)

    async def attempt(name: str) -> tuple[float, dict[str, Any]]:
        started = time.perf_counter()
        response = await anonymous.post(
            "/api/v2/auth/token",
            json={"username": name, "password": "Wrong-password-1"},
            headers={"X-Forwarded-For": "ignored"},
        )
        assert response.status_code == 401
        return time.perf_counter() - started, response.json()

    wrong_password = [await attempt(username) for _ in range(3)]
    unknown_user = [await attempt(f"nobody{uuid.uuid4().hex[:8]}") for _ in range(3)]
    assert wrong_password[0][1] == unknown_user[0][1]
    median = lambda runs: sorted(t for t, _ in runs)[1]  # noqa: E731
    assert 0.4 < median(wrong_password) / median(unknown_user) < 2.5


@pytest.mark.parametrize("kind", ["tampered", "expired", "none-algorithm", "wrong-key", "garbage"])
async def test_bad_tokens_are_refused(
    client: Client, anonymous: Client, settings: Settings, kind: str
) -> None:
    _, username, password = await make_user(client)
    good = (await token_pair(anonymous, username, password))["access_token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    key = settings.require_secret_key()
    if kind == "tampered":
        header, payload, signature = good.split(".")
        forged = dict(claims, sub=str(uuid.uuid4()))
        payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
        token = f"{header}.{payload}.{signature}"
    elif kind == "expired":
        token = jwt.encode(dict(claims, exp=int(time.time()) - 5), key, algorithm="HS256")
    elif kind == "none-algorithm":
        token = jwt.encode(claims, None, algorithm="none")
    elif kind == "wrong-key":
        token = jwt.encode(claims, "another-key-" + "x" * 40, algorithm="HS256")
    else:
        token = "not.a.token"
    response = await anonymous.get("/api/v2/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.json()["meta"]["code"] == "not_authenticated"


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(
    client: Client, anonymous: Client
) -> None:
    _, username, password = await make_user(client)
    first = await token_pair(anonymous, username, password)
    rotated = await anonymous.post(
        "/api/v2/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert rotated.status_code == 200
    second = rotated.json()["data"]
    assert second["refresh_token"] != first["refresh_token"]
    assert (
        await anonymous.get("/api/v2/auth/me", headers=bearer(second["access_token"]))
    ).status_code == 200

    reused = await anonymous.post(
        "/api/v2/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert reused.status_code == 401
    assert "revoked" in reused.json()["error"]
    # The family is gone: the newer refresh token and the access tokens of the session too.
    assert (
        await anonymous.post(
            "/api/v2/auth/refresh", json={"refresh_token": second["refresh_token"]}
        )
    ).status_code == 401
    assert (
        await anonymous.get("/api/v2/auth/me", headers=bearer(second["access_token"]))
    ).status_code == 401
    # Another session of the same user is untouched.
    other = await token_pair(anonymous, username, password)
    assert (
        await anonymous.get("/api/v2/auth/me", headers=bearer(other["access_token"]))
    ).status_code == 200


async def test_logout_revokes_the_session(client: Client, anonymous: Client) -> None:
    _, username, password = await make_user(client)
    pair = await token_pair(anonymous, username, password)
    out = await anonymous.post("/api/v2/auth/logout", headers=bearer(pair["access_token"]))
    assert out.status_code == 200
    assert (
        await anonymous.get("/api/v2/auth/me", headers=bearer(pair["access_token"]))
    ).status_code == 401
    assert (
        await anonymous.post("/api/v2/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    ).status_code == 401


async def test_deactivation_ends_sessions_and_refuses_login(
    client: Client, anonymous: Client
) -> None:
    user_id, username, password = await make_user(client)
    pair = await token_pair(anonymous, username, password)
    response = await client.put(f"/api/v2/users/{user_id}", json={"active": False})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["active"] is False
    assert (
        await anonymous.get("/api/v2/auth/me", headers=bearer(pair["access_token"]))
    ).status_code == 401
    assert (
        await anonymous.post("/api/v2/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    ).status_code == 401
    refused = await anonymous.post(
        "/api/v2/auth/token", json={"username": username, "password": password}
    )
    assert refused.status_code == 401
    assert "deactivated" in refused.json()["error"]
    await client.put(f"/api/v2/users/{user_id}", json={"active": True})
    assert (await token_pair(anonymous, username, password))["access_token"]


async def test_the_sixth_wrong_login_in_a_minute_is_rate_limited(
    client: Client, anonymous: Client
) -> None:
    _, username, password = await make_user(client)
    for _ in range(5):
        response = await anonymous.post(
            "/api/v2/auth/token", json={"username": username, "password": "Wrong-password-1"}
        )
        assert response.status_code == 401
    limited = await anonymous.post(
        "/api/v2/auth/token", json={"username": username, "password": password}
    )
    assert limited.status_code == 429
    assert limited.json()["meta"]["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60


async def test_login_is_an_event_with_ip_and_user_agent_and_sets_last_login(
    client: Client, anonymous: Client, pool: asyncpg.Pool
) -> None:
    user_id, username, password = await make_user(client)
    await token_pair(anonymous, username, password, **{"User-Agent": "login-test/2.0"})
    row = await pool.fetchrow(
        "SELECT metadata->>'client_ip' AS ip, metadata->>'user_agent' AS ua, global_position "
        "FROM events WHERE stream_id = $1 AND event_type = 'UserLoggedIn'",
        f"user-{user_id}",
    )
    assert row is not None
    assert row["ua"] == "login-test/2.0"
    assert row["ip"]
    deadline = time.monotonic() + 10
    last_login = None
    while last_login is None and time.monotonic() < deadline:  # the users read model catches up
        last_login = (await client.get(f"/api/v2/users/{user_id}")).json()["data"]["last_login_at"]
        await asyncio.sleep(0.05)
    assert last_login is not None


async def test_no_password_hash_or_token_is_ever_in_an_event_a_response_or_a_log(
    client: Client, anonymous: Client, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user_id, username, password = await make_user(client)
    pair = await token_pair(anonymous, username, password)
    await client.put(f"/api/v2/users/{user_id}", json={"password": "Another-pass-9"})
    responses = [
        await client.get(f"/api/v2/users/{user_id}"),
        await client.get("/api/v2/users", params={"q": username}),
        await client.get(f"/api/v2/users/{user_id}/history"),
        await client.get("/api/v2/audit", params={"resource_type": "user", "resource_id": user_id}),
    ]
    secrets = [password, "Another-pass-9", pair["refresh_token"], pair["access_token"], "$argon2"]
    for response in responses:
        assert response.status_code == 200, response.text
        for secret in secrets:
            assert secret not in response.text
    stored = await pool.fetch(
        "SELECT data::text || metadata::text AS text FROM events WHERE stream_id = $1",
        f"user-{user_id}",
    )
    for row in stored:
        for secret in secrets:
            assert secret not in row["text"]
    await anonymous.post("/api/v2/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    await anonymous.post("/api/v2/auth/token", json={"username": username, "password": password})
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert logged  # the capture works
    for secret in secrets:
        assert secret not in logged


async def test_a_user_cannot_make_themselves_admin(client: Client, anonymous: Client) -> None:
    user_id, username, password = await make_user(client)
    headers = await login(anonymous, username, password)
    for body in (
        {"system_role": "admin"},
        {"active": True},
        {"full_name": "x", "system_role": "admin"},
    ):
        response = await anonymous.put(f"/api/v2/users/{user_id}", json=body, headers=headers)
        assert response.status_code == 403, response.text
    me = await anonymous.get("/api/v2/auth/me", headers=headers)
    assert me.json()["data"]["system_role"] == "user"
    unknown = await anonymous.put(
        f"/api/v2/users/{user_id}", json={"role": "admin"}, headers=headers
    )
    assert unknown.status_code == 422


async def test_users_edit_their_profile_and_password_with_the_current_one(
    client: Client, anonymous: Client
) -> None:
    user_id, username, password = await make_user(client)
    headers = await login(anonymous, username, password)
    renamed = await anonymous.put(
        f"/api/v2/users/{user_id}", json={"full_name": "Ada L."}, headers=headers
    )
    assert renamed.status_code == 200
    assert renamed.json()["data"]["full_name"] == "Ada L."
    missing = await anonymous.put(
        f"/api/v2/users/{user_id}", json={"password": "New-password-2"}, headers=headers
    )
    assert missing.status_code == 422
    assert "current_password" in missing.json()["error"]
    changed = await anonymous.put(
        f"/api/v2/users/{user_id}",
        json={"password": "New-password-2", "current_password": password},
        headers=headers,
    )
    assert changed.status_code == 200
    assert (await anonymous.get("/api/v2/auth/me", headers=headers)).status_code == 401
    assert await login(anonymous, username, "New-password-2")
    other_id, _, _ = await make_user(client)
    assert (await anonymous.get(f"/api/v2/users/{other_id}", headers=headers)).status_code == 401


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"username": "ab"}, "username", ""),
        ({"username": "x" * 51}, "username", ""),
        ({"email": "not-an-email"}, "email", ""),
        ({"password": "short1"}, "password", "at least 10 characters"),
        ({"password": "onlyletterslong"}, "password", "mix letters"),
    ],
)
async def test_user_fields_are_validated(
    client: Client, body: dict[str, str], field: str, message: str
) -> None:
    name = f"v{uuid.uuid4().hex[:8]}"
    base = {"username": name, "email": f"{name}@example.com", "password": "Good-password-1"}
    response = await client.post("/api/v2/users", json={**base, **body})
    assert response.status_code == 422, response.text
    assert field in response.text
    assert message in response.json()["error"]


async def test_usernames_and_emails_are_unique_ignoring_case(client: Client) -> None:
    _, username, _ = await make_user(client)
    again = await client.post(
        "/api/v2/users",
        json={
            "username": username.upper(),
            "email": "fresh@example.com",
            "password": "Good-password-1",
        },
    )
    assert again.status_code == 409
    assert "username" in again.json()["error"]
    same_email = await client.post(
        "/api/v2/users",
        json={
            "username": "fresh" + uuid.uuid4().hex[:6],
            "email": f"{username.upper()}@EXAMPLE.com",
            "password": "Good-password-1",
        },
    )
    assert same_email.status_code == 409
    assert "email" in same_email.json()["error"]
